//! The view on librdkafka's mock cluster: what a read answers as records arrive, topics
//! asked for, limits and shutdown; and the rendering of a record.

use agent_runtime::kafka::KafkaSettings;
use rdkafka::{
    ClientConfig, Timestamp,
    message::{Header, OwnedHeaders, OwnedMessage},
    mocking::MockCluster,
    producer::{DefaultProducerContext, FutureProducer, FutureRecord},
};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;

fn message(payload: &[u8]) -> OwnedMessage {
    OwnedMessage::new(
        Some(payload.to_vec()),
        Some(b"k1".to_vec()),
        "events".into(),
        Timestamp::CreateTime(1_700_000_000_000),
        1,
        42,
        Some(OwnedHeaders::new().insert(Header {
            key: "ce_type",
            value: Some("io.example"),
        })),
    )
}

#[test]
fn a_record_renders_as_the_last_message_json_shape() {
    let newest = Newest::render(&message(br#"{"a": [1, 2]}"#)).expect("rendered");
    assert_eq!((newest.partition, newest.offset), (1, 42));
    assert_eq!(newest.timestamp_ms, Some(1_700_000_000_000));
    assert_eq!(
        newest.value().expect("JSON"),
        json!({
            "topic": "events",
            "partition": 1,
            "offset": 42,
            "key": "k1",
            "timestamp_ms": 1_700_000_000_000_i64,
            "headers": {"ce_type": "io.example"},
            "payload": {"a": [1, 2]},
        })
    );
}

#[test]
fn a_value_that_is_not_json_shows_as_its_text() {
    let newest = Newest::render(&message(b"plain \xff text")).expect("rendered");
    assert_eq!(
        newest.value().expect("JSON")["payload"],
        json!("plain \u{fffd} text")
    );
}

const EVENTS: &str = "events";

fn settings(bootstrap: &str) -> KafkaSettings {
    KafkaSettings::for_brokers(bootstrap)
}

/// A view of `cluster` with `options`, running until the token is cancelled.
fn start(
    cluster: &MockCluster<'_, DefaultProducerContext>,
    options: ViewOptions,
) -> (LastMessages, CancellationToken) {
    let (view, follower) =
        LastMessages::new(&settings(&cluster.bootstrap_servers()), options).expect("view");
    let shutdown = CancellationToken::new();
    tokio::spawn(follower.run(shutdown.clone()));
    (view, shutdown)
}

struct Records(FutureProducer);

impl Records {
    fn to(cluster: &MockCluster<'_, DefaultProducerContext>) -> Self {
        Self(
            ClientConfig::new()
                .set("bootstrap.servers", cluster.bootstrap_servers())
                .create()
                .expect("producer"),
        )
    }

    /// Produces `payload` to `topic`/`partition` with timestamp `at` (ms).
    async fn send(&self, topic: &str, partition: i32, at: i64, payload: &Value) {
        let value = payload.to_string();
        self.0
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(partition)
                    .timestamp(at)
                    .payload(&value),
                Duration::from_secs(5),
            )
            .await
            .expect("produced");
    }
}

/// The payload `view` shows for `topic`, once it is `wanted` (up to 5 s).
async fn shows(view: &LastMessages, topic: &str, wanted: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let shown = view
            .newest(topic)
            .await
            .expect("readable")
            .map(|newest| newest.value().expect("JSON"));
        if let Some(shown) = &shown
            && (&shown["payload"] == wanted || Instant::now() > deadline)
        {
            return shown.clone();
        }
        assert!(Instant::now() < deadline, "{topic}: still {shown:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_record_by_timestamp_is_shown_and_a_newer_one_replaces_it() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(EVENTS, 2, 1).expect("topic");
    let records = Records::to(&cluster);
    records.send(EVENTS, 0, 1_000, &json!("old")).await;
    records.send(EVENTS, 1, 3_000, &json!("newest")).await;
    records
        .send(EVENTS, 0, 2_000, &json!("last of partition 0"))
        .await;
    let (view, _shutdown) = start(&cluster, ViewOptions::new(vec![EVENTS.into()]));

    let shown = view
        .newest(EVENTS)
        .await
        .expect("loaded")
        .expect("a record");
    let shown = shown.value().expect("JSON");
    assert_eq!(shown["payload"], "newest", "{shown}");
    assert_eq!(
        (shown["partition"].as_i64(), shown["offset"].as_i64()),
        (Some(1), Some(0))
    );
    assert_eq!(shown["timestamp_ms"], 3_000);

    records.send(EVENTS, 0, 4_000, &json!({"n": 4})).await;
    let shown = shows(&view, EVENTS, &json!({"n": 4})).await;
    assert_eq!(shown["offset"], 2, "{shown}");
    // An older timestamp does not replace what is shown.
    records.send(EVENTS, 1, 3_500, &json!("late")).await;
    records.send(EVENTS, 1, 5_000, &json!("after")).await;
    assert_eq!(shows(&view, EVENTS, &json!("after")).await["offset"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_first_asked_for_is_followed_and_a_missing_one_reads_as_empty() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(EVENTS, 1, 1).expect("topic");
    cluster.create_topic("other", 3, 1).expect("topic");
    cluster.create_topic("empty", 2, 1).expect("topic");
    let records = Records::to(&cluster);
    records.send("other", 2, 1_000, &json!("first")).await;
    let (view, _shutdown) = start(&cluster, ViewOptions::new(vec![EVENTS.into()]));

    let shown = view
        .newest("other")
        .await
        .expect("loaded")
        .expect("a record");
    assert_eq!(shown.value().expect("JSON")["payload"], "first");
    assert_eq!(view.newest("empty").await.expect("loaded"), None);
    assert_eq!(view.newest("missing").await.expect("looked up"), None);
    assert_eq!(
        view.topics(),
        ["empty", EVENTS, "other"],
        "missing is not followed"
    );

    records.send("other", 0, 2_000, &json!("second")).await;
    shows(&view, "other", &json!("second")).await;
    records.send("empty", 1, 2_000, &json!("no longer")).await;
    shows(&view, "empty", &json!("no longer")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_topic_limit_another_topic_is_refused() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for topic in [EVENTS, "a", "b"] {
        cluster.create_topic(topic, 1, 1).expect("topic");
    }
    let options = ViewOptions {
        max_topics: 2,
        ..ViewOptions::new(vec![EVENTS.into()])
    };
    let (view, _shutdown) = start(&cluster, options);
    assert_eq!(view.newest("a").await, Ok(None));
    assert_eq!(
        view.newest("b").await,
        Err(ReadError::TooManyTopics {
            topic: "b".into(),
            limit: 2
        })
    );
    assert_eq!(view.newest("a").await, Ok(None), "a is still followed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_on_demand_only_the_followed_topics_are_readable() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(EVENTS, 1, 1).expect("topic");
    cluster.create_topic("other", 1, 1).expect("topic");
    let options = ViewOptions {
        on_demand: false,
        ..ViewOptions::new(vec![EVENTS.into()])
    };
    let (view, _shutdown) = start(&cluster, options);
    assert_eq!(view.newest(EVENTS).await, Ok(None));
    assert_eq!(
        view.newest("other").await,
        Err(ReadError::NotReadable {
            topic: "other".into()
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_client_left_is_not_looked_up() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("other", 1, 1).expect("topic");
    let (view, follower) = LastMessages::new(
        &settings(&cluster.bootstrap_servers()),
        ViewOptions::new(vec![]),
    )
    .expect("view");
    // The follower is not running yet: the request waits, and its client leaves.
    let left = tokio::time::timeout(Duration::from_millis(50), view.newest("other")).await;
    assert!(left.is_err(), "the request waited");
    let shutdown = CancellationToken::new();
    tokio::spawn(follower.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(view.topics().is_empty(), "followed: {:?}", view.topics());
    assert_eq!(
        view.newest("other").await,
        Ok(None),
        "the next request is served"
    );
    assert_eq!(view.topics(), ["other"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_reads_waiting_for_a_topic() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    // The followed topic does not exist: it stays loading.
    let (view, shutdown) = start(&cluster, ViewOptions::new(vec!["later".into()]));
    let waiting = tokio::spawn({
        let view = view.clone();
        async move { view.newest("later").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    shutdown.cancel();
    let read = waiting.await.expect("the read ran");
    assert_eq!(read, Err(ReadError::Stopped));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(view.newest("other").await, Err(ReadError::Stopped));
}
