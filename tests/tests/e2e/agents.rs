//! The agent runtime (`agent_runtime::agents`) on a real broker: request/reply,
//! error replies, timeouts, publish and scatter-gather, poison requests, discovery.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use agent_runtime::{
    agents::{AgentDescription, AgentError, AgentRuntime, SendError, envelope, topics},
    kafka::{CloudEvent, headers::AGENT_REQUEST},
};
use e2e::{Broker, read_topic, start_agent};
use rdkafka::{
    ClientConfig, Message,
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::{Value, json};

/// Long enough for a consumer group to form on Tansu (about half the 3 s session).
const FIRST_REPLY: Duration = Duration::from_secs(30);

/// Registers `echo` on `runtime`: it answers `{"echo": <message>, "trace_id": <the
/// request's trace id>}`.
async fn register_echo(runtime: &AgentRuntime) {
    assert!(
        runtime
            .register("echo", |request| async move {
                Ok(json!({
                    "echo": request.value,
                    "trace_id": request.trace.map(|t| t.trace_id_hex()),
                }))
            })
            .await
            .expect("registered")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echo_agent_answers_each_request_and_two_instances_share_the_work() {
    let broker = Broker::start();
    let (one, two) = (
        start_agent(&broker, "echo-1").await,
        start_agent(&broker, "echo-2").await,
    );
    register_echo(&one).await;
    register_echo(&two).await;
    let caller = start_agent(&broker, "caller").await;

    let reply = caller
        .send_message("echo", &json!({"n": -1}), FIRST_REPLY)
        .await
        .expect("a reply");
    assert_eq!(reply.value["echo"], json!({"n": -1}));
    assert_eq!(reply.agent_type, "echo");
    let trace = reply.trace.expect("the reply's traceparent");
    assert_eq!(
        reply.value["trace_id"],
        json!(trace.trace_id_hex()),
        "the reply continues the request's trace"
    );

    // Batches of requests at once until both instances have answered (the second joins
    // the group a rebalance later).
    let mut answered_by = HashSet::new();
    let started = Instant::now();
    let mut n = 0;
    while answered_by.len() < 2 && started.elapsed() < Duration::from_secs(60) {
        let batch: Vec<_> = (n..n + 12)
            .map(|i| {
                let caller = caller.clone();
                async move {
                    let reply = caller
                        .send_message("echo", &json!({"n": i}), FIRST_REPLY)
                        .await
                        .expect("a reply");
                    assert_eq!(reply.value["echo"], json!({"n": i}), "its own reply");
                    reply.agent_id
                }
            })
            .collect();
        answered_by.extend(futures::future::join_all(batch).await);
        n += 12;
    }
    assert_eq!(
        answered_by,
        HashSet::from(["echo-1".to_owned(), "echo-2".to_owned()]),
        "both instances answered ({n} requests)"
    );
    assert_eq!(caller.pending(), 0, "nothing left waiting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_comes_back_as_its_error_well_under_the_timeout() {
    let broker = Broker::start();
    let agent = start_agent(&broker, "agent-1").await;
    agent
        .register("strict", |request| async move {
            if request.value.get("panic").is_some() {
                panic!("the handler panics");
            }
            Err::<Value, _>(AgentError::new("invalid_input", "no text given"))
        })
        .await
        .expect("registered");
    let caller = start_agent(&broker, "caller").await;

    // The first request waits for the group to form.
    let first = caller.send_message("strict", &json!({}), FIRST_REPLY).await;
    assert!(matches!(first, Err(SendError::Agent { .. })), "{first:?}");

    let timeout = Duration::from_secs(20);
    let started = Instant::now();
    let err = caller
        .send_message("strict", &json!({}), timeout)
        .await
        .expect_err("the handler's error");
    let elapsed = started.elapsed();
    match err {
        SendError::Agent {
            code,
            message,
            agent_type,
            agent_id,
        } => {
            assert_eq!(
                (code.as_str(), message.as_str()),
                ("invalid_input", "no text given")
            );
            assert_eq!(
                (agent_type.as_str(), agent_id.as_str()),
                ("strict", "agent-1")
            );
        }
        other => panic!("expected the agent's error, got {other:?}"),
    }
    assert!(
        elapsed < Duration::from_secs(2),
        "the error came in {elapsed:?}, timeout {timeout:?}"
    );

    let started = Instant::now();
    let err = caller
        .send_message("strict", &json!({"panic": true}), timeout)
        .await
        .expect_err("a panic is an error reply");
    assert!(
        matches!(&err, SendError::Agent { code, .. } if code == "handler_panicked"),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_nobody_answers_times_out_at_its_timeout_and_one_waiting_at_shutdown_ends_closed()
{
    let broker = Broker::start();
    let caller = start_agent(&broker, "caller").await;
    for timeout in [Duration::from_secs(2), Duration::from_secs(3)] {
        let started = Instant::now();
        let err = caller
            .send_message("nobody", &json!({"hello": "anyone"}), timeout)
            .await
            .expect_err("no replier");
        let elapsed = started.elapsed();
        assert!(
            matches!(&err, SendError::Timeout { target, timeout: t } if target == "nobody" && *t == timeout),
            "{err:?}"
        );
        assert!(
            elapsed >= timeout.mul_f64(0.9) && elapsed <= timeout.mul_f64(1.1),
            "timed out after {elapsed:?}, timeout {timeout:?}"
        );
    }
    assert_eq!(caller.pending(), 0, "the timed-out requests are forgotten");

    // A request waiting when the runtime shuts down ends at once, and so does one after.
    let waiting = {
        let caller = caller.clone();
        tokio::spawn(async move {
            caller
                .send_message("nobody", &json!({}), Duration::from_secs(60))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    caller.shutdown().await;
    let ended = waiting.await.expect("joined");
    assert!(matches!(ended, Err(SendError::Closed)), "{ended:?}");
    let after = caller
        .send_message("nobody", &json!({}), Duration::from_secs(60))
        .await;
    assert!(matches!(after, Err(SendError::Closed)), "{after:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scatter_gather_keeps_the_replies_within_the_window_and_says_it_ran_out() {
    let broker = Broker::start();
    let topic = "dev-agent-census";
    let responders = start_agent(&broker, "responders").await;
    // Published messages each type saw.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    for (agent_type, delay) in [
        ("fast-0", 0),
        ("fast-1", 0),
        ("fast-2", 0),
        ("slow-0", 4000),
        ("slow-1", 4000),
    ] {
        let seen = Arc::clone(&seen);
        let subscribed = responders
            .subscribe(agent_type, topic, move |message| {
                let seen = Arc::clone(&seen);
                async move {
                    if !message.reply_expected {
                        seen.lock().expect("lock").push(agent_type.to_owned());
                        return Ok(Value::Null);
                    }
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    Ok(json!({"type": agent_type, "asked": message.value}))
                }
            })
            .await
            .expect("subscribed");
        assert!(subscribed);
    }
    let caller = start_agent(&broker, "caller").await;

    // A published message reaches every subscribed type (once each group has formed).
    caller
        .publish_message(topic, &json!({"hello": "all"}))
        .await
        .expect("published");
    let started = Instant::now();
    while seen.lock().expect("lock").len() < 5 && started.elapsed() < FIRST_REPLY {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut types = seen.lock().expect("lock").clone();
    types.sort();
    assert_eq!(
        types,
        ["fast-0", "fast-1", "fast-2", "slow-0", "slow-1"],
        "each type got the published message once"
    );

    let window = Duration::from_secs(2);
    let started = Instant::now();
    let gathered = caller
        .scatter_gather(topic, &json!({"q": "who"}), window, 5)
        .await
        .expect("gathered");
    let elapsed = started.elapsed();
    let mut answered: Vec<&str> = gathered
        .replies
        .iter()
        .map(|r| r.agent_type.as_str())
        .collect();
    answered.sort_unstable();
    assert_eq!(answered, ["fast-0", "fast-1", "fast-2"], "{gathered:?}");
    assert!(gathered.timed_out, "the window ran out before 5 replies");
    assert!(gathered.errors.is_empty());
    for reply in &gathered.replies {
        assert_eq!(reply.value["asked"], json!({"q": "who"}));
    }
    assert!(
        elapsed >= window.mul_f64(0.9) && elapsed <= window.mul_f64(1.1),
        "gathered for {elapsed:?}, window {window:?}"
    );

    // Enough replies end the gathering before the window.
    let started = Instant::now();
    let gathered = caller
        .scatter_gather(topic, &json!({"q": "quick"}), Duration::from_secs(10), 3)
        .await
        .expect("gathered");
    assert_eq!(gathered.replies.len(), 3, "{gathered:?}");
    assert!(!gathered.timed_out);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_request_goes_to_the_dead_letter_topic_and_the_agent_goes_on() {
    let broker = Broker::start();
    let agent = start_agent(&broker, "echo-1").await;
    register_echo(&agent).await;
    let caller = start_agent(&broker, "caller").await;
    caller
        .send_message("echo", &json!("warm-up"), FIRST_REPLY)
        .await
        .expect("a reply");

    // Records on the request topic that are no valid request: plain JSON without
    // headers, and a request that names the results topic as where to reply.
    let requests = topics::request_topic("dev", "echo");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("producer");
    let forged = CloudEvent::new("forger", AGENT_REQUEST, None)
        .to_headers()
        .insert(Header {
            key: envelope::CORRELATION_ID,
            value: Some("forged-1"),
        })
        .insert(Header {
            key: envelope::REPLY_TOPIC,
            value: Some("dev-langgraph-task-results"),
        })
        .insert(Header {
            key: envelope::REPLY_PARTITION,
            value: Some("0"),
        });
    for (key, headers) in [("plain", OwnedHeaders::new()), ("forged", forged)] {
        producer
            .send(
                FutureRecord::to(&requests)
                    .key(key)
                    .payload(r#"{"n": 1}"#)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .expect("produced");
    }

    let reply = caller
        .send_message("echo", &json!("after"), FIRST_REPLY)
        .await
        .expect("the agent goes on");
    assert_eq!(reply.value["echo"], "after");

    let dead = read_topic(
        &broker.bootstrap(),
        "dev-langgraph-dead-letter",
        2,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(dead.len(), 2, "both poison requests dead-lettered");
    let reasons: Vec<(String, String)> = dead
        .iter()
        .map(|m| {
            let header = |name: &str| {
                m.headers()
                    .and_then(|h| h.iter().find(|h| h.key == name))
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            (
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                header("dlq_error"),
            )
        })
        .collect();
    assert!(
        reasons
            .iter()
            .any(|(key, reason)| key == "plain" && reason.contains("no ce_type")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(key, reason)| key == "forged" && reason.contains("not the reply topic")),
        "{reasons:?}"
    );
}

fn description(agent_type: &str) -> AgentDescription {
    AgentDescription {
        agent_type: agent_type.into(),
        agent_id: String::new(),
        service: "test".into(),
        version: "1".into(),
        model: None,
        in_flight: 0,
        concurrency: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_lists_every_instance_once_and_drops_invalid_descriptions() {
    let broker = Broker::start();
    let (one, two, liar) = (
        start_agent(&broker, "worker-1").await,
        start_agent(&broker, "worker-2").await,
        start_agent(&broker, "liar-1").await,
    );
    // Two instances of one type: a broadcast reaches both, unlike a group's message.
    assert!(
        one.serve_describe(|| description("worker"))
            .await
            .expect("serves")
    );
    assert!(
        two.serve_describe(|| description("worker"))
            .await
            .expect("serves")
    );
    // An answer that is no valid description (a type with a space in it).
    assert!(
        liar.serve_describe(|| description("not valid"))
            .await
            .expect("serves")
    );
    let caller = start_agent(&broker, "caller").await;

    let window = Duration::from_millis(1500);
    let started = Instant::now();
    let found = caller.discover(window).await.expect("discovered");
    assert!(
        started.elapsed() >= window,
        "it gathers for the whole window"
    );
    assert!(found.timed_out);
    let mut ids: Vec<&str> = found.agents.iter().map(|a| a.agent_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["worker-1", "worker-2"], "{found:?}");
    assert!(found.agents.iter().all(|a| a.agent_type == "worker"));
    assert_eq!(found.invalid, 1, "the liar's answer is counted and dropped");
    assert_eq!(caller.pending(), 0);

    two.shutdown().await;
    let found = caller.discover(window).await.expect("discovered");
    let ids: Vec<&str> = found.agents.iter().map(|a| a.agent_id.as_str()).collect();
    assert_eq!(ids, ["worker-1"], "a stopped instance no longer answers");
}
