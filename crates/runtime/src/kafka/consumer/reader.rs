//! Reading whole topics outside any consumer group.

use std::time::Duration;

use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer},
};
use tokio_util::sync::CancellationToken;

use super::ClosingConsumer;

use crate::{Result, kafka::KafkaSettings};

/// A consumer outside any group that reads every partition of `topics`, each from the
/// offset `start` gives it (no offsets committed): for views that every replica keeps
/// itself, like the results view of task-generator. Waits (retrying every second) until
/// every topic's metadata is known or `shutdown` fires.
///
/// # Errors
/// [`crate::Error::Kafka`] when the consumer cannot be created or assigned.
pub(super) async fn assign_all(
    settings: &KafkaSettings,
    topics: &[String],
    start: &(dyn Fn(&str, i32) -> Offset + Sync),
    client_id: &str,
    shutdown: &CancellationToken,
) -> Result<Option<ClosingConsumer>> {
    let consumer: StreamConsumer = settings
        .client_config(client_id)
        // librdkafka wants a group id even for assigned partitions; nothing is committed.
        .set("group.id", format!("{client_id}-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        // An offset gone under retention or compaction: read from the log's start.
        .set("auto.offset.reset", "earliest")
        // A view reads faster than it applies: keep librdkafka's prefetch small (its
        // default is 64 MiB) so that catching up on a long log costs little memory
        // (2 MiB: task-generator's RSS after catching up on 200,000 tasks fell from
        // ~81 MB at 8 MiB to ~56 MB)...
        .set("queued.max.messages.kbytes", "2048")
        // ...and fetch again 10 ms after the queue was full, not librdkafka's 1 s: with
        // a small queue the wait, not the view, set the pace (catching up took twice
        // as long at 1 s; a fetch is skipped, not sent, while the queue is full).
        .set("fetch.queue.backoff.ms", "10")
        .create()?;
    let consumer = ClosingConsumer::new(consumer);
    let Some((consumer, found)) = wait_for_partitions(consumer, topics, shutdown).await? else {
        return Ok(None);
    };
    let mut list = TopicPartitionList::new();
    for (topic, partitions) in &found {
        for partition in partitions {
            list.add_partition_offset(topic, *partition, start(topic, *partition))?;
        }
    }
    consumer.assign(&list)?;
    Ok(Some(consumer))
}

/// Waits (retrying every second, logging why) until every topic of `topics` exists,
/// asking the broker through `consumer`; then gives it back with each topic's
/// partitions. `Ok(None)` when `shutdown` fired first.
///
/// # Errors
/// [`crate::Error::Io`] when the blocking pool fails.
pub(super) async fn wait_for_partitions<C: ConsumerContext + 'static>(
    mut consumer: ClosingConsumer<C>,
    topics: &[String],
    shutdown: &CancellationToken,
) -> Result<Option<(ClosingConsumer<C>, Vec<(String, Vec<i32>)>)>> {
    loop {
        // Metadata calls block: keep them off the async workers.
        let owned = topics.to_vec();
        let (back, found) = tokio::task::spawn_blocking(move || {
            let found: Result<Vec<(String, Vec<i32>)>> = owned
                .into_iter()
                .map(|topic| partitions_of(&*consumer, &topic).map(|p| (topic, p)))
                .collect();
            (consumer, found)
        })
        .await
        .map_err(|err| crate::Error::Io(std::io::Error::other(err)))?;
        consumer = back;
        match found {
            Ok(found) if found.iter().all(|(_, partitions)| !partitions.is_empty()) => {
                return Ok(Some((consumer, found)));
            }
            Ok(found) => {
                let missing: Vec<&str> = found
                    .iter()
                    .filter(|(_, p)| p.is_empty())
                    .map(|(t, _)| t.as_str())
                    .collect();
                tracing::info!(topics = ?missing, "waiting for the topics to exist");
            }
            Err(err) => {
                tracing::warn!(?topics, error = %err, "broker unreachable; retrying in 1 s")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// One partition's log bounds: the offset of its first record still kept (`low`) and the
/// offset the next record will get (`high`, the high watermark).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBounds {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The first offset still in the log.
    pub low: i64,
    /// The high watermark: one past the last record a reader can see.
    pub high: i64,
}

/// The log bounds of every partition of `topics` now: what a reader must reach to have
/// read everything written before it asked. A topic that does not exist has none.
///
/// # Errors
/// [`crate::Error::Kafka`] when the broker does not answer (each call waits up to 5 s).
pub async fn log_bounds(
    settings: &KafkaSettings,
    topics: &[String],
    client_id: &str,
) -> Result<Vec<LogBounds>> {
    let consumer: BaseConsumer = settings
        .client_config(client_id)
        .set("group.id", format!("{client_id}-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()?;
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut bounds = Vec::new();
        for topic in topics {
            for partition in partitions_of(&consumer, &topic)? {
                let (low, high) =
                    consumer.fetch_watermarks(&topic, partition, Duration::from_secs(5))?;
                bounds.push(LogBounds {
                    topic: topic.clone(),
                    partition,
                    low,
                    high,
                });
            }
        }
        Ok(bounds)
    })
    .await
    .map_err(|err| crate::Error::Io(std::io::Error::other(err)))?
}

/// Questions about one topic's partitions, asked of the broker by one long-lived client
/// (no group, nothing committed): how many partitions, where a partition ends, which
/// offset a time falls at. Each call blocks up to 5 s: they run on the blocking pool.
pub struct PartitionLookup {
    consumer: std::sync::Arc<BaseConsumer>,
    topic: String,
}

impl std::fmt::Debug for PartitionLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLookup")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl PartitionLookup {
    /// A lookup client for `topic`. Does not contact the broker yet.
    ///
    /// # Errors
    /// [`crate::Error::Kafka`] when librdkafka rejects the configuration.
    pub fn new(settings: &KafkaSettings, topic: &str, client_id: &str) -> Result<Self> {
        let consumer: BaseConsumer = settings
            .client_config(client_id)
            .set("group.id", format!("{client_id}-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .create()?;
        Ok(Self {
            consumer: std::sync::Arc::new(consumer),
            topic: topic.to_owned(),
        })
    }

    /// The topic asked about.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    async fn blocking<T: Send + 'static>(
        &self,
        ask: impl FnOnce(&BaseConsumer, &str) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (consumer, topic) = (std::sync::Arc::clone(&self.consumer), self.topic.clone());
        tokio::task::spawn_blocking(move || ask(&consumer, &topic))
            .await
            .map_err(|err| crate::Error::Io(std::io::Error::other(err)))?
    }

    /// How many partitions the topic has (0 when it does not exist).
    ///
    /// # Errors
    /// [`crate::Error::Kafka`] when the broker does not answer.
    pub async fn partitions(&self) -> Result<i32> {
        self.blocking(|consumer, topic| {
            Ok(i32::try_from(partitions_of(consumer, topic)?.len()).unwrap_or(i32::MAX))
        })
        .await
    }

    /// The bounds of `partition`: the offset of its first record still kept, and the
    /// high watermark (the offset the next record will get).
    ///
    /// # Errors
    /// [`crate::Error::Kafka`] when the broker does not answer.
    pub async fn bounds(&self, partition: i32) -> Result<(i64, i64)> {
        self.blocking(move |consumer, topic| {
            Ok(consumer.fetch_watermarks(topic, partition, Duration::from_secs(5))?)
        })
        .await
    }

    /// The offset of the first record of `partition` whose timestamp is at or after
    /// `millis` (ms since the Unix epoch); `None` when there is none yet (every record is
    /// older: reading from the end misses nothing since).
    ///
    /// # Errors
    /// [`crate::Error::Kafka`] when the broker does not answer.
    pub async fn offset_at(&self, partition: i32, millis: i64) -> Result<Option<i64>> {
        self.blocking(move |consumer, topic| {
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(topic, partition, Offset::Offset(millis))?;
            let found = consumer.offsets_for_times(list, Duration::from_secs(5))?;
            Ok(found
                .find_partition(topic, partition)
                .and_then(|element| match element.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                }))
        })
        .await
    }
}

/// The partition ids of `topic` (empty when it does not exist).
///
/// Blocks up to 5 s on the broker: call it off the async workers.
///
/// # Errors
/// [`crate::Error::Kafka`] when the broker does not answer.
pub fn partitions_of<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    topic: &str,
) -> Result<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// A whole-topic reader: every partition of one or more topics from starting offsets,
/// outside any consumer group, nothing committed — what every replica of a view runs to
/// keep it (task-generator's results view reads the events and results topics so).
pub struct TopicReader {
    consumer: ClosingConsumer,
    topic: String,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicReader")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl TopicReader {
    /// A reader of every partition of `topic` from `offset`, once the topic exists;
    /// `Ok(None)` when `shutdown` fired first.
    ///
    /// # Errors
    /// [`crate::Error::Kafka`] when the consumer cannot be created or assigned.
    pub async fn open(
        settings: &KafkaSettings,
        topic: &str,
        offset: Offset,
        client_id: &str,
        shutdown: &CancellationToken,
    ) -> Result<Option<Self>> {
        let start = move |_: &str, _: i32| offset;
        Self::open_at(settings, &[topic.to_owned()], &start, client_id, shutdown).await
    }

    /// A reader of every partition of `topics`, each from the offset `start` gives it
    /// (where a view stopped, say), once every topic exists; an offset no longer in the
    /// log reads from its start. `Ok(None)` when `shutdown` fired first.
    ///
    /// # Errors
    /// [`crate::Error::Kafka`] when the consumer cannot be created or assigned.
    pub async fn open_at(
        settings: &KafkaSettings,
        topics: &[String],
        start: &(dyn Fn(&str, i32) -> Offset + Sync),
        client_id: &str,
        shutdown: &CancellationToken,
    ) -> Result<Option<Self>> {
        Ok(assign_all(settings, topics, start, client_id, shutdown)
            .await?
            .map(|consumer| Self {
                consumer,
                topic: topics.join(","),
            }))
    }

    /// A reader of one partition of `topic` from `offset` (an offset no longer in the
    /// log reads from its start; one past the end waits for new records). Does not wait
    /// for the topic: a partition that does not exist yields consumer errors.
    ///
    /// # Errors
    /// [`crate::Error::Kafka`] when the consumer cannot be created or assigned.
    pub fn open_partition(
        settings: &KafkaSettings,
        topic: &str,
        partition: i32,
        offset: Offset,
        client_id: &str,
    ) -> Result<Self> {
        let consumer: StreamConsumer = settings
            .client_config(client_id)
            .set("group.id", format!("{client_id}-{}", uuid::Uuid::new_v4()))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "fetch.wait.max.ms",
                super::super::settings::millis(settings.fetch_wait_max),
            )
            // One partition, read as it is written: a small prefetch.
            .set("queued.max.messages.kbytes", "2048")
            .create()?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, offset)?;
        consumer.assign(&list)?;
        Ok(Self {
            consumer: ClosingConsumer::new(consumer),
            topic: format!("{topic}/{partition}"),
        })
    }

    /// The next record, waiting for it.
    ///
    /// # Errors
    /// [`crate::Error::Kafka`]: a consumer error (the read may go on after it).
    pub async fn recv(&self) -> Result<rdkafka::message::BorrowedMessage<'_>> {
        Ok(self.consumer.recv().await?)
    }

    /// Calls `apply` on every record as it arrives until `shutdown` fires; a consumer
    /// error is logged and the read goes on after 1 s.
    pub async fn follow(
        &self,
        shutdown: &CancellationToken,
        apply: impl Fn(&rdkafka::message::BorrowedMessage<'_>),
    ) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                received = self.consumer.recv() => match received {
                    Ok(message) => apply(&message),
                    Err(err) => {
                        tracing::warn!(topic = %self.topic, error = %err, "topic reader error; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
            }
        }
    }
}
