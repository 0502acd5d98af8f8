//! [`GroupReader`]: a consumer-group member for a view kept in a shared store, whose
//! offsets live in that store rather than in Kafka.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use rdkafka::{
    ClientContext, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    message::BorrowedMessage,
};
use tokio_util::sync::CancellationToken;

use super::{ClosingConsumer, PartitionKey, ownership::member_config, reader::wait_for_partitions};
use crate::{Result, kafka::KafkaSettings};

/// What this member holds, as the rebalance callbacks left it.
#[derive(Debug, Default)]
struct Assigned {
    /// The partitions assigned now.
    partitions: BTreeSet<PartitionKey>,
    /// Those whose reading has not been placed yet since they were assigned (see
    /// [`GroupReader::take_unplaced`]).
    unplaced: BTreeSet<PartitionKey>,
}

/// Keeps [`Assigned`] up to date. Every partition of an assignment is unplaced: with the
/// eager protocol a rebalance revokes everything, and reading a partition that stays
/// restarts from Kafka's committed offset, not from where this member was.
struct AssignContext {
    assigned: Arc<Mutex<Assigned>>,
    /// The group, for the consumer-lag gauge ([`super::lag`]).
    group: String,
}

impl ClientContext for AssignContext {
    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        super::lag::record(&self.group, &statistics);
    }
}

impl ConsumerContext for AssignContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let keys = |list: &TopicPartitionList| -> Vec<PartitionKey> {
            list.elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect()
        };
        let mut assigned = lock(&self.assigned);
        match rebalance {
            Rebalance::Assign(list) => {
                let partitions = keys(list);
                tracing::info!(partitions = ?partitions, "view partitions assigned");
                assigned.partitions.extend(partitions.iter().cloned());
                assigned.unplaced.extend(partitions);
            }
            Rebalance::Revoke(list) => {
                let partitions = keys(list);
                tracing::info!(partitions = ?partitions, "view partitions revoked");
                for key in &partitions {
                    assigned.partitions.remove(key);
                    assigned.unplaced.remove(key);
                }
            }
            Rebalance::Error(err) => tracing::warn!(error = %err, "view rebalance failed"),
        }
    }
}

fn lock(assigned: &Mutex<Assigned>) -> std::sync::MutexGuard<'_, Assigned> {
    // A poisoned lock only means a panic elsewhere while holding it; the sets are still
    // consistent (every change is whole inserts and removes).
    assigned
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A member of consumer group `group_id` reading `topics`, for a view that several
/// replicas keep in one shared store: the group splits the partitions between the
/// replicas, so each record is applied by one of them.
///
/// Where a partition's reading resumes is the store's business, not Kafka's: the store
/// keeps the offsets in the same transaction as the rows they produced. Kafka's
/// committed offsets are only a hint (a newly assigned partition starts there, and
/// `kafka-consumer-groups --describe` shows the view's lag): the reader stores an
/// offset with [`GroupReader::hint`] once its records are applied, and librdkafka
/// commits it within a second. On the first record of each newly assigned partition
/// ([`GroupReader::take_unplaced`]) the caller compares it with the store's offset and
/// [`seeks`](GroupReader::seek) when they differ (the hint was behind, or the store was
/// replaced); records fetched before a seek are never delivered after it.
///
/// The eager rebalance protocol (librdkafka's default `range` assignor) revokes every
/// partition at each rebalance; a record of a revoked partition already read may still
/// be applied by its old owner while the new one reads it again, so applying must be
/// idempotent.
pub struct GroupReader {
    consumer: ClosingConsumer<AssignContext>,
    assigned: Arc<Mutex<Assigned>>,
    group_id: String,
}

impl std::fmt::Debug for GroupReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupReader")
            .field("group_id", &self.group_id)
            .field("assigned", &lock(&self.assigned).partitions)
            .finish_non_exhaustive()
    }
}

