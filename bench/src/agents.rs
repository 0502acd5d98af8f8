//! The agent-runtime benchmark (`make bench-agents`, binary `agent-bench`): request/reply
//! round trips of [`AgentRuntime::send_message`] through the broker between two
//! processes — `agent-bench serve` answers the `echo` agent type ([`serve`]),
//! `agent-bench call` sends N requests from C concurrent callers and times each one from
//! the call to its reply ([`call`]).
//!
//! A round trip is two records and two reads: the request produced to
//! `{prefix}-agent-requests-echo` and consumed by the `{prefix}-agent.echo` group, the reply
//! produced to the caller's partition of `{prefix}-agent-replies` and read there.

use std::time::{Duration, Instant};

use agent_runtime::{
    agents::{AgentRuntime, RuntimeOptions},
    kafka::{KafkaSettings, Topics},
};
use anyhow::Context;
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{
    report::{percentile, round1},
    streams::run_many,
};

/// The agent type served and called.
pub const ECHO: &str = "echo";

/// The settings of a benchmark client: the brokers, the topics under `topic_prefix`, and
/// every other setting at its default (as a service gets them from an empty environment).
pub fn settings(brokers: &str, topic_prefix: &str) -> KafkaSettings {
    KafkaSettings {
        topics: Topics::new(topic_prefix, None, None, None, None),
        topic_prefix: topic_prefix.to_owned(),
        ..KafkaSettings::for_brokers(brokers)
    }
}

/// Serves the `echo` agent type as instance `instance_id` — each request is answered
/// with its own value — until `shutdown` fires; `concurrency` requests at once
/// ([`RuntimeOptions::concurrency`]). Prints `ready {instance_id}` on stdout once
/// registered (its consumer group may still be forming).
///
/// # Errors
/// When the runtime cannot start or register the agent type (the broker does not
/// answer).
pub async fn serve(
    settings: &KafkaSettings,
    instance_id: &str,
    concurrency: usize,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let options = RuntimeOptions {
        service: "agent-bench".into(),
        concurrency,
        ..RuntimeOptions::default()
    };
    let Some(runtime) = AgentRuntime::start(settings, instance_id, options, shutdown.clone())
        .await
        .context("starting the agent runtime")?
    else {
        return Ok(());
    };
    if runtime
        .register(ECHO, |request| async move { Ok(request.value) })
        .await
        .context("registering echo")?
    {
        println!("ready {instance_id}");
        shutdown.cancelled().await;
    }
    runtime.shutdown().await;
    Ok(())
}

/// What one level of [`call`] measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Level {
    /// Concurrent callers.
    pub callers: usize,
    /// Requests sent.
    pub requests: usize,
    /// Requests without their own reply in time (timeouts, errors, a wrong echo).
    pub errors: usize,
    /// Replies per second of the level's wall time.
    pub requests_per_s: f64,
    /// Median round trip, ms (send to reply); `null` when none came back.
    pub p50_ms: Option<f64>,
    /// 99th percentile round trip, ms.
    pub p99_ms: Option<f64>,
    /// The slowest round trip, ms.
    pub max_ms: Option<f64>,
    /// The level's wall time, s.
    pub wall_s: f64,
}

/// Sends `requests` requests to the `echo` agent type from `callers` concurrent callers
/// (each sends its next request once the last one is answered), each waiting up to
/// `timeout`, and measures them. Percentiles as [`percentile`] computes them.
pub async fn call(
    runtime: &AgentRuntime,
    requests: usize,
    callers: usize,
    timeout: Duration,
) -> Level {
    let started = Instant::now();
    let outcomes = run_many(requests, callers, {
        let runtime = runtime.clone();
        move |i| {
            let runtime = runtime.clone();
            async move { round_trip(&runtime, i, timeout).await }
        }
    })
    .await;
    let wall = started.elapsed();
    let mut errors = 0;
    let mut ms: Vec<f64> = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        match outcome {
            Ok(took) => ms.push(took.as_secs_f64() * 1e3),
            Err(err) => {
                errors += 1;
                if errors <= 5 {
                    eprintln!("agent-bench: {err:#}");
                }
            }
        }
    }
    ms.sort_by(f64::total_cmp);
    Level {
        callers,
        requests,
        errors,
        requests_per_s: round1(ms.len() as f64 / wall.as_secs_f64().max(1e-9)),
        p50_ms: percentile(&ms, 0.5),
        p99_ms: percentile(&ms, 0.99),
        max_ms: ms.last().copied().map(round1),
        wall_s: round1(wall.as_secs_f64()),
    }
}

