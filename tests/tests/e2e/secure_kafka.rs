//! Kafka security settings against a broker that does not speak them: a `SASL_SSL` client
//! of a plaintext Tansu broker never gets through its TLS handshake (Tansu holds the
//! connection until librdkafka's 10 s connection-setup timeout). The three services start
//! anyway, say `degraded` and then why, and answer 503 within the produce timeout rather
//! than hanging; the password shows nowhere. (No local broker can check SASL itself:
//! Tansu's `--authentication` refuses librdkafka's first request; the unit tests of
//! `agent_runtime::kafka` check the librdkafka properties the settings become.)

use std::time::{Duration, Instant};

use agent_runtime::config::Settings;
use e2e::{Broker, LlmStandIn, get_json};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "pa55-w0rd-never-shown";
const PRODUCE_TIMEOUT_MS: u64 = 2000;

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> (u16, Value, Duration) {
    let started = Instant::now();
    let response = http
        .post(url)
        .json(body)
        .send()
        .await
        .expect("answered before the client's timeout");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, started.elapsed())
}

/// Polls `GET {base}/health` until the first broker check has answered (the status is
/// no longer "not checked yet"), up to `timeout`.
async fn checked_health(http: &reqwest::Client, base: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, health) = get_json(http, &format!("{base}/health")).await;
        assert_eq!(status, 200, "{health}");
        if health["broker"]["error"] != "not checked yet" {
            return health;
        }
        assert!(
            Instant::now() < deadline,
            "no broker check within {timeout:?}: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_against_a_plaintext_broker_is_degraded_and_503_not_a_hang() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = agent_runtime::telemetry::init(agent_runtime::telemetry::LogFormat::Pretty, "e2e");
    }
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let bootstrap = broker.bootstrap();
    let llm_url = llm.base_url();
    let timeout = PRODUCE_TIMEOUT_MS.to_string();
    let settings = Settings::from_vars([
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
        ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
        ("KAFKA_SASL_USERNAME", "svc-langgraph"),
        ("KAFKA_SASL_PASSWORD", PASSWORD),
        ("KAFKA_PRODUCE_TIMEOUT_MS", timeout.as_str()),
        ("OPENAI_BASE_URL", llm_url.as_str()),
        ("BIND_ADDRESS", "127.0.0.1"),
        ("PORT", "0"),
    ])
    .expect("valid settings");
    let shutdown = CancellationToken::new();
    let mut bases = Vec::new();
    let generator = task_generator::startup::App::build(settings.clone())
        .await
        .expect("task-generator builds against a refusing broker");
    bases.push(format!(
        "http://{}",
        generator.local_addr().expect("address")
    ));
    tokio::spawn(generator.run_until_stopped(shutdown.clone()));
    let comms = agent_comms::startup::App::build(settings.clone())
        .await
        .expect("agent-comms builds against a refusing broker");
    bases.push(format!("http://{}", comms.local_addr().expect("address")));
    tokio::spawn(comms.run_until_stopped(shutdown.clone()));
    let solver = task_solver::startup::App::build(settings)
        .await
        .expect("task-solver builds against a refusing broker");
    bases.push(format!("http://{}", solver.local_addr().expect("address")));
    tokio::spawn(solver.run_until_stopped(shutdown.clone()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");

    // Every service is live, degraded with a reason, not ready; the password is nowhere.
    for base in &bases {
        let health = checked_health(&http, base, Duration::from_secs(10)).await;
        assert_eq!(health["status"], "degraded", "{base}: {health}");
        assert_eq!(health["broker"]["reachable"], false, "{base}: {health}");
        assert!(!health.to_string().contains(PASSWORD), "{health}");
        let (status, _) = get_json(&http, &format!("{base}/ready")).await;
        assert_eq!(status, 503, "{base}/ready");
    }

    // Publishing fails as a 503, not a hang: within the produce timeout, or twice it when
    // the producer replaces a failed client and sends once more, plus room for a busy
    // machine (the stand-in's answer, the scheduler).
    let no_hang = Duration::from_millis(2 * PRODUCE_TIMEOUT_MS + 5000);
    let (status, body, took) = post(
        &http,
        &format!("{}/generate-task", bases[0]),
        &json!({"conversation_history": "User: I need help with my project"}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        took < no_hang,
        "POST /generate-task took {took:?}, produce timeout {PRODUCE_TIMEOUT_MS} ms"
    );
    let (status, body, took) = post(
        &http,
        &format!("{}/send_event", bases[1]),
        &json!({"payload": {"hello": "broker"}}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        took < no_hang,
        "POST /send_event took {took:?}, produce timeout {PRODUCE_TIMEOUT_MS} ms"
    );
    assert!(!body.to_string().contains(PASSWORD), "{body}");
    // Reading fails after its metadata timeout (5 s), as a 503.
    let started = Instant::now();
    let (status, body) = get_json(&http, &format!("{}/last_message", bases[1])).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "GET /last_message hung"
    );

    // Once librdkafka gives up on the handshake (its 10 s connection-setup timeout, as
    // Tansu holds the connection open), `/health` says why.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (_, health) = get_json(&http, &format!("{}/health", bases[0])).await;
        assert_eq!(health["status"], "degraded", "{health}");
        let error = health["broker"]["error"].as_str().unwrap_or_default();
        // "SSL handshake failed: …" or "Connection setup timed out in state SSL_HANDSHAKE".
        if error
            .to_lowercase()
            .replace('_', " ")
            .contains("ssl handshake")
        {
            assert!(error.contains("sasl_ssl://"), "{error}");
            assert!(!error.contains(PASSWORD), "{error}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/health never gave librdkafka's reason: {health}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    shutdown.cancel();
    drop(broker);
}