impl GroupReader {
    /// Joins `group_id` for `topics` once every topic exists (waiting and retrying every
    /// second); `Ok(None)` when `shutdown` fired first. Partitions come with the first
    /// [`recv`](Self::recv) after the group's join (about half the session timeout on
    /// some brokers).
    ///
    /// # Errors
    /// [`crate::Error::Kafka`] when the consumer cannot be created or subscribed.
    pub async fn join(
        settings: &KafkaSettings,
        group_id: &str,
        topics: &[String],
        client_id: &str,
        shutdown: &CancellationToken,
    ) -> Result<Option<Self>> {
        let assigned = Arc::new(Mutex::new(Assigned::default()));
        // Kafka's offsets are a hint (see above): stored by hand, committed each second.
        let consumer: StreamConsumer<AssignContext> = member_config(settings, group_id, client_id)
            // A view reads faster than it applies: a small prefetch (librdkafka's
            // default is 64 MiB), fetched again soon after it drains, as the
            // whole-topic reader's.
            .set("queued.max.messages.kbytes", "2048")
            .set("fetch.queue.backoff.ms", "10")
            .create_with_context(AssignContext {
                assigned: Arc::clone(&assigned),
                group: group_id.to_owned(),
            })?;
        let consumer = ClosingConsumer::new(consumer);
        let Some((consumer, _)) = wait_for_partitions(consumer, topics, shutdown).await? else {
            return Ok(None);
        };
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names)?;
        tracing::info!(group = %group_id, ?topics, "view reader subscribed");
        Ok(Some(Self {
            consumer,
            assigned,
            group_id: group_id.to_owned(),
        }))
    }

    /// Leaves the group (committing the last hints), waiting up to `timeout`; past it
    /// the close goes on in the background. The partitions go to the other members
    /// at once rather than after the session timeout.
    pub async fn close(self, timeout: Duration) {
        self.consumer.close(timeout).await;
    }

    /// The consumer group.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// The next record, waiting for it (and serving rebalances meanwhile).
    ///
    /// # Errors
    /// [`crate::Error::Kafka`]: a consumer error (the read may go on after it).
    pub async fn recv(&self) -> Result<BorrowedMessage<'_>> {
        Ok(self.consumer.recv().await?)
    }

    /// The partitions assigned to this member now, sorted.
    pub fn assignment(&self) -> Vec<PartitionKey> {
        lock(&self.assigned).partitions.iter().cloned().collect()
    }

    /// A handle that reads [`assignment`](Self::assignment) from elsewhere (a health
    /// report), for as long as it is kept.
    pub fn assignment_watch(&self) -> AssignmentWatch {
        AssignmentWatch(Arc::clone(&self.assigned))
    }

    /// Whether `partition` of `topic` is assigned and its reading not yet placed since
    /// it was; the first call for it after each assignment answers `true`, the next ones
    /// `false`. The caller then checks the record it holds against the store's offset.
    pub fn take_unplaced(&self, topic: &str, partition: i32) -> bool {
        lock(&self.assigned)
            .unplaced
            .remove(&(topic.to_owned(), partition))
    }

    /// Moves the reading of `partition` of `topic` to `offset` (`Offset::Beginning` for
    /// the log's start); records fetched before are dropped, never delivered.
    ///
    /// # Errors
    /// [`crate::Error::Kafka`] when the partition is not assigned (any more).
    pub fn seek(&self, topic: &str, partition: i32, offset: Offset) -> Result<()> {
        // A zero timeout: the seek is queued and takes effect before the next fetch of the
        // partition is delivered.
        self.consumer
            .seek(topic, partition, offset, Duration::ZERO)?;
        Ok(())
    }

    /// Records that `partition` of `topic` is applied up to `next` (the offset of the
    /// next record to read): committed to Kafka within a second, as a hint. Ignored for a
    /// partition no longer assigned.
    pub fn hint(&self, topic: &str, partition: i32, next: i64) {
        // `rd_kafka_offsets_store` takes the next offset as it is (`store_offset`, the
        // legacy call, stores one past what it is given).
        let mut list = TopicPartitionList::new();
        let stored = list
            .add_partition_offset(topic, partition, Offset::Offset(next))
            .and_then(|()| self.consumer.store_offsets(&list));
        if let Err(err) = stored {
            tracing::debug!(topic, partition, error = %err, "view offset hint not stored");
        }
    }
}

