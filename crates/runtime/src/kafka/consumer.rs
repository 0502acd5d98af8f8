//! The at-least-once consumer loop, and the dead-letter topic.
//!
//! [`run_at_least_once`] reads a consumer group's messages one at a time and hands each to
//! a `process` function. It stores a message's offset only after `process` returned — that
//! is, after the message's output was acknowledged by the broker — so a crash at any point
//! redelivers the message rather than losing it (`enable.auto.offset.store=false`, as in
//! rust-rdkafka's `at_least_once` example). A message `process` cannot use goes to the
//! dead-letter topic with its error in headers, and the loop moves on: nothing is dropped
//! silently. A transient failure (the broker is down, say) is retried in place with
//! exponential backoff, so order within a partition is kept.

use std::{future::Future, time::Duration};

use chrono::Utc;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
    message::{Header, Headers, OwnedHeaders, OwnedMessage},
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Producer, client_config};
use crate::{Result, config::Settings};

/// A consumer whose closing (librdkafka's consumer close: leave the group, final commit),
/// which blocks until the broker answers, happens on its own thread: an unreachable broker
/// cannot hang the task, the runtime's shutdown or the process exit that drops it.
pub struct ClosingConsumer(Option<StreamConsumer>);

impl ClosingConsumer {
    /// Wraps `consumer`.
    pub fn new(consumer: StreamConsumer) -> Self {
        Self(Some(consumer))
    }

    /// Closes the consumer, waiting up to `timeout` for the close to finish; past it the
    /// close goes on in the background.
    pub async fn close(mut self, timeout: Duration) {
        let Some(consumer) = self.0.take() else {
            return;
        };
        let (done, finished) = tokio::sync::oneshot::channel();
        close_in_background(consumer, Some(done));
        if tokio::time::timeout(timeout, finished).await.is_err() {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "consumer close did not finish in time (broker unreachable?); leaving it to finish in the background"
            );
        }
    }
}

fn close_in_background(consumer: StreamConsumer, done: Option<tokio::sync::oneshot::Sender<()>>) {
    let spawned = std::thread::Builder::new()
        .name("kafka-consumer-close".into())
        .spawn(move || {
            drop(consumer);
            if let Some(done) = done {
                let _ = done.send(());
            }
        });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "cannot spawn a thread to close the consumer");
    }
}

impl std::ops::Deref for ClosingConsumer {
    type Target = StreamConsumer;

    fn deref(&self) -> &StreamConsumer {
        // Only `close` and `drop` take the consumer out, and both consume `self`.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("consumer already closed"))
    }
}

impl Drop for ClosingConsumer {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            close_in_background(consumer, None);
        }
    }
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled; its output (if any) is acknowledged. The offset may be stored.
    Done,
    /// Unusable (unparseable, invalid): send it to the dead-letter topic with this reason,
    /// then store the offset.
    DeadLetter(String),
}

/// What the loop consumes and where poison messages go.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// The consumer group (`group.id`), e.g. `task-solver`.
    pub group_id: String,
    /// The topics to subscribe to.
    pub topics: Vec<String>,
    /// The dead-letter topic.
    pub dead_letter_topic: String,
    /// `client.id`, for the broker's logs.
    pub client_id: String,
    /// How long an in-flight message may finish after shutdown is signalled.
    pub drain_timeout: Duration,
}

/// A consumer-group member with offsets stored by hand and committed in the background.
///
/// # Errors
/// [`crate::Error::Kafka`] when librdkafka rejects the configuration.
pub fn group_consumer(
    settings: &Settings,
    group_id: &str,
    client_id: &str,
) -> Result<StreamConsumer> {
    let session = settings.kafka_session_timeout_ms;
    let consumer = client_config(settings, client_id)
        .set("group.id", group_id)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session.to_string())
        .set("heartbeat.interval.ms", (session / 3).max(100).to_string())
        .set("enable.partition.eof", "false")
        .create()?;
    Ok(consumer)
}

