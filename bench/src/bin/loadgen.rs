//! `loadgen`: a closed-loop load generator for the pipeline; prints one JSON line (see
//! [`pipeline_bench::report::Summary`]) on stdout and its progress on stderr.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use pipeline_bench::{
    epoch_ms,
    load::{self, Mode, Sent},
    report::{Run, Summary},
    results::{ResultsReader, Seen},
};

/// Sends N tasks and times each until its result record is on the results topic.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// task-generator's base URL (mode post).
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    url: String,
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// The results topic, read from its end.
    #[arg(long)]
    results_topic: String,
    /// The events topic tasks are produced to (mode topic).
    #[arg(long)]
    events_topic: Option<String>,
    /// Tasks to send.
    #[arg(short = 'n', default_value_t = 1000)]
    n: usize,
    /// Concurrent HTTP clients (mode post; reported only in mode topic).
    #[arg(short = 'c', default_value_t = 32)]
    c: usize,
    /// Seconds to wait for missing results after the last task was sent.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// post: POST /generate-task; topic: produce tasks onto --events-topic.
    #[arg(long, value_enum, default_value_t = Mode::Post)]
    mode: Mode,
    /// Mode topic: tasks asking for human review; each is timed until its first result,
    /// the `interrupted` one of its pause.
    #[arg(long)]
    human_review: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let events_topic = match (args.mode, &args.events_topic) {
        (Mode::Topic, None) => bail!("--mode topic needs --events-topic"),
        (_, topic) => topic.clone(),
    };
    let reader = ResultsReader::start(&args.bootstrap, &args.results_topic).await?;
    let sent = Sent::default();
    let progress = tokio::spawn(progress(args.n, sent.clone(), reader.seen()));

    let start_ms = epoch_ms();
    let started = Instant::now();
    match (args.mode, events_topic) {
        (Mode::Topic, Some(topic)) => {
            load::topic::run(&args.bootstrap, &topic, args.n, args.human_review, &sent).await?
        }
        _ => load::post::run(&args.url, args.n, args.c, &sent).await?,
    }
    let sending = started.elapsed();

    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let seen = reader.seen();
    while Instant::now() < deadline && sent.completed_in(&lock(&seen)) < sent.accepted_count() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    progress.abort();
    let seen = reader.stop();
    let summary = Summary::new(&Run {
        n: args.n,
        c: args.c,
        mode: args.mode.as_str(),
        sent: &sent.times(),
        errors: sent.errors(),
        start_ms,
        sending,
        seen: &seen,
    });
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// Every 5 s on stderr: sent, refused and completed so far.
async fn progress(n: usize, sent: Sent, seen: Seen) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    loop {
        tick.tick().await;
        let completed = sent.completed_in(&lock(&seen));
        eprintln!(
            "loadgen: {:>4}s sent {}/{n} ({} errors), completed {completed}",
            started.elapsed().as_secs(),
            sent.accepted_count(),
            sent.errors(),
        );
    }
}

fn lock(seen: &Seen) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, i64>> {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