/// The partitions a [`GroupReader`] holds, readable from another task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AssignmentWatch(Arc<Mutex<Assigned>>);

impl AssignmentWatch {
    /// The partitions assigned now, sorted.
    pub fn partitions(&self) -> Vec<PartitionKey> {
        lock(&self.0).partitions.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::{
        ClientConfig, Message,
        mocking::MockCluster,
        producer::{FutureProducer, FutureRecord},
    };

    use super::*;

    const TOPIC: &str = "view";

    async fn produce(bootstrap: &str, partition: i32, count: usize) {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("producer");
        for i in 0..count {
            producer
                .send(
                    FutureRecord::to(TOPIC)
                        .partition(partition)
                        .key("k")
                        .payload(&format!("m{i}")),
                    Duration::from_secs(5),
                )
                .await
                .expect("produced");
        }
    }

    /// The next record's partition and offset, within 30 s.
    async fn next(reader: &GroupReader) -> (i32, i64) {
        let message = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .expect("a record within 30 s")
            .expect("a record");
        (message.partition(), message.offset())
    }

    async fn join(bootstrap: &str, client: &str) -> GroupReader {
        let settings = KafkaSettings {
            session_timeout: Duration::from_secs(3),
            ..KafkaSettings::for_brokers(bootstrap)
        };
        GroupReader::join(
            &settings,
            "view-group",
            &[TOPIC.to_owned()],
            client,
            &CancellationToken::new(),
        )
        .await
        .expect("joins")
        .expect("not shut down")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_seek_on_the_first_record_places_the_reading_and_hints_are_committed() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic(TOPIC, 1, 1).expect("topic");
        let bootstrap = cluster.bootstrap_servers();
        produce(&bootstrap, 0, 10).await;

        let reader = join(&bootstrap, "a").await;
        // Nothing committed yet: the first record is the log's start.
        assert_eq!(next(&reader).await, (0, 0));
        assert_eq!(reader.assignment(), [(TOPIC.to_owned(), 0)]);
        assert!(
            reader.take_unplaced(TOPIC, 0),
            "first record of the assignment"
        );
        assert!(!reader.take_unplaced(TOPIC, 0), "only once an assignment");
        // The store says 7: what was fetched before the seek is never delivered.
        reader.seek(TOPIC, 0, Offset::Offset(7)).expect("seek");
        assert_eq!(next(&reader).await, (0, 7));
        assert_eq!(next(&reader).await, (0, 8));

        reader.hint(TOPIC, 0, 9);
        // A second member takes over once the first leaves: it starts at the hint.
        reader.close(Duration::from_secs(10)).await;
        let taker = join(&bootstrap, "b").await;
        assert_eq!(next(&taker).await, (0, 9));
        assert!(taker.take_unplaced(TOPIC, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_members_split_the_partitions() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic(TOPIC, 2, 1).expect("topic");
        let bootstrap = cluster.bootstrap_servers();
        produce(&bootstrap, 0, 50).await;
        produce(&bootstrap, 1, 50).await;

        let a = join(&bootstrap, "a").await;
        let b = join(&bootstrap, "b").await;
        // Both read until the group has settled with one partition each.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            tokio::select! {
                _ = a.recv() => {}
                _ = b.recv() => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            let (held_a, held_b) = (a.assignment_watch().partitions(), b.assignment());
            if held_a.len() == 1 && held_b.len() == 1 {
                assert_ne!(held_a, held_b, "each partition has one reader");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not split within 30 s: {held_a:?} / {held_b:?}"
            );
        }
    }
}
