//! Reading whole topics outside any consumer group.

use std::time::Duration;

use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
};
use tokio_util::sync::CancellationToken;

use super::ClosingConsumer;

use crate::{Result, kafka::KafkaSettings};

/// A consumer outside any group that reads every partition of `topic` from `offset` (no
/// offsets committed): for views that every replica rebuilds in full, like the results
/// view of task-generator. Waits (retrying every second) until the topic's metadata is
/// known or `shutdown` fires.
///
/// # Errors
/// [`crate::Error::Kafka`] when the consumer cannot be created or assigned.
pub(super) async fn assign_all(
    settings: &KafkaSettings,
    topic: &str,
    offset: Offset,
    client_id: &str,
    shutdown: &CancellationToken,
) -> Result<Option<ClosingConsumer>> {
    let consumer: StreamConsumer = settings
        .client_config(client_id)
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

/// A whole-topic reader: every partition of one topic from a starting offset, outside
/// any consumer group, nothing committed — what every replica of a view runs to rebuild
/// it in full (task-generator's results view reads the events and results topics so).
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
    /// A reader of every partition of `topic` from `offset`, once the topic exists (see
    /// `assign_all`); `Ok(None)` when `shutdown` fired first.
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
        Ok(assign_all(settings, topic, offset, client_id, shutdown)
            .await?
            .map(|consumer| Self {
                consumer,
                topic: topic.to_owned(),
            }))
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