/// Consumes `options.topics` in group `options.group_id` until `shutdown` fires, calling
/// `process` for each message and storing its offset after `process` succeeds.
///
/// - `Ok(Outcome::Done)`: the offset is stored.
/// - `Ok(Outcome::DeadLetter(reason))`: the original key, value and headers go to the
///   dead-letter topic with `dlq_error`, `dlq_topic`, `dlq_partition`, `dlq_offset`,
///   `dlq_group` and `dlq_time` headers; once acknowledged, the offset is stored.
/// - `Err(_)`: a transient failure; the same message is retried after a backoff (200 ms
///   doubling to 30 s) until it succeeds or shutdown fires (then it stays uncommitted and
///   is redelivered to whoever owns the partition next).
///
/// At shutdown the in-flight message gets `options.drain_timeout` to finish, stored
/// offsets are committed, and the consumer leaves the group.
///
/// # Errors
/// [`crate::Error::Kafka`] when the consumer cannot be created or subscribe.
pub async fn run_at_least_once<F, Fut>(
    settings: &Settings,
    options: ConsumerOptions,
    producer: Producer,
    shutdown: CancellationToken,
    process: F,
) -> Result<()>
where
    F: Fn(OwnedMessage) -> Fut,
    Fut: Future<Output = Result<Outcome>>,
{
    let consumer = ClosingConsumer::new(group_consumer(
        settings,
        &options.group_id,
        &options.client_id,
    )?);
    let topics: Vec<&str> = options.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(group = %options.group_id, topics = ?options.topics, "consumer subscribed");

    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            received = consumer.recv() => match received {
                Ok(message) => message.detach(),
                Err(err) => {
                    tracing::warn!(error = %err, "consumer error; retrying in 1 s");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        let span = tracing::info_span!(
            "consume",
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset()
        );
        let handled = handle_one(&message, &options, &producer, &shutdown, &process)
            .instrument(span)
            .await;
        if !handled {
            break;
        }
        if let Err(err) =
            consumer.store_offset(message.topic(), message.partition(), message.offset())
        {
            // The partition was revoked meanwhile; the new owner will redo the message.
            tracing::warn!(error = %err, offset = message.offset(), "could not store offset");
        }
    }

    // Closing commits the stored offsets (auto-commit is on) and leaves the group; it
    // runs on its own thread so an unreachable broker cannot block this task.
    consumer.close(Duration::from_secs(10)).await;
    tracing::info!(group = %options.group_id, "consumer stopped");
    Ok(())
}

/// Runs `process` on one message until it succeeds (`true`), or shutdown stops it
/// (`false`: leave the message uncommitted).
async fn handle_one<F, Fut>(
    message: &OwnedMessage,
    options: &ConsumerOptions,
    producer: &Producer,
    shutdown: &CancellationToken,
    process: &F,
) -> bool
where
    F: Fn(OwnedMessage) -> Fut,
    Fut: Future<Output = Result<Outcome>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        let drain = async {
            shutdown.cancelled().await;
            tokio::time::sleep(options.drain_timeout).await;
        };
        let outcome = tokio::select! {
            outcome = process(message.clone()) => outcome,
            () = drain => {
                tracing::warn!("drain timeout reached; message left for redelivery");
                return false;
            }
        };
        let failure = match outcome {
            Ok(Outcome::Done) => return true,
            Ok(Outcome::DeadLetter(reason)) => {
                match send_to_dead_letter(producer, message, options, &reason).await {
                    Ok(()) => {
                        tracing::warn!(reason = %reason, topic = %options.dead_letter_topic, "message sent to the dead-letter topic");
                        return true;
                    }
                    Err(err) => format!("dead-letter publish failed: {err}"),
                }
            }
            Err(err) => err.to_string(),
        };
        tracing::warn!(error = %failure, retry_in_ms = backoff.as_millis() as u64, "processing failed; will retry");
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Publishes `message` unchanged to the dead-letter topic, with its error in headers.
async fn send_to_dead_letter(
    producer: &Producer,
    message: &OwnedMessage,
    options: &ConsumerOptions,
    reason: &str,
) -> Result<()> {
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for h in original.iter() {
            headers = headers.insert(h);
        }
    }
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let time = Utc::now().to_rfc3339();
    for (key, value) in [
        ("dlq_error", reason),
        ("dlq_topic", message.topic()),
        ("dlq_partition", partition.as_str()),
        ("dlq_offset", offset.as_str()),
        ("dlq_group", options.group_id.as_str()),
        ("dlq_time", time.as_str()),
    ] {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    let key = message.key().map(String::from_utf8_lossy);
    producer
        .send_bytes(
            &options.dead_letter_topic,
            key.as_deref(),
            message.payload().unwrap_or_default(),
            headers,
        )
        .await?;
    Ok(())
}

/// A consumer outside any group that reads every partition of `topic` from `offset` (no
/// offsets committed): for views that every replica rebuilds in full, like the results
/// view of task-generator. Waits (retrying every second) until the topic's metadata is
/// known or `shutdown` fires.
///
/// # Errors
/// [`crate::Error::Kafka`] when the consumer cannot be created or assigned.
pub async fn assign_all(
    settings: &Settings,
    topic: &str,
    offset: Offset,
    client_id: &str,
    shutdown: &CancellationToken,
) -> Result<Option<ClosingConsumer>> {
    let consumer: StreamConsumer = client_config(settings, client_id)
        // librdkafka wants a group id even for assigned partitions; nothing is committed.
        .set("group.id", format!("{client_id}-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let mut consumer = ClosingConsumer::new(consumer);
    loop {
        // Metadata calls block: keep them off the async workers.
        let owned_topic = topic.to_owned();
        let (back, partitions) = tokio::task::spawn_blocking(move || {
            let partitions = partitions_of(&*consumer, &owned_topic);
            (consumer, partitions)
        })
        .await
        .map_err(|err| crate::Error::Io(std::io::Error::other(err)))?;
        consumer = back;
        match partitions {
            Ok(partitions) if !partitions.is_empty() => {
                let mut list = TopicPartitionList::new();
                for partition in partitions {
                    list.add_partition_offset(topic, partition, offset)?;
                }
                consumer.assign(&list)?;
                return Ok(Some(consumer));
            }
            Ok(_) => tracing::info!(topic, "waiting for the topic to exist"),
            Err(err) => tracing::warn!(topic, error = %err, "broker unreachable; retrying in 1 s"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The partition ids of `topic` (empty when it does not exist).
///
/// Blocks up to 5 s on the broker: call it off the async workers.
///
/// # Errors
/// [`crate::Error::Kafka`] when the broker does not answer.
pub fn partitions_of<C: Consumer>(consumer: &C, topic: &str) -> Result<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}
