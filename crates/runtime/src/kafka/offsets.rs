//! Which offset of a partition may be committed while its messages finish out of order.
//!
//! The consumer loop works on several messages of one partition at once, and they finish
//! in any order. Committing offset `n` tells the group that every message below `n` is
//! done, so the offset to commit is the lowest one still in flight (or one past the last
//! message taken, when none is): a crash then redelivers exactly the messages that were
//! not finished, plus at most those that finished above an unfinished one. This is the
//! "commit the low-water mark of completed offsets" scheme of Confluent's parallel
//! consumer and of Kafka Streams' out-of-order processing.

use std::collections::BTreeSet;

/// The offsets of one partition taken and not yet finished.
///
/// Offsets are taken in the order the partition delivers them; they need not be
/// contiguous (compaction and control records leave gaps).
#[derive(Debug, Default, Clone)]
pub(crate) struct PartitionOffsets {
    /// Taken and not finished.
    in_flight: BTreeSet<i64>,
    /// The highest offset taken so far.
    highest_taken: Option<i64>,
    /// The last offset handed out by [`PartitionOffsets::finish`] to be stored.
    last_stored: Option<i64>,
}

impl PartitionOffsets {
    /// Takes the message at `offset`. `false` when it was taken before (a redelivery of a
    /// message still in flight or already finished, as after a rebalance that gave the
    /// partition back): skip it.
    pub(crate) fn take(&mut self, offset: i64) -> bool {
        if self.highest_taken.is_some_and(|highest| offset <= highest) {
            return false;
        }
        self.highest_taken = Some(offset);
        self.in_flight.insert(offset);
        true
    }

    /// Marks `offset` finished. Returns the offset to store (librdkafka's
    /// `rd_kafka_offset_store` semantics: the offset of the last message done, so the
    /// group resumes one past it) when it moved forward; `None` when an earlier message
    /// is still in flight or nothing changed.
    pub(crate) fn finish(&mut self, offset: i64) -> Option<i64> {
        if !self.in_flight.remove(&offset) {
            return None;
        }
        let store = match self.in_flight.first() {
            // Everything taken below the lowest message in flight is done.
            Some(&lowest) => lowest - 1,
            None => self.highest_taken?,
        };
        if self.last_stored.is_some_and(|last| store <= last) {
            return None;
        }
        self.last_stored = Some(store);
        Some(store)
    }

    /// Messages taken and not finished.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_finishes_store_each_offset() {
        let mut p = PartitionOffsets::default();
        assert!(p.take(10) && p.take(11));
        assert_eq!(p.finish(10), Some(10));
        assert_eq!(p.finish(11), Some(11));
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn an_unfinished_message_holds_back_the_ones_above_it() {
        let mut p = PartitionOffsets::default();
        for offset in [5, 6, 7, 9] {
            assert!(p.take(offset));
        }
        assert_eq!(p.finish(7), Some(4), "5 is in flight: resume at 5");
        assert_eq!(p.finish(9), None, "still held back by 5");
        assert_eq!(p.finish(6), None);
        assert_eq!(p.finish(5), Some(9), "all done, gap at 8 included");
        assert_eq!(p.finish(5), None, "finishing twice changes nothing");
    }

    #[test]
    fn a_redelivered_message_is_taken_once() {
        let mut p = PartitionOffsets::default();
        assert!(p.take(1) && p.take(2));
        assert_eq!(p.finish(2), Some(0));
        // A rebalance gave the partition back and it is fetched again from offset 1.
        assert!(!p.take(1), "still in flight");
        assert!(!p.take(2), "finished already");
        assert!(p.take(3));
        assert_eq!(p.finish(1), Some(2));
        assert_eq!(p.finish(3), Some(3));
    }

    #[test]
    fn finishing_what_was_never_taken_stores_nothing() {
        let mut p = PartitionOffsets::default();
        assert_eq!(p.finish(3), None);
    }
}
