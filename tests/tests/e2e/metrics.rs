//! `GET /metrics` on a running system: Prometheus' text format, with the HTTP requests
//! counted by route template and status, and the pipeline's own figures — tasks, their
//! latency, the model's requests and tokens by node, work in flight, consumer lag, dead
//! letters — with the values 20 tasks and one poison record leave.

use std::{collections::BTreeMap, time::Duration};

use e2e::{Broker, LlmStandIn, System};
use serde_json::json;

/// The samples of a Prometheus text exposition: series (name and labels, as written) →
/// value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The value of `series` in `samples`, or a panic naming it.
fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
}

async fn scrape(system: &System, base: &str) -> BTreeMap<String, f64> {
    let response = system
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200, "{base}");
    samples(&response.text().await.expect("text"))
}

/// Scrapes `base` until `ready` holds (at most 30 s), and returns that scrape.
async fn scrape_until(
    system: &System,
    base: &str,
    what: &str,
    ready: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let samples = scrape(system, base).await;
        if ready(&samples) {
            return samples;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what} within 30 s: {samples:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_twenty_tasks_the_metrics_hold_their_figures() {
    const TASKS: usize = 20;
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(&broker.bootstrap(), &llm.base_url(), &[]).await;
    let topics = system.settings.kafka.topics.clone();

    let mut ids = Vec::with_capacity(TASKS);
    for i in 0..TASKS {
        let task = system
            .generate_task(json!(format!("User: help me with project {i}")))
            .await
            .ok();
        ids.push(task.task_id.to_string());
    }
    for id in &ids {
        let view = system.wait_for_result(id, Duration::from_secs(60)).await;
        assert_eq!(
            view.status,
            agent_core::task::TaskStatus::Completed,
            "{view:?}"
        );
    }
    // One record that is no task, through the bridge: the solver dead-letters it.
    let sent = system
        .send_event(&json!({"payload": {"not": "a task"}}))
        .await;
    assert_eq!(sent.status, 200, "{}", sent.body);

    let dead = format!(r#"dead_letters_total{{topic="{}"}}"#, topics.dead_letter);
    let lag = format!(
        r#"kafka_consumer_lag{{group="task-solver",topic="{}",partition="#,
        topics.events
    );
    // librdkafka reports the lag every 5 s, from offsets committed each second: wait
    // until every partition the solver fetches is reported caught up.
    let solver = scrape_until(
        &system,
        &system.solver,
        "dead letter and caught-up lag",
        |s| {
            let lags: Vec<f64> = s
                .iter()
                .filter(|(series, _)| series.starts_with(&lag))
                .map(|(_, v)| *v)
                .collect();
            s.get(&dead) == Some(&1.0) && !lags.is_empty() && lags.iter().all(|v| *v == 0.0)
        },
    )
    .await;
    let generator = scrape(&system, &system.generator).await;
    let comms = scrape(&system, &system.comms).await;
    let n = TASKS as f64;

    // task-generator: the POSTs, the tasks it published, its model requests.
    for (series, expected) in [
        (
            r#"http_requests_total{method="POST",route="/generate-task",status="200"}"#,
            n,
        ),
        (
            r#"http_request_duration_seconds_count{method="POST",route="/generate-task",status="200"}"#,
            n,
        ),
        ("tasks_published_total", n),
        (r#"llm_requests_total{model="stand-in",node="draft"}"#, n),
        (
            r#"llm_request_duration_seconds_count{model="stand-in",node="draft"}"#,
            n,
        ),
        // The stand-in says 10 prompt and 5 completion tokens per answer.
        (
            r#"llm_tokens_total{model="stand-in",node="draft",type="input"}"#,
            10.0 * n,
        ),
        (
            r#"llm_tokens_total{model="stand-in",node="draft",type="output"}"#,
            5.0 * n,
        ),
    ] {
        assert_eq!(value(&generator, series), expected, "{series}");
    }
    // agent-comms: the one record it bridged.
    assert_eq!(
        value(
            &comms,
            r#"http_requests_total{method="POST",route="/send_event",status="200"}"#
        ),
        1.0
    );
    // task-solver: 20 solved, none failed, their latency, two model requests each, and
    // nothing left in flight.
    for (series, expected) in [
        ("tasks_solved_total", n),
        (r#"task_latency_seconds_count{status="completed"}"#, n),
        (
            r#"task_latency_seconds_bucket{status="completed",le="+Inf"}"#,
            n,
        ),
        (r#"llm_requests_total{model="stand-in",node="plan"}"#, n),
        (r#"llm_requests_total{model="stand-in",node="solve"}"#, n),
        (
            r#"llm_request_duration_seconds_count{model="stand-in",node="solve"}"#,
            n,
        ),
        (
            r#"llm_tokens_total{model="stand-in",node="solve",type="output"}"#,
            5.0 * n,
        ),
        ("tasks_in_flight", 0.0),
        (
            "task_concurrency_limit",
            system.settings.solver.concurrency as f64,
        ),
        (dead.as_str(), 1.0),
    ] {
        assert_eq!(value(&solver, series), expected, "{series}");
    }
    let latency = value(&solver, r#"task_latency_seconds_sum{status="completed"}"#);
    assert!(latency > 0.0 && latency < 60.0 * n, "latency sum {latency}");
    for absent in [
        "tasks_failed_total",
        "tasks_interrupted_total",
        "llm_errors_total",
    ] {
        assert!(
            !solver.keys().any(|series| series.starts_with(absent)),
            "{absent} recorded: {solver:#?}"
        );
    }
    for samples in [&generator, &comms, &solver] {
        assert!(
            !samples
                .keys()
                .any(|series| ids.iter().any(|id| series.contains(id))),
            "a task id as a label"
        );
    }
}
