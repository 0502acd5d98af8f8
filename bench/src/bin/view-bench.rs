//! `view-bench`: the results-view benchmark (`make bench-view`, see
//! `pipeline_bench::view`). Starts a Tansu broker, fills the topics with `--tasks` tasks
//! and results, then for each store starts the release task-generator, times it to
//! `/ready` (first start, then restart), reads its memory, and probes its lookups from
//! `--clients` clients. Prints a Markdown table and writes `view-bench.json` to `--out`.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use agent_runtime::kafka::{KafkaSettings, TopicSpec, ensure_topics};
use anyhow::Context;
use clap::Parser;
use pipeline_bench::view::{
    Generator, fill::fill, free_port, fresh_dir, probe::probe, start_tansu,
};
use serde_json::{Value, json};
use sqlx::Connection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(about = "results-view benchmark: time to ready, memory and lookup latency per store")]
struct Args {
    /// Tasks (and as many results) on the topics for the sqlite and postgres stores.
    #[arg(long, default_value_t = 1_000_000)]
    tasks: usize,
    /// Tasks for the in-memory store (0: skip it).
    #[arg(long, default_value_t = 200_000)]
    memory_tasks: usize,
    /// Stores to measure, comma-separated: sqlite, postgres, memory.
    #[arg(long, default_value = "sqlite,postgres,memory")]
    stores: String,
    /// Characters of each result's answer.
    #[arg(long, default_value_t = 1500)]
    answer_bytes: usize,
    /// Concurrent clients of the latency probes.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds each latency probe runs.
    #[arg(long, default_value_t = 10)]
    probe_secs: u64,
    /// PostgreSQL server for the postgres store (a fresh database is made and dropped).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    database_url: String,
    /// The Tansu binary.
    #[arg(long, env = "TANSU_BIN")]
    tansu: PathBuf,
    /// The task-generator binary.
    #[arg(long, default_value = "target/release/task-generator")]
    generator: PathBuf,
    /// Folder for logs, stores and the JSON report.
    #[arg(long, default_value = "target/bench-view")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let port = free_port()?;
    let mut tansu = start_tansu(&args.tansu, port, &args.out.join("tansu.log"))?;
    let bootstrap = format!("127.0.0.1:{port}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let http = reqwest::Client::new();
    let mut rows = Vec::new();
    let stores: Vec<&str> = args.stores.split(',').map(str::trim).collect();

    let durable: Vec<&str> = stores.iter().copied().filter(|s| *s != "memory").collect();
    if !durable.is_empty() {
        let (prefix, ids) = topics_filled(&args, &bootstrap, args.tasks).await?;
        for store in durable {
            rows.push(run_store(&args, &http, &bootstrap, &prefix, &ids, store).await?);
        }
    }
    if stores.contains(&"memory") && args.memory_tasks > 0 {
        let (prefix, ids) = topics_filled(&args, &bootstrap, args.memory_tasks).await?;
        rows.push(run_store(&args, &http, &bootstrap, &prefix, &ids, "memory").await?);
    }
    let _ = tansu.kill();
    let _ = tansu.wait();

    println!(
        "| store | tasks | first start to ready | restart to ready | RSS after catch-up (peak) | RSS after restart | GET /task-result p50 / p99 | GET /task-results?limit=50 p50 / p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {} | {:.1} s | {:.2} s | {:.0} MB ({:.0} MB) | {:.0} MB | {} / {} ms | {} / {} ms |",
            row["store"].as_str().unwrap_or("?"),
            row["tasks"],
            row["first_ready_s"].as_f64().unwrap_or(0.0),
            row["restart_ready_s"].as_f64().unwrap_or(0.0),
            mb(&row["rss_after_catch_up"]),
            mb(&row["peak_rss_first"]),
            mb(&row["rss_after_restart"]),
            row["by_id"]["p50_ms"],
            row["by_id"]["p99_ms"],
            row["list"]["p50_ms"],
            row["list"]["p99_ms"],
        );
    }
    let report = json!({"clients": args.clients, "probe_secs": args.probe_secs, "answer_bytes": args.answer_bytes, "runs": rows});
    std::fs::write(
        args.out.join("view-bench.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    Ok(())
}

fn mb(bytes: &Value) -> f64 {
    bytes.as_f64().unwrap_or(0.0) / 1e6
}

/// New topics (3 partitions) under a fresh prefix, filled with `count` tasks and results.
async fn topics_filled(
    args: &Args,
    bootstrap: &str,
    count: usize,
) -> anyhow::Result<(String, Vec<Uuid>)> {
    let prefix = format!(
        "viewbench{}",
        Uuid::new_v4().simple().to_string().get(..8).unwrap_or("x")
    );
    let settings = KafkaSettings {
        topic_prefix: prefix.clone(),
        topics: agent_runtime::kafka::Topics::new(&prefix, None, None, None, None),
        ..KafkaSettings::for_brokers(bootstrap)
    };
    let topics = settings.topics.clone();
    ensure_topics(
        &settings,
        &TopicSpec::service_topics(&topics),
        &CancellationToken::new(),
    )
    .await?;
    let started = Instant::now();
    let ids = fill(
        bootstrap,
        &topics.events,
        &topics.results,
        count,
        args.answer_bytes,
    )
    .await?;
    eprintln!(
        "view-bench: {count} tasks and results on {prefix}-* in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok((prefix, ids))
}

/// One store's figures: first start and restart to ready, memory, latencies.
async fn run_store(
    args: &Args,
    http: &reqwest::Client,
    bootstrap: &str,
    prefix: &str,
    ids: &[Uuid],
    store: &str,
) -> anyhow::Result<Value> {
    let data = fresh_dir(&args.out, &format!("{store}-data"))?;
    let mut env: Vec<(String, String)> = [
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap),
        ("KAFKA_TOPIC_PREFIX", prefix),
        ("KAFKA_PARTITIONS", "3"),
        ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
        ("RESULTS_STORE", store),
        ("RATE_LIMIT_PER_SECOND", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.push(("DATA_DIR".into(), data.display().to_string()));
    let database = if store == "postgres" {
        let (url, name) = fresh_database(&args.database_url).await?;
        env.push(("DATABASE_URL".into(), url));
        Some(name)
    } else {
        None
    };
    let timeout = Duration::from_secs(3 * 3600);
    let run = Duration::from_secs(args.probe_secs);

    eprintln!(
        "view-bench: {store}: first start, {} tasks to read",
        ids.len()
    );
    let started = Instant::now();
    let mut first = Generator::start(
        &args.generator,
        free_port()?,
        &env,
        &args.out.join(format!("{store}-first.log")),
    )?;
    let first_ready = first.until_ready(http, started, timeout).await?;
    let (rss_after, peak_first) = first.rss()?;
    let by_id = probe(http, &first.base, ids, true, args.clients, run).await?;
    let list = probe(http, &first.base, ids, false, args.clients, run).await?;
    first.stop().await;

    eprintln!("view-bench: {store}: restart");
    let started = Instant::now();
    let mut again = Generator::start(
        &args.generator,
        free_port()?,
        &env,
        &args.out.join(format!("{store}-restart.log")),
    )?;
    let restart_ready = again.until_ready(http, started, timeout).await?;
    let (rss_restart, _) = again.rss()?;
    again.stop().await;
    if let Some(name) = database {
        drop_database(&args.database_url, &name).await;
    }
    let _ = std::fs::remove_dir_all(&data);
    let row = json!({
        "store": store,
        "tasks": ids.len(),
        "first_ready_s": first_ready.as_secs_f64(),
        "restart_ready_s": restart_ready.as_secs_f64(),
        "rss_after_catch_up": rss_after,
        "peak_rss_first": peak_first,
        "rss_after_restart": rss_restart,
        "by_id": by_id,
        "list": list,
    });
    eprintln!("view-bench: {row}");
    Ok(row)
}

/// A fresh database on the server of `url`: its URL and name.
async fn fresh_database(url: &str) -> anyhow::Result<(String, String)> {
    let name = format!("viewbench_{}", Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .context("PostgreSQL")?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let at = base
        .rfind('/')
        .filter(|&i| i > base.find("://").map_or(0, |j| j + 2))
        .unwrap_or(base.len());
    let new = match query {
        Some(q) => format!("{}/{name}?{q}", &base[..at]),
        None => format!("{}/{name}", &base[..at]),
    };
    Ok((new, name))
}

async fn drop_database(url: &str, name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}
