//! A missing broker: services start anyway, say `degraded`, answer 503 rather than 200,
//! and recover by themselves when the broker comes up.

use std::time::{Duration, Instant};

use agent_runtime::config::Settings;
use e2e::{Broker, LlmStandIn, free_port, get_json};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_broker_health_is_degraded_and_generate_task_is_503() {
    let llm = LlmStandIn::healthy().await;
    let port = free_port(); // nothing listens here
    let bootstrap = format!("127.0.0.1:{port}");
    let llm_url = llm.base_url();
    let settings = Settings::from_vars([
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
        ("OPENAI_BASE_URL", llm_url.as_str()),
        ("KAFKA_PRODUCE_TIMEOUT_MS", "1500"),
        ("BIND_ADDRESS", "127.0.0.1"),
        ("PORT", "0"),
    ])
    .expect("valid settings");
    let shutdown = CancellationToken::new();
    let app = task_generator::startup::App::build(settings)
        .await
        .expect("builds without a broker");
    let base = format!("http://{}", app.local_addr().expect("address"));
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let http = reqwest::Client::new();

    let (status, health) = get_json(&http, &format!("{base}/health")).await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["broker"]["reachable"], false);
    let (status, _) = get_json(&http, &format!("{base}/ready")).await;
    assert_eq!(status, 503);
    // No secret in health.
    assert!(!health.to_string().contains("test-key"));

    let response = http
        .post(format!("{base}/generate-task"))
        .json(&json!({"conversation_history": "User: I need help with my project"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");

    // Once the first check has failed, `/health` says why, in librdkafka's words.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, health) = get_json(&http, &format!("{base}/health")).await;
        let error = health["broker"]["error"].as_str().unwrap_or_default();
        if error.contains("Connection refused") {
            assert!(error.contains(&bootstrap), "{error}");
            break;
        }
        assert!(Instant::now() < deadline, "no reason in /health: {health}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The broker comes up on that port: health recovers by itself.
    let _broker = Broker::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, health) = get_json(&http, &format!("{base}/health")).await;
        if health["status"] == "ok" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health did not recover: {health}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, _) = get_json(&http, &format!("{base}/ready")).await;
    assert_eq!(status, 200);
    shutdown.cancel();
}
