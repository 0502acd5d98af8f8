//! [`ConsumerProgress`]: whether each partition of a consumer loop is moving, for
//! `/ready` and `/health`.
//!
//! A partition *stalls* when it has messages in flight and its stored offset has not
//! advanced for a while: its oldest message keeps failing for a reason that is not its
//! own (the broker or the checkpoint store is unreachable), or never ends. The loop
//! retries such a message rather than dead-letter a healthy record, so this is where an
//! operator sees it: `/ready` fails and `/health` says which partition, since when and
//! the last error.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use serde::Serialize;

use super::consumer::PartitionKey;

/// Progress of each partition in flight. Cheap to clone; clones share the books.
#[derive(Debug, Clone, Default)]
pub struct ConsumerProgress {
    partitions: Arc<Mutex<HashMap<PartitionKey, Partition>>>,
}

#[derive(Debug)]
struct Partition {
    /// Messages taken and not finished.
    in_flight: usize,
    /// When the stored offset last advanced, or work arrived on an idle partition.
    since: Instant,
    /// The last failure of a message of this partition since it last advanced.
    last_error: Option<String>,
}

/// A partition that has not advanced for longer than allowed, as `/health` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Stall {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Messages in flight on it.
    pub in_flight: usize,
    /// Seconds since its offset last advanced (or work arrived).
    pub stalled_secs: u64,
    /// The last error of one of its messages, if any (secrets removed, bounded).
    pub last_error: Option<String>,
}

/// The longest last error kept, in bytes.
const MAX_ERROR_BYTES: usize = 512;

impl ConsumerProgress {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PartitionKey, Partition>> {
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A message of `key` was taken.
    pub(crate) fn taken(&self, key: &PartitionKey) {
        let mut partitions = self.lock();
        let partition = partitions.entry(key.clone()).or_insert_with(|| Partition {
            in_flight: 0,
            since: Instant::now(),
            last_error: None,
        });
        if partition.in_flight == 0 {
            partition.since = Instant::now();
            partition.last_error = None;
        }
        partition.in_flight += 1;
    }

    /// A message of `key` ended (done, abandoned or fenced); `advanced` when the
    /// partition's stored offset moved on.
    pub(crate) fn ended(&self, key: &PartitionKey, advanced: bool) {
        let mut partitions = self.lock();
        if let Some(partition) = partitions.get_mut(key) {
            partition.in_flight = partition.in_flight.saturating_sub(1);
            if advanced {
                partition.since = Instant::now();
                partition.last_error = None;
            }
        }
    }

    /// A message of `key` failed with `error` and will be tried again.
    pub(crate) fn failed(&self, key: &PartitionKey, error: &str) {
        if let Some(partition) = self.lock().get_mut(key) {
            let error = crate::redact::redact(error);
            let mut end = error.len().min(MAX_ERROR_BYTES);
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            partition.last_error = Some(error[..end].to_owned());
        }
    }

    /// Forgets every partition not in `owned` (taken away by a rebalance).
    pub(crate) fn retain(&self, owned: impl Fn(&PartitionKey) -> bool) {
        self.lock().retain(|key, _| owned(key));
    }

    /// The partitions with messages in flight whose offset has not advanced for longer
    /// than `after`, oldest first.
    pub fn stalled(&self, after: Duration) -> Vec<Stall> {
        let now = Instant::now();
        let mut stalls: Vec<Stall> = self
            .lock()
            .iter()
            .filter(|(_, p)| p.in_flight > 0 && now.duration_since(p.since) > after)
            .map(|((topic, partition), p)| Stall {
                topic: topic.clone(),
                partition: *partition,
                in_flight: p.in_flight,
                stalled_secs: now.duration_since(p.since).as_secs(),
                last_error: p.last_error.clone(),
            })
            .collect();
        stalls.sort_by_key(|s| std::cmp::Reverse(s.stalled_secs));
        stalls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_stalls_only_with_work_in_flight_and_no_advance() {
        let progress = ConsumerProgress::default();
        let key = ("events".to_owned(), 2);
        let idle = ("events".to_owned(), 0);
        progress.taken(&idle);
        progress.ended(&idle, true);
        progress.taken(&key);
        progress.taken(&key);
        progress.failed(
            &key,
            "kafka error: Message production error: MessageTimedOut",
        );
        std::thread::sleep(Duration::from_millis(30));

        let stalls = progress.stalled(Duration::from_millis(10));
        assert_eq!(stalls.len(), 1, "{stalls:?}");
        assert_eq!((stalls[0].partition, stalls[0].in_flight), (2, 2));
        assert!(
            stalls[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("MessageTimedOut"))
        );
        assert!(progress.stalled(Duration::from_secs(60)).is_empty());

        // One message done and the offset advanced: the clock restarts.
        progress.ended(&key, true);
        assert!(progress.stalled(Duration::from_millis(10)).is_empty());
        // Taken away: forgotten.
        std::thread::sleep(Duration::from_millis(30));
        progress.retain(|k| k != &key);
        assert!(progress.stalled(Duration::from_millis(10)).is_empty());
    }
}
