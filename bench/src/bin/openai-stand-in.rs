//! `openai-stand-in`: an OpenAI-compatible chat-completions server for load tests (see
//! [`pipeline_bench::stand_in`]). Prints `listening 127.0.0.1:PORT` as its first line.

use std::{sync::Arc, time::Duration};

use clap::Parser;
use pipeline_bench::stand_in::{self, Config, Stats};

/// OpenAI-compatible `POST /v1/chat/completions` answering after a fixed delay.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Milliseconds each request waits before it is answered.
    #[arg(long, env = "DELAY_MS", default_value_t = 0)]
    delay_ms: u64,
    /// Requests served at once; one more is answered 429 with `Retry-After: 1`. 0: no limit.
    #[arg(long, env = "MAX_CONCURRENT", default_value_t = 0)]
    max_concurrent: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config {
        delay: Duration::from_millis(args.delay_ms),
        max_concurrent: (args.max_concurrent > 0).then_some(args.max_concurrent),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    println!("listening {}", listener.local_addr()?);
    let app = stand_in::router(config, Arc::new(Stats::default()));
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped())
        .await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stopped() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
