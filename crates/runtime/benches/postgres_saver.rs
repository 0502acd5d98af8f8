//! `PostgresSaver`: the cost of one superstep's checkpoint for a state holding a
//! 50-message history (~200 characters each) and a counter that changes every step.
//!
//! `cargo bench -p agent-runtime --bench postgres_saver` against `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`, set up by the tests or
//! `PostgresSaver::connect`). Prints the bytes stored per step next to a full copy's,
//! the latency percentiles of single `put`s, then criterion's `put` and `get` timings
//! (the median is criterion's p50). Without a server it prints `SKIPPED` and measures
//! nothing.

use std::{collections::BTreeMap, time::Instant};

use agent_core::graph::{
    Checkpoint, CheckpointSource, Checkpointer, Message,
    checkpoint::{CHECKPOINT_VERSION, TaskSpec},
};
use agent_runtime::checkpoint::PostgresSaver;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::json;
use tokio::runtime::Runtime;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MESSAGES: usize = 50;

/// `n` messages of ~200 characters: words drawn from a vocabulary of 1000 made-up
/// words of 2–9 letters, so the history compresses about as text does, not as a
/// repeated string would.
fn history(n: usize) -> Vec<Message> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |below: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from((seed >> 33) % below).unwrap_or(0)
    };
    let vocabulary: Vec<String> = (0..1000)
        .map(|_| {
            (0..2 + next(8))
                .map(|_| char::from(b'a' + u8::try_from(next(26)).unwrap_or(0)))
                .collect()
        })
        .collect();
    (0..n)
        .map(|i| {
            let mut text = String::new();
            while text.len() < 200 {
                text.push_str(&vocabulary[next(1000)]);
                text.push(' ');
            }
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            Message::new(role, text).with_id(format!("msg-{i}"))
        })
        .collect()
}

/// The checkpoint of step `step`, as the engine writes it.
fn checkpoint(parent: Option<&str>, step: usize, messages: &[Message]) -> Checkpoint {
    Checkpoint {
        v: CHECKPOINT_VERSION,
        id: Checkpoint::new_id(),
        parent_id: parent.map(str::to_owned),
        step,
        created_at: chrono::Utc::now(),
        source: CheckpointSource::Loop,
        state: json!({"messages": messages, "count": step, "log": []}),
        next: vec![TaskSpec {
            id: format!("{step}:tick:0"),
            node: "tick".into(),
            arg: None,
        }],
        joins: vec![],
        resumes: BTreeMap::new(),
    }
}

/// What the rows of `thread` take in PostgreSQL: every column as stored (compressed
/// where PostgreSQL compressed it) plus a 24-byte tuple header per row; indexes aside.
async fn stored_bytes(saver: &PostgresSaver, thread: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT coalesce(sum(pg_column_size(c.thread_id) + pg_column_size(c.checkpoint_id)
                    + coalesce(pg_column_size(c.parent_id), 0) + pg_column_size(c.step)
                    + pg_column_size(c.source) + pg_column_size(c.created_at)
                    + pg_column_size(c.checkpoint) + pg_column_size(c.blobs) + 24), 0)
                   FROM checkpoints c WHERE c.thread_id = $1)
              + (SELECT coalesce(sum(pg_column_size(b.thread_id) + pg_column_size(b.hash)
                    + pg_column_size(b.key) + pg_column_size(b.value) + 24), 0)
                   FROM checkpoint_blobs b WHERE b.thread_id = $1)",
    )
    .bind(thread)
    .fetch_one(saver.pool())
    .await
    .expect("sizes")
}

/// A full copy of each checkpoint, as a saver storing the encoded checkpoint in one
/// bytea would: its bytes, and what PostgreSQL stores for them (compressed).
async fn full_copy_bytes(saver: &PostgresSaver, encoded: &[Vec<u8>]) -> (usize, i64) {
    let raw = encoded.iter().map(Vec::len).sum();
    let mut conn = saver.pool().acquire().await.expect("connection");
    sqlx::query("CREATE TEMP TABLE IF NOT EXISTS full_copy (b bytea)")
        .execute(&mut *conn)
        .await
        .expect("temp table");
    sqlx::query("TRUNCATE full_copy")
        .execute(&mut *conn)
        .await
        .expect("truncates");
    for bytes in encoded {
        sqlx::query("INSERT INTO full_copy VALUES ($1)")
            .bind(bytes)
            .execute(&mut *conn)
            .await
            .expect("inserts");
    }
    let stored: i64 =
        sqlx::query_scalar("SELECT sum(pg_column_size(b) + 24)::bigint FROM full_copy")
            .fetch_one(&mut *conn)
            .await
            .expect("sizes");
    (raw, stored)
}

