//! [`Ownership`], [`FencingContext`] and [`group_consumer`].

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use rdkafka::{
    ClientConfig, ClientContext, TopicPartitionList,
    consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer},
};
use tokio_util::sync::CancellationToken;

use super::PartitionKey;

use crate::{
    Result,
    kafka::{KafkaSettings, settings::millis},
};

/// The partitions this group member owns, each with a fence that is cancelled when the
/// partition is taken away — by a rebalance that assigns it elsewhere, or by the loss of
/// the whole assignment (session expired). Work for a partition holds its fence and stops
/// when it is cancelled, so a revoked partition's work does not publish over its new
/// owner's. Cheap to clone; clones share the map.
#[derive(Debug, Clone, Default)]
pub struct Ownership {
    fences: Arc<Mutex<HashMap<PartitionKey, CancellationToken>>>,
    /// How many assignments there have been.
    assignments: Arc<std::sync::atomic::AtomicU64>,
    /// Woken at each assignment.
    reassigned: Arc<tokio::sync::Notify>,
}

impl Ownership {
    /// The fence of `partition` of `topic` while it is owned; `None` when it is not.
    pub fn fence(&self, topic: &str, partition: i32) -> Option<CancellationToken> {
        self.lock()
            .get(&(topic.to_owned(), partition))
            .filter(|fence| !fence.is_cancelled())
            .cloned()
    }

    /// How many assignments there have been: a change means the partitions changed
    /// hands, and the pause state set on them before may no longer hold.
    pub fn assignments(&self) -> u64 {
        self.assignments.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A new assignment: partitions not in it are fenced off; new ones get a fence.
    pub fn assigned(&self, partitions: impl IntoIterator<Item = PartitionKey>) {
        self.assignments
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.reassigned.notify_one();
        let assigned: HashSet<PartitionKey> = partitions.into_iter().collect();
        let mut fences = self.lock();
        fences.retain(|key, fence| {
            let kept = assigned.contains(key);
            if !kept {
                fence.cancel();
            }
            kept
        });
        for key in assigned {
            fences.entry(key).or_default();
        }
    }

    /// `partitions` are lost (or revoked for good): fence them off.
    pub fn lost(&self, partitions: impl IntoIterator<Item = PartitionKey>) {
        let mut fences = self.lock();
        for key in partitions {
            if let Some(fence) = fences.remove(&key) {
                fence.cancel();
            }
        }
    }

    /// Resolves after the next assignment (or at once if one came since the last call).
    pub async fn reassigned(&self) {
        self.reassigned.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PartitionKey, CancellationToken>> {
        // A poisoned lock only means a panic elsewhere while holding it; the map is
        // still consistent (every change is a single insert or remove).
        self.fences
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A consumer context that keeps [`Ownership`] up to date from rebalance callbacks.
///
/// With the eager protocol every rebalance revokes all partitions, then assigns; work for
/// a partition that comes back goes on, work for one that went elsewhere is fenced at the
/// assignment. A revocation with the assignment lost (the session expired) fences at
/// once.
pub(crate) struct FencingContext {
    ownership: Ownership,
    /// The group, for the consumer-lag gauge ([`super::lag`]).
    group: String,
}

impl std::fmt::Debug for FencingContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FencingContext").finish_non_exhaustive()
    }
}

impl ClientContext for FencingContext {
    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        super::lag::record(&self.group, &statistics);
    }
}

impl ConsumerContext for FencingContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let keys = |list: &TopicPartitionList| -> Vec<PartitionKey> {
            list.elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect()
        };
        match rebalance {
            Rebalance::Assign(list) => {
                let partitions = keys(list);
                tracing::info!(partitions = ?partitions, "partitions assigned");
                self.ownership.assigned(partitions);
            }
            Rebalance::Revoke(list) => {
                let partitions = keys(list);
                if consumer.assignment_lost() {
                    tracing::warn!(partitions = ?partitions, "assignment lost; fencing off work in flight");
                    self.ownership.lost(partitions);
                } else {
                    tracing::info!(partitions = ?partitions, "partitions revoked");
                }
            }
            Rebalance::Error(err) => tracing::warn!(error = %err, "rebalance failed"),
        }
    }
}

/// The librdkafka settings of a member of `group_id`: offsets stored by hand
/// (`enable.auto.offset.store=false`) and committed in the background each second
/// (librdkafka's default is 5 s: a crash then redoes at most about a second of finished
/// work); a partition with no committed offset read from its start; the session timeout
/// of `settings`, heartbeats at a third of it; statistics every
/// [`STATISTICS_INTERVAL`](super::lag::STATISTICS_INTERVAL), for the lag gauge (the
/// context must take them: rdkafka's default logs each report).
pub(super) fn member_config(
    settings: &KafkaSettings,
    group_id: &str,
    client_id: &str,
) -> ClientConfig {
    let session = settings.session_timeout;
    let mut config = settings.client_config(client_id);
    config
        .set("group.id", group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", millis(session))
        .set(
            "heartbeat.interval.ms",
            millis((session / 3).max(Duration::from_millis(100))),
        )
        .set("enable.partition.eof", "false")
        .set(
            "statistics.interval.ms",
            millis(super::lag::STATISTICS_INTERVAL),
        );
    config
}

/// A consumer-group member with offsets stored by hand and committed in the background.
///
/// # Errors
/// [`crate::Error::Kafka`] when librdkafka rejects the configuration.
pub(crate) fn group_consumer(
    settings: &KafkaSettings,
    group_id: &str,
    client_id: &str,
    ownership: Ownership,
) -> Result<StreamConsumer<FencingContext>> {
    let consumer = member_config(settings, group_id, client_id)
        // How long the broker may hold a fetch that finds nothing new: Kafka answers it
        // as soon as data arrives, Tansu only when this runs out, so on Tansu it is added
        // to every task's latency (at 1 client, p50 22 ms of 32 at 100 ms).
        .set("fetch.wait.max.ms", millis(settings.fetch_wait_max))
        // librdkafka's prefetch queue, filled while the loop's own buffer is full (its
        // default is 64 MiB).
        .set("queued.max.messages.kbytes", "32768")
        .create_with_context(FencingContext {
            ownership,
            group: group_id.to_owned(),
        })?;
    Ok(consumer)
}
