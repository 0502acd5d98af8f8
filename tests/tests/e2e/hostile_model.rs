//! A model server that misbehaves on purpose: a runaway answer, an echoed API key. The
//! solver runs as its own process so that its memory and its log can be measured.

use std::time::{Duration, Instant};

use agent_core::task::TaskStatus;
use e2e::{Broker, LlmStandIn, SolverProcess, System, completion, produce_tasks, read_topic};
use rdkafka::Message;
use serde_json::json;
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_answering_50_mb_fails_the_task_within_10_s_and_the_solver_stays_small() {
    let broker = Broker::start();
    let llm = LlmStandIn::empty().await;
    let huge = "y".repeat(50 << 20);
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(&huge)))
        .mount(&llm.server)
        .await;
    drop(huge);
    let system = System::start_without_solver(&broker.bootstrap(), &llm.base_url(), &[]).await;
    let solver = SolverProcess::start(&broker.bootstrap(), &llm.base_url(), "huge", &[]).await;
    let topics = system.settings.kafka.topics.clone();

    let started = Instant::now();
    let ids = produce_tasks(&broker.bootstrap(), &topics.events, 1).await;
    let result = system
        .wait_for_result(&ids[0], Duration::from_secs(30))
        .await;
    let elapsed = started.elapsed();
    let peak = solver.peak_rss_bytes().expect("solver running");
    let log_bytes = std::fs::metadata(solver.log_path()).map_or(0, |m| m.len());
    eprintln!(
        "50 MB answer: {} in {elapsed:?}; solver peak RSS {:.1} MB; log {log_bytes} bytes",
        result.status.as_str(),
        peak as f64 / 1e6
    );

    assert_eq!(result.status, TaskStatus::Failed, "{result:?}");
    let error = result
        .result
        .as_ref()
        .and_then(|r| r.error.as_deref())
        .unwrap_or_default();
    assert!(
        error.contains("exceeds OPENAI_MAX_RESPONSE_BYTES (1048576 bytes)"),
        "{result:?}"
    );
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(peak < 100_000_000, "solver peak RSS {peak} bytes");
    assert!(log_bytes < 1_000_000, "solver log {log_bytes} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_echoing_the_api_key_leaks_it_into_no_answer_result_topic_or_log() {
    const KEY: &str = "sk-e2e-echoed-secret-4242";
    const PROXY_PASSWORD: &str = "proxy-pass-7777";
    let broker = Broker::start();
    let llm = LlmStandIn::empty().await;
    // Every request is refused with the key quoted, as OpenAI's 401 does (and a 500
    // quoting the request's headers, as a broken proxy might).
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(wiremock::matchers::body_string_contains("json_schema"))
        .respond_with(ResponseTemplate::new(500).set_body_string(format!(
            "<html>upstream said: Authorization: Bearer {KEY}</html>"
        )))
        .with_priority(1)
        .mount(&llm.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "message": format!("Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com/account/api-keys."),
            "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})))
        .with_priority(5)
        .mount(&llm.server)
        .await;
    let port = llm.server.address().port();
    let url = format!("http://proxy-user:{PROXY_PASSWORD}@127.0.0.1:{port}/v1");
    let extra = [
        ("OPENAI_API_KEY", KEY),
        ("OPENAI_BASE_URL", url.as_str()),
        ("OPENAI_MAX_RETRIES", "0"),
    ];
    let system = System::start_without_solver(&broker.bootstrap(), &url, &extra).await;
    let solver = SolverProcess::start(&broker.bootstrap(), &url, "echo", &extra).await;
    let topics = system.settings.kafka.topics.clone();

    // The generator's answer to a model failure.
    let refused = system
        .generate_task(json!([{"role": "user", "content": "help"}]))
        .await;
    assert_eq!(refused.status, 502, "{}", refused.body);
    let answer = refused.body.to_string();
    assert!(
        !answer.contains(KEY) && answer.contains("[REDACTED]"),
        "{answer}"
    );

    // The solver's failed result, on the topic and in the view.
    let ids = produce_tasks(&broker.bootstrap(), &topics.events, 1).await;
    let result = system
        .wait_for_result(&ids[0], Duration::from_secs(30))
        .await;
    assert_eq!(result.status, TaskStatus::Failed, "{result:?}");
    let error = result
        .result
        .as_ref()
        .and_then(|r| r.error.as_deref())
        .unwrap_or_default();
    assert!(
        error.contains("Incorrect API key provided: [REDACTED]"),
        "{result:?}"
    );
    let on_topic = read_topic(
        &broker.bootstrap(),
        &topics.results,
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(on_topic.len(), 1);
    for message in &on_topic {
        let value = String::from_utf8_lossy(message.payload().unwrap_or_default());
        assert!(!value.contains(KEY), "key on the results topic: {value}");
    }

    // Health shows the endpoint without its password.
    for base in [&system.generator, &solver.health.replace("/health", "")] {
        let health = system.health(base).await.ok();
        let endpoint = health.details["llm_endpoint"].as_str().unwrap_or_default();
        assert!(
            endpoint.contains("[REDACTED]@127.0.0.1") && !endpoint.contains(PROXY_PASSWORD),
            "{health:?}"
        );
    }

    // The solver's log saw the echo, and holds neither secret.
    let log = std::fs::read_to_string(solver.log_path()).expect("solver log");
    assert!(log.contains("[REDACTED]"), "the echo reached the log path");
    assert!(!log.contains(KEY), "key in the solver log");
    assert!(
        !log.contains(PROXY_PASSWORD),
        "proxy password in the solver log"
    );
}