/// Saves `steps` checkpoints after a first one; `grow` appends a message each step.
/// Returns the bytes of the first, the bytes stored per later step, and the full
/// copies' per step (raw, as stored).
async fn bytes_per_step(saver: &PostgresSaver, steps: usize, grow: bool) -> (i64, i64, (i64, i64)) {
    let thread = format!("bench-bytes-{}", uuid::Uuid::new_v4());
    let mut messages = history(MESSAGES);
    let first = checkpoint(None, 0, &messages);
    let mut parent = first.id.clone();
    saver.put(&thread, first).await.expect("saves");
    let at_first = stored_bytes(saver, &thread).await;
    let mut encoded = Vec::new();
    let more = history(MESSAGES + steps);
    for step in 1..=steps {
        if grow {
            messages.push(more[MESSAGES + step - 1].clone());
        }
        let c = checkpoint(Some(&parent), step, &messages);
        parent = c.id.clone();
        encoded.push(c.encode().expect("encodes"));
        saver.put(&thread, c).await.expect("saves");
    }
    let per_step = (stored_bytes(saver, &thread).await - at_first) / steps as i64;
    let (raw, stored) = full_copy_bytes(saver, &encoded).await;
    saver.delete_thread(&thread).await.expect("cleans up");
    (
        at_first,
        per_step,
        ((raw / steps) as i64, stored / steps as i64),
    )
}

/// Latency percentiles of `n` single `put`s, in milliseconds.
async fn put_percentiles(saver: &PostgresSaver, n: usize) -> [f64; 3] {
    let thread = format!("bench-latency-{}", uuid::Uuid::new_v4());
    let messages = history(MESSAGES);
    let mut parent: Option<String> = None;
    let mut times = Vec::with_capacity(n);
    for step in 0..n {
        let c = checkpoint(parent.as_deref(), step, &messages);
        parent = Some(c.id.clone());
        let start = Instant::now();
        saver.put(&thread, c).await.expect("saves");
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    saver.delete_thread(&thread).await.expect("cleans up");
    times.sort_by(f64::total_cmp);
    [0.5, 0.9, 0.99].map(|q| times[((n as f64 * q) as usize).min(n - 1)])
}

fn report(rt: &Runtime, saver: &PostgresSaver) {
    const STEPS: usize = 20;
    rt.block_on(async {
        let (first, same, (raw, full)) = bytes_per_step(saver, STEPS, false).await;
        let (_, grown, (grown_raw, grown_full)) = bytes_per_step(saver, STEPS, true).await;
        println!(
            "checkpoint bytes per step, {MESSAGES} messages of ~200 characters + a counter, {STEPS} steps:"
        );
        println!("  full copy, encoded                      {raw:>7} B");
        println!("  full copy, as PostgreSQL stores it      {full:>7} B");
        println!(
            "  PostgresSaver (counter changes)         {same:>7} B  ({:.1}x less than the stored full copy)",
            full as f64 / same as f64
        );
        println!(
            "  PostgresSaver (+1 message per step)     {grown:>7} B  (full copy {grown_raw} B encoded, {grown_full} B stored)"
        );
        println!("  first checkpoint of a thread            {first:>7} B");
        let [p50, p90, p99] = put_percentiles(saver, 1000).await;
        println!("put latency over 1000 steps: p50 {p50:.3} ms, p90 {p90:.3} ms, p99 {p99:.3} ms");
    });
}

fn benches(c: &mut Criterion) {
    let rt = Runtime::new().expect("tokio runtime");
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let saver = match rt.block_on(PostgresSaver::connect(&url)) {
        Ok(saver) => saver,
        Err(err) => {
            println!("SKIPPED: no PostgreSQL at DATABASE_URL ({err}); nothing measured");
            return;
        }
    };
    report(&rt, &saver);

    let thread = format!("bench-{}", uuid::Uuid::new_v4());
    let messages = history(MESSAGES);
    let mut group = c.benchmark_group("postgres_saver");
    let mut parent: Option<String> = None;
    let mut step = 0;
    group.bench_function("put 50 messages + counter", |b| {
        b.to_async(&rt).iter_batched(
            || {
                step += 1;
                let c = checkpoint(parent.as_deref(), step, &messages);
                parent = Some(c.id.clone());
                c
            },
            |c| saver.put(&thread, c),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("get newest", |b| {
        b.to_async(&rt).iter(|| saver.get(&thread, None));
    });
    group.finish();
    rt.block_on(saver.delete_thread(&thread))
        .expect("cleans up");
}

criterion_group!(postgres_saver, benches);
criterion_main!(postgres_saver);