/// What `agent-bench call` measures.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Requests at each level.
    pub requests: usize,
    /// The levels: concurrent callers.
    pub callers: Vec<usize>,
    /// Requests sent before measuring, from as many callers as the highest level, after a
    /// first request that may wait up to 60 s for the `echo` consumer group to form.
    pub warmup: usize,
    /// How long each request waits for its reply.
    pub timeout: Duration,
}

/// Starts a caller runtime (instance `agent-bench-caller`), warms up, and measures each
/// level of `plan` in turn with [`call`].
///
/// # Errors
/// When the runtime cannot start, the first request gets no reply within 60 s (no
/// `agent-bench serve` running), or a warm-up request fails.
pub async fn measure(settings: &KafkaSettings, plan: &Plan) -> anyhow::Result<Vec<Level>> {
    let runtime = AgentRuntime::start(
        settings,
        "agent-bench-caller",
        RuntimeOptions::default(),
        CancellationToken::new(),
    )
    .await
    .context("starting the agent runtime")?
    .context("shut down")?;
    eprintln!("agent-bench: warm-up, {} requests", plan.warmup);
    round_trip(&runtime, 0, Duration::from_secs(60))
        .await
        .context("the first request (is `agent-bench serve` running?)")?;
    let most = plan.callers.iter().copied().max().unwrap_or(1);
    let warm = call(&runtime, plan.warmup, most, plan.timeout).await;
    anyhow::ensure!(warm.errors == 0, "{} warm-up requests failed", warm.errors);
    let mut levels = Vec::new();
    for &callers in &plan.callers {
        eprintln!(
            "agent-bench: {} requests from {callers} callers",
            plan.requests
        );
        levels.push(call(&runtime, plan.requests, callers, plan.timeout).await);
    }
    runtime.shutdown().await;
    Ok(levels)
}

/// The levels as a Markdown table.
pub fn table(levels: &[Level]) -> String {
    let ms = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.1} ms"));
    let mut out = String::from(
        "| callers | requests | errors | requests/s | p50 | p99 | max |\n|---|---|---|---|---|---|---|\n",
    );
    for l in levels {
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} | {} | {} | {} |\n",
            l.callers,
            l.requests,
            l.errors,
            l.requests_per_s,
            ms(l.p50_ms),
            ms(l.p99_ms),
            ms(l.max_ms)
        ));
    }
    out
}

/// One request and its reply, checked to be this request's echo: its round trip.
///
/// # Errors
/// The runtime's error ([`SendError`](agent_runtime::agents::SendError)), or a reply that
/// is not the echo of this request.
pub async fn round_trip(
    runtime: &AgentRuntime,
    i: usize,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let message = json!({ "i": i });
    let started = Instant::now();
    let reply = runtime
        .send_message(ECHO, &message, timeout)
        .await
        .with_context(|| format!("request {i}"))?;
    let took = started.elapsed();
    anyhow::ensure!(
        reply.value == message,
        "request {i}: the reply {} is not its echo",
        reply.value
    );
    Ok(took)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_name_the_topics_under_the_prefix() {
        let settings = settings("127.0.0.1:9092", "bench42");
        assert_eq!(settings.topic_prefix, "bench42");
        assert_eq!(settings.topics.dead_letter, "bench42-langgraph-dead-letter");
        assert_eq!(settings.bootstrap_servers, "127.0.0.1:9092");
        settings.validate().expect("valid");
    }

    #[test]
    fn the_table_has_a_row_per_level() {
        let level = Level {
            callers: 64,
            requests: 2000,
            errors: 0,
            requests_per_s: 1234.5,
            p50_ms: Some(40.2),
            p99_ms: Some(80.0),
            max_ms: None,
            wall_s: 1.6,
        };
        let table = table(&[level]);
        assert_eq!(
            table.lines().nth(2),
            Some("| 64 | 2000 | 0 | 1234.5 | 40.2 ms | 80.0 ms | — |")
        );
    }
}
