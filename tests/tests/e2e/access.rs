//! Who may do what: the probe that found the bridges open, replayed — topic policy (403),
//! API keys (401) — and a forged result that must not replace the real one.

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use agent_core::task::{TaskResult, TaskStatus, TokenUsage};
use agent_runtime::telemetry::LogWriter;
use e2e::{Broker, LlmStandIn, System, produce_tasks};
use rdkafka::{
    ClientConfig,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::{Value, json};
use tracing_subscriber::prelude::*;

/// The right key, and a wrong one of the same length.
const KEY: &str = "lgk-right-key-0123456789abcdef";
const WRONG: &str = "lgk-wrong-key-0123456789abcdef";

/// Every log line of the services in this process (they run in-process), written as in
/// production: through the redacting [`LogWriter`].
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, Option<String>, Value) {
    let mut request = http.request(method, url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let answer = request.send().await.expect("answer");
    let status = answer.status().as_u16();
    let challenge = answer
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = answer.json().await.unwrap_or(Value::Null);
    (status, challenge, body)
}

fn topic_exists(bootstrap: &str, topic: &str) -> bool {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("allow.auto.create.topics", "false")
        .create()
        .expect("client");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    metadata.topics().iter().any(|t| t.name() == topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_of_the_probe_gets_403_or_401_and_no_key_reaches_a_log_or_answer() {
    let log = Captured::default();
    let sink = log.clone();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(
            "debug,rdkafka=warn,librdkafka=warn,hyper=info,h2=info",
        ))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(LogWriter::new(move || sink.clone(), false)),
        )
        .init();

    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(&broker.bootstrap(), &llm.base_url(), &[("API_KEYS", KEY)]).await;
    let topics = system.settings.kafka.topics.clone();
    let open = reqwest::Client::new();
    let send = format!("{}/send_event", system.comms);

    // The topic policy, with the right key.
    let forged = json!({"task_id": uuid::Uuid::new_v4(), "status": "completed",
        "result": "FORGED ANSWER", "solver_id": "x", "attempts": 1,
        "started_at": "2099-01-01T00:00:00Z", "finished_at": "2099-01-01T00:00:00Z"});
    for (topic, setting) in [
        (topics.results.as_str(), "COMMS_PUBLISH_TOPICS"),
        ("attacker-made-topic-1", "COMMS_PUBLISH_TOPICS"),
        ("__consumer_offsets", "internal"),
        (topics.dead_letter.as_str(), "dead-letter"),
    ] {
        let body = json!({"topic": topic, "key": "k", "payload": forged});
        let (status, _, answer) =
            call(&open, reqwest::Method::POST, &send, Some(KEY), Some(&body)).await;
        assert_eq!(status, 403, "publish to {topic}: {answer}");
        assert_eq!(answer["error"]["code"], "forbidden");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(setting)),
            "{answer}"
        );
    }
    assert!(
        !topic_exists(&broker.bootstrap(), "attacker-made-topic-1"),
        "a refused publish created no topic"
    );
    for topic in [
        "__consumer_offsets",
        "some-other-topic",
        topics.dead_letter.as_str(),
    ] {
        let url = format!("{}/last_message?topic={topic}", system.comms);
        let (status, _, answer) = call(&open, reqwest::Method::GET, &url, Some(KEY), None).await;
        assert_eq!(status, 403, "read {topic}: {answer}");
    }

    // API keys: none or a wrong one of the same length → 401 on every route; the right
    // one passes; health stays open.
    let conversation = json!({"conversation_history": "User: help"});
    let routes = [
        (
            reqwest::Method::POST,
            format!("{}/generate-task", system.generator),
            Some(conversation.clone()),
        ),
        (
            reqwest::Method::GET,
            format!("{}/task-results", system.generator),
            None,
        ),
        (
            reqwest::Method::GET,
            format!("{}/task-result/{}", system.generator, uuid::Uuid::new_v4()),
            None,
        ),
        (
            reqwest::Method::POST,
            format!(
                "{}/task-result/{}/resume",
                system.generator,
                uuid::Uuid::new_v4()
            ),
            Some(json!({"resume": {"approved": true}})),
        ),
        (
            reqwest::Method::POST,
            send.clone(),
            Some(json!({"payload": {"n": 1}})),
        ),
        (
            reqwest::Method::GET,
            format!("{}/last_message", system.comms),
            None,
        ),
    ];
    for (method, url, body) in &routes {
        for key in [None, Some(WRONG)] {
            let (status, challenge, answer) =
                call(&open, method.clone(), url, key, body.as_ref()).await;
            assert_eq!(status, 401, "{method} {url} with {key:?}: {answer}");
            assert_eq!(challenge.as_deref(), Some("Bearer"));
            assert_eq!(answer["error"]["code"], "unauthorized", "{answer}");
            assert!(!answer.to_string().contains("lgk-"), "{answer}");
        }
        let (status, _, answer) = call(&open, method.clone(), url, Some(KEY), body.as_ref()).await;
        assert!(
            [200, 404].contains(&status),
            "{method} {url} with the right key: {status} {answer}"
        );
        assert!(!answer.to_string().contains("lgk-"), "{answer}");
    }
    for base in [&system.generator, &system.comms, &system.solver] {
        let (status, _, _) = call(
            &open,
            reqwest::Method::GET,
            &format!("{base}/health"),
            None,
            None,
        )
        .await;
        assert_eq!(status, 200, "{base}/health stays open");
    }

    let log = String::from_utf8_lossy(&log.0.lock().expect("log")).into_owned();
    assert!(log.contains("/generate-task"), "the requests were logged");
    assert!(
        !log.contains(KEY) && !log.contains(WRONG),
        "a key in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_forged_onto_the_topic_with_a_later_finished_at_does_not_replace_the_real_one() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(&broker.bootstrap(), &llm.base_url(), &[]).await;
    let topics = system.settings.kafka.topics.clone();

    let ids = produce_tasks(&broker.bootstrap(), &topics.events, 1).await;
    let real = system
        .wait_for_result(&ids[0], Duration::from_secs(30))
        .await;
    assert_eq!(real.status, TaskStatus::Completed, "{real:?}");
    let answer = real.result.as_ref().and_then(|r| r.result.clone());

    // Straight onto the results topic, keyed by the task id, finished in 2099.
    let task = real.task.clone().expect("task");
    let mut forged = TaskResult::completed(
        &task,
        "FORGED ANSWER",
        "forger",
        task.created_at,
        TokenUsage::default(),
    );
    forged.finished_at = "2099-01-01T00:00:00Z".parse().expect("time");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("producer");
    let value = serde_json::to_vec(&forged).expect("JSON");
    producer
        .send(
            FutureRecord::to(&topics.results)
                .key(&ids[0])
                .payload(&value),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
    // A later task's result shows the view has read past the forgery.
    let later = produce_tasks(&broker.bootstrap(), &topics.events, 1).await;
    let done = system
        .wait_for_result(&later[0], Duration::from_secs(30))
        .await;
    assert_eq!(done.status, TaskStatus::Completed, "{done:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let shown = system
        .wait_for_result(&ids[0], Duration::from_secs(5))
        .await;
    let shown = shown.result.expect("a result");
    assert_eq!(shown.result, answer, "{shown:?}");
    assert_ne!(shown.solver_id, "forger", "{shown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_limit_gets_a_json_429_with_retry_after_on_the_post_routes() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(
        &broker.bootstrap(),
        &llm.base_url(),
        &[
            ("RATE_LIMIT_PER_SECOND", "1"),
            ("RATE_LIMIT_BURST", "2"),
            ("RATE_LIMIT_LOOPBACK", "true"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    for (url, body) in [
        (
            format!("{}/send_event", system.comms),
            json!({"payload": {"n": 1}}),
        ),
        (
            format!("{}/generate-task", system.generator),
            json!({"conversation_history": "User: help"}),
        ),
    ] {
        let mut statuses = Vec::new();
        let mut refused = None;
        for _ in 0..4 {
            let answer = http.post(&url).json(&body).send().await.expect("answer");
            statuses.push(answer.status().as_u16());
            if answer.status() == 429 {
                let retry_after = answer
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                refused = Some((retry_after, answer.json::<Value>().await.expect("JSON")));
            }
        }
        assert_eq!(
            statuses[..2],
            [200, 200],
            "{url}: the burst passes: {statuses:?}"
        );
        assert!(statuses[2..].contains(&429), "{url}: {statuses:?}");
        let (retry_after, answer) = refused.expect("a 429");
        assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s >= 1)));
        assert_eq!(answer["error"]["code"], "too_many_requests", "{answer}");
        // Reads are not limited.
        assert_eq!(system.task_results("").await.status, 200);
    }
    // A resume is limited too (an unknown task: 404 while the budget lasts).
    let approve = json!({"resume": {"approved": true}});
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let task_id = uuid::Uuid::new_v4();
        statuses.push(system.resume_task(task_id, &approve).await.status);
    }
    assert!(
        statuses.contains(&429) && statuses.iter().all(|s| [404, 429].contains(s)),
        "resume: {statuses:?}"
    );
}
