//! Records on topics: reading them whole, producing tasks.

use std::time::{Duration, Instant};

use agent_runtime::kafka::KafkaSettings;
use tokio_util::sync::CancellationToken;

/// Every message on `topic` (all partitions, from the beginning, outside any group) until
/// `count` arrived or `timeout` passed.
///
/// # Panics
/// When the broker does not answer for the topic's metadata.
pub async fn read_topic(
    bootstrap: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    read_topic_until(bootstrap, topic, count, None, timeout).await
}

/// Every message on `topic` once at least `at_least` arrived and then none for 2 s (so
/// that duplicates after them are counted too), or when `timeout` passed.
///
/// # Panics
/// As [`read_topic`].
pub async fn read_topic_settled(
    bootstrap: &str,
    topic: &str,
    at_least: usize,
    timeout: Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    read_topic_until(
        bootstrap,
        topic,
        at_least,
        Some(Duration::from_secs(2)),
        timeout,
    )
    .await
}

async fn read_topic_until(
    bootstrap: &str,
    topic: &str,
    count: usize,
    quiet: Option<Duration>,
    timeout: Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    let settings = KafkaSettings::for_brokers(bootstrap);
    let never = CancellationToken::new();
    let open = agent_runtime::kafka::TopicReader::open(
        &settings,
        topic,
        rdkafka::Offset::Beginning,
        "e2e-reader",
        &never,
    );
    let consumer = tokio::time::timeout(timeout, open)
        .await
        .expect("the topic exists within the timeout")
        .expect("reader")
        .expect("not shut down");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut last = Instant::now();
    while Instant::now() < deadline {
        if out.len() >= count && quiet.is_none_or(|quiet| last.elapsed() >= quiet) {
            break;
        }
        if let Ok(Ok(message)) =
            tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await
        {
            out.push(message.detach());
            last = Instant::now();
        }
    }
    out
}

/// Publishes `count` new tasks (named `task 0`, `task 1`, …) to `topic` as the
/// task-generator does — JSON keyed by task id — and returns their ids in order.
///
/// # Panics
/// When the broker does not acknowledge a task within 10 s.
pub async fn produce_tasks(bootstrap: &str, topic: &str, count: usize) -> Vec<String> {
    use rdkafka::{
        ClientConfig,
        producer::{FutureProducer, FutureRecord},
    };
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let task = agent_core::task::Task::new(format!("task {i}"), format!("do thing {i}"), "")
            .expect("a valid task");
        let id = task.task_id.to_string();
        let value = serde_json::to_vec(&task).expect("JSON");
        producer
            .send(
                FutureRecord::to(topic).key(&id).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("produced");
        ids.push(id);
    }
    ids
}
