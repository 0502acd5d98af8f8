//! `stream-bench`: time to first token after `POST /generate-task` with
//! `Accept: text/event-stream`, and the memory and CPU of one task-generator replica
//! serving many streams next to as many clients polling (see
//! [`pipeline_bench::streams`]). Prints one JSON object on stdout, progress on stderr.

use std::time::Duration;

use clap::Parser;
use pipeline_bench::streams::{self, Cost, measure, quantile_ms, run_many};
use serde_json::json;

/// Streams tasks from task-generator and measures what they cost it.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// task-generator's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    url: String,
    /// task-generator's process id (for its RSS and CPU time).
    #[arg(long)]
    pid: u32,
    /// Tasks timed for the time to first token.
    #[arg(short = 'n', default_value_t = 200)]
    n: usize,
    /// Concurrent clients while timing the first token.
    #[arg(short = 'c', default_value_t = 4)]
    c: usize,
    /// Streams open at once in the second phase (and polling clients in the third).
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// How often a polling client asks, ms.
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let url = args.url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.streams)
        .timeout(Duration::from_secs(300))
        .build()?;

    eprintln!(
        "stream-bench: time to first token, {} tasks from {} clients",
        args.n, args.c
    );
    let (ttft_cost, timed) = {
        let (client, url) = (client.clone(), url.clone());
        measure(
            args.pid,
            run_many(args.n, args.c, move |i| {
                let (client, url) = (client.clone(), url.clone());
                async move { streams::stream_one(&client, &url, i).await }
            }),
        )
        .await
    };
    let (ttft, ttft_errors) = split(timed);
    let mut first: Vec<Duration> = ttft.iter().map(|s| s.first_token).collect();
    let mut whole: Vec<Duration> = ttft.iter().map(|s| s.result).collect();

    eprintln!("stream-bench: {} streams at once", args.streams);
    let (streams_cost, many) = {
        let (client, url) = (client.clone(), url.clone());
        measure(
            args.pid,
            run_many(args.streams, args.streams, move |i| {
                let (client, url) = (client.clone(), url.clone());
                async move { streams::stream_one(&client, &url, args.n + i).await }
            }),
        )
        .await
    };
    let (many, many_errors) = split(many);
    let tokens: usize = many.iter().map(|s| s.tokens).sum();
    let mut many_first: Vec<Duration> = many.iter().map(|s| s.first_token).collect();
    let mut many_whole: Vec<Duration> = many.iter().map(|s| s.result).collect();

    eprintln!(
        "stream-bench: baseline, {} clients polling every {} ms",
        args.streams, args.poll_ms
    );
    let every = Duration::from_millis(args.poll_ms);
    let (poll_cost, polled) = {
        let (client, url) = (client.clone(), url.clone());
        measure(
            args.pid,
            run_many(args.streams, args.streams, move |i| {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    streams::poll_one(&client, &url, args.n + args.streams + i, every).await
                }
            }),
        )
        .await
    };
    let (mut polled, poll_errors) = split(polled);

    let report = json!({
        "ttft": {
            "tasks": args.n, "clients": args.c, "errors": ttft_errors,
            "first_token_p50_ms": quantile_ms(&mut first, 0.5),
            "first_token_p99_ms": quantile_ms(&mut first, 0.99),
            "result_p50_ms": quantile_ms(&mut whole, 0.5),
            "cost": ttft_cost,
        },
        "streams": {
            "streams": args.streams, "errors": many_errors, "token_events": tokens,
            "first_token_p50_ms": quantile_ms(&mut many_first, 0.5),
            "result_p50_ms": quantile_ms(&mut many_whole, 0.5),
            "result_p99_ms": quantile_ms(&mut many_whole, 0.99),
            "cost": streams_cost,
        },
        "polling": {
            "clients": args.streams, "poll_ms": args.poll_ms, "errors": poll_errors,
            "result_p50_ms": quantile_ms(&mut polled, 0.5),
            "result_p99_ms": quantile_ms(&mut polled, 0.99),
            "cost": poll_cost,
        },
    });
    println!("{report}");
    print_table(&report, &streams_cost, &poll_cost);
    Ok(())
}

/// The successes, and how many failed (each failure printed).
fn split<T>(results: Vec<anyhow::Result<T>>) -> (Vec<T>, usize) {
    let mut errors = 0;
    let ok = results
        .into_iter()
        .filter_map(|r| {
            r.map_err(|err| {
                errors += 1;
                if errors <= 5 {
                    eprintln!("stream-bench: {err:#}");
                }
            })
            .ok()
        })
        .collect();
    (ok, errors)
}

/// A Markdown summary on stderr.
fn print_table(report: &serde_json::Value, streams: &Cost, polling: &Cost) {
    let ms = |v: &serde_json::Value| v.as_f64().map_or("—".into(), |v| format!("{v:.1} ms"));
    eprintln!(
        "\ntime to first token after POST: p50 {} p99 {} (result p50 {})",
        ms(&report["ttft"]["first_token_p50_ms"]),
        ms(&report["ttft"]["first_token_p99_ms"]),
        ms(&report["ttft"]["result_p50_ms"]),
    );
    eprintln!(
        "\n| {} clients | wall | generator CPU | CPU / wall | RSS before → peak → after | answer p50 / p99 |",
        report["streams"]["streams"]
    );
    eprintln!("|---|---|---|---|---|---|");
    for (name, cost, section) in [
        ("streams (SSE)", streams, "streams"),
        ("polling every 1 s (baseline)", polling, "polling"),
    ] {
        eprintln!(
            "| {name} | {:.1} s | {:.2} s | {:.0}% | {:.0} → {:.0} → {:.0} MB | {} / {} |",
            cost.wall_s,
            cost.cpu_s,
            100.0 * cost.cpu_s / cost.wall_s.max(1e-9),
            cost.rss_before_mb,
            cost.rss_peak_mb,
            cost.rss_after_mb,
            ms(&report[section]["result_p50_ms"]),
            ms(&report[section]["result_p99_ms"]),
        );
    }
}
