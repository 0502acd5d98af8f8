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
    /// Words of an answer streamed to a `stream: true` request; 0: a short plan's.
    #[arg(long, env = "STREAM_TOKENS", default_value_t = 0)]
    stream_tokens: usize,
    /// Milliseconds between the words of a streamed answer.
    #[arg(long, env = "TOKEN_INTERVAL_MS", default_value_t = 0)]
    token_interval_ms: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config {
        delay: Duration::from_millis(args.delay_ms),
        max_concurrent: (args.max_concurrent > 0).then_some(args.max_concurrent),
        stream_tokens: args.stream_tokens,
        token_interval: Duration::from_millis(args.token_interval_ms),
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
