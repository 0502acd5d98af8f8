//! agent-comms on a real broker: `GET /last_message` answered from the view of each
//! topic's newest record, and `POST /send_event` refusing a record over the producer's
//! limit as a client error.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use agent_runtime::kafka::{Producer, TopicSpec, ensure_topics};
use e2e::{Broker, LlmStandIn, System};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Creates `topic` (2 partitions, as the test settings say).
async fn create(system: &System, topic: &str) {
    ensure_topics(
        &system.settings.kafka,
        &[TopicSpec::plain(topic)],
        &CancellationToken::new(),
    )
    .await
    .expect("topic created");
}

/// Publishes `payload` to `topic` under `key` through agent-comms.
async fn publish(system: &System, topic: &str, key: &str, payload: Value) {
    system
        .send_event(&json!({"payload": payload, "topic": topic, "key": key}))
        .await
        .ok();
    // Timestamps are in milliseconds: keep each record strictly newer than the last.
    tokio::time::sleep(Duration::from_millis(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_reads_at_once_get_the_newest_record_within_a_second_and_a_newer_record_shows_next() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(
        &broker.bootstrap(),
        &llm.base_url(),
        &[
            ("COMMS_PUBLISH_TOPICS", "readings"),
            ("COMMS_READ_TOPICS", "readings,dev-langgraph-task-results"),
        ],
    )
    .await;
    let topic = "readings";
    create(&system, topic).await;
    for n in 0..6 {
        publish(&system, topic, &format!("sensor-{n}"), json!({"n": n})).await;
    }

    // Asked for the first time: the topic is added to the view, loaded, and answered.
    let started = Instant::now();
    let first = system.last_message(Some(topic)).await;
    let first_read = started.elapsed();
    let first = first.ok();
    assert_eq!(first.topic, topic);
    assert_eq!(first.payload, json!({"n": 5}), "{first:?}");
    assert_eq!(first.key.as_deref(), Some("sensor-5"));
    assert_eq!(first.headers["ce_source"], "/langgraph-kafka/agent-comms");

    // Forty at once, all answered from the view.
    let started = Instant::now();
    let mut reads = JoinSet::new();
    let system = Arc::new(system);
    for _ in 0..40 {
        let system = Arc::clone(&system);
        reads.spawn(async move {
            let answer = system.last_message(Some(topic)).await;
            (answer, started.elapsed())
        });
    }
    let mut slowest = Duration::ZERO;
    while let Some(read) = reads.join_next().await {
        let (answer, took) = read.expect("read ran");
        assert_eq!(answer.ok(), first, "every read shows the newest record");
        slowest = slowest.max(took);
    }
    assert!(
        slowest < Duration::from_secs(1),
        "40 reads at once took {slowest:?}"
    );

    // A newer record is what the reads show next, as soon as the view has read it.
    system
        .send_event(&json!({"payload": {"n": 6}, "topic": topic, "key": "sensor-6"}))
        .await
        .ok();
    let published = Instant::now();
    let shown_after = loop {
        let body = system.last_message(Some(topic)).await.ok();
        if body.payload == json!({"n": 6}) {
            break published.elapsed();
        }
        assert_eq!(body, first, "only the previous newest record until then");
        assert!(
            published.elapsed() < Duration::from_secs(1),
            "the newer record not shown after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!(
        "first read of a new topic {first_read:?}; 40 reads at once, slowest {slowest:?}; \
         a newer record shown {shown_after:?} after its acknowledgement"
    );

    // A topic outside COMMS_READ_TOPICS is refused, named.
    let refused = system.last_message(Some("no-such-topic")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        refused.body["error"]["code"], "forbidden",
        "{}",
        refused.body
    );
    // The results topic, followed from the start, still empty.
    let empty = system.last_message(None).await;
    assert_eq!(empty.status, 404, "{}", empty.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_over_the_producers_limit_is_a_413_naming_it_and_the_next_event_goes_through() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(
        &broker.bootstrap(),
        &llm.base_url(),
        &[
            ("COMMS_PUBLISH_TOPICS", "uploads"),
            ("COMMS_READ_TOPICS", "uploads"),
        ],
    )
    .await;
    let topic = "uploads";
    create(&system, topic).await;

    // The body fits the 1 MiB HTTP limit; the record (payload + headers) does not fit
    // the producer's.
    let too_large = "x".repeat(1_040_000);
    let body = json!({"payload": too_large, "topic": topic});
    assert!(body.to_string().len() < agent_runtime::http::MAX_BODY_BYTES);
    let refused = system.send_event(&body).await;
    let (status, answer) = (refused.status, refused.body);
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "payload_too_large", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&Producer::MAX_RECORD_BYTES.to_string()),
        "the message names the limit: {message}"
    );

    // Just under the limit goes through, and so does a small event after it.
    publish(&system, topic, "big", json!("y".repeat(990_000))).await;
    publish(&system, topic, "small", json!({"hello": "broker"})).await;
    // The view follows the topic a few milliseconds behind the broker.
    let deadline = Instant::now() + Duration::from_secs(5);
    let last = loop {
        let last = system.last_message(Some(topic)).await;
        if last.status == 200 && last.body["payload"] == json!({"hello": "broker"})
            || Instant::now() > deadline
        {
            break last.body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(last["payload"], json!({"hello": "broker"}), "{last}");
}
