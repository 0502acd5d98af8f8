//! The consumer loop's books: [`LoopState`].

use std::{
    collections::{HashMap, HashSet, VecDeque},
    future::Future,
};

use rdkafka::{
    Message, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
    message::OwnedMessage,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::handle::handle_one;
use super::{
    ConsumerOptions, FULL_BEFORE_PAUSE, MAX_WAITING_BYTES, MIN_WAITING, Outcome, PartitionKey,
};
use super::{FencingContext, Ownership};
use crate::Result;
use crate::kafka::{Producer, headers::trace_of, offsets::PartitionOffsets};

/// How one message's work ended.
pub(super) enum Ended {
    /// Processed (or dead-lettered): its offset may be stored.
    Done,
    /// Left for redelivery: shutdown's drain timeout passed, or shutdown came during a
    /// retry.
    Abandoned,
    /// Its partition went to another member; the work was dropped.
    Fenced,
}

/// One message's work, reported back to the loop.
pub(super) struct Finished {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    ended: Ended,
}

/// The consumer loop's books.
pub(super) struct LoopState<F> {
    pub(super) options: ConsumerOptions,
    pub(super) producer: Producer,
    pub(super) shutdown: CancellationToken,
    pub(super) process: F,
    pub(super) ownership: Ownership,
    /// Offsets in flight, per partition owned, with the fence they were taken under (a
    /// partition lost and assigned again starts afresh).
    pub(super) offsets: HashMap<PartitionKey, (CancellationToken, PartitionOffsets)>,
    /// Messages taken and not started, with their partition's fence: over the
    /// concurrency limit, or their key in flight.
    pub(super) waiting: VecDeque<(OwnedMessage, CancellationToken)>,
    /// Payload and key bytes of the waiting messages.
    pub(super) waiting_bytes: usize,
    /// Keys of the messages running.
    pub(super) keys_in_flight: HashSet<Vec<u8>>,
    pub(super) running: JoinSet<Finished>,
    /// The partitions paused for backpressure; `None` when not holding back.
    pub(super) paused: Option<HashSet<PartitionKey>>,
    /// Since when the buffer of waiting messages has been full.
    pub(super) full_since: Option<tokio::time::Instant>,
    /// [`Ownership::assignments`] when the pause state was last made to match.
    pub(super) assignments_seen: u64,
}

impl<F, Fut> LoopState<F>
where
    F: Fn(OwnedMessage) -> Fut + Clone + std::marker::Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome>> + std::marker::Send + 'static,
{
    /// Messages taken: running and waiting.
    pub(super) fn in_flight(&self) -> usize {
        self.running.len() + self.waiting.len()
    }

    /// A message arrived: take it unless it is a redelivery of one taken already.
    pub(super) fn received(&mut self, message: OwnedMessage) {
        if let Some(paused) = &mut self.paused {
            // A message while holding back: some partition is not paused after all (a
            // rebalance reset it); pause them all again on the next turn.
            paused.clear();
        }
        let Some(fence) = self.ownership.fence(message.topic(), message.partition()) else {
            // Fetched just before the partition was taken away: its new owner has it.
            return;
        };
        let key = (message.topic().to_owned(), message.partition());
        let (taken_under, offsets) = self
            .offsets
            .entry(key)
            .or_insert_with(|| (fence.clone(), PartitionOffsets::default()));
        if taken_under.is_cancelled() {
            *taken_under = fence.clone();
            *offsets = PartitionOffsets::default();
        }
        let taken = offsets.take(message.offset());
        if taken {
            self.options
                .progress
                .taken(&(message.topic().to_owned(), message.partition()));
        }
        if !taken {
            tracing::debug!(
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                "redelivered message already in flight or done; skipped"
            );
            return;
        }
        self.waiting_bytes += size_of_message(&message);
        self.waiting.push_back((message, fence));
    }

    /// Starts waiting messages while there is room, in arrival order, skipping those
    /// whose key is running.
    pub(super) fn start_waiting(&mut self) {
        let mut index = 0;
        while self.running.len() < self.options.concurrency && index < self.waiting.len() {
            let busy = self.waiting[index]
                .0
                .key()
                .is_some_and(|key| self.keys_in_flight.contains(key));
            if busy {
                index += 1;
                continue;
            }
            if let Some((message, fence)) = self.waiting.remove(index) {
                self.waiting_bytes -= size_of_message(&message);
                self.start(message, fence);
            }
        }
    }

    pub(super) fn start(&mut self, message: OwnedMessage, fence: CancellationToken) {
        let key = message.key().map(<[u8]>::to_vec);
        if let Some(key) = &key {
            self.keys_in_flight.insert(key.clone());
        }
        // The consumer span of the message (OpenTelemetry's messaging conventions when
        // exported): a child of the span that published it, named by its `traceparent`,
        // set before the span is entered, as an exported span's parent must be.
        let span = tracing::info_span!(
            "consume",
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            otel.name = %format_args!("process {}", message.topic()),
            otel.kind = "consumer",
        );
        if crate::telemetry::exporting() {
            crate::telemetry::follow(&span, trace_of(message.headers()));
        }
        crate::telemetry::annotate(&span, || {
            [
                ("messaging.system", "kafka".into()),
                ("messaging.operation.type", "process".into()),
                (
                    "messaging.destination.name",
                    message.topic().to_owned().into(),
                ),
                (
                    "messaging.destination.partition.id",
                    message.partition().to_string().into(),
                ),
                ("messaging.kafka.offset", message.offset().into()),
                (
                    "messaging.consumer.group.name",
                    self.options.group_id.clone().into(),
                ),
            ]
        });
        let options = self.options.clone();
        let producer = self.producer.clone();
        let shutdown = self.shutdown.clone();
        let process = self.process.clone();
        self.running.spawn(
            async move {
                let ended = tokio::select! {
                    biased;
                    () = fence.cancelled() => {
                        tracing::warn!("partition taken away; work dropped for its new owner");
                        Ended::Fenced
                    }
                    handled = handle_one(&message, &options, &producer, &shutdown, &process) => {
                        if handled { Ended::Done } else { Ended::Abandoned }
                    }
                };
                Finished {
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                    key,
                    ended,
                }
            }
            .instrument(span),
        );
    }

    /// One message's work ended: store what may be stored.
    pub(super) fn finished(
        &mut self,
        consumer: &StreamConsumer<FencingContext>,
        joined: std::result::Result<Finished, tokio::task::JoinError>,
    ) {
        let finished = match joined {
            Ok(finished) => finished,
            Err(err) => {
                // A panic in `process`: its key stays busy and its offset in flight, so the
                // message is redelivered after a restart rather than skipped.
                tracing::error!(error = %err, "message processing panicked; left uncommitted");
                return;
            }
        };
        if let Some(key) = &finished.key {
            self.keys_in_flight.remove(key);
        }
        let key = (finished.topic, finished.partition);
        if !matches!(finished.ended, Ended::Done) {
            self.options.progress.ended(&key, false);
            return;
        }
        let Some((_, offsets)) = self.offsets.get_mut(&key) else {
            return;
        };
        let store = offsets.finish(finished.offset);
        self.options.progress.ended(&key, store.is_some());
        if let Some(store) = store
            && let Err(err) = consumer.store_offset(&key.0, key.1, store)
        {
            // The partition was revoked meanwhile; its new owner will redo the rest.
            tracing::warn!(error = %err, offset = store, "could not store offset");
        }
    }

    /// Forgets partitions taken away: their waiting messages and offsets.
    pub(super) fn drop_fenced(&mut self) {
        self.offsets.retain(|_, (fence, _)| !fence.is_cancelled());
        self.options
            .progress
            .retain(|key| self.offsets.contains_key(key));
        let before = self.waiting.len();
        self.waiting.retain(|(_, fence)| !fence.is_cancelled());
        if self.waiting.len() != before {
            self.waiting_bytes = self.waiting.iter().map(|(m, _)| size_of_message(m)).sum();
        }
    }

    /// Whether the buffer of waiting messages is full: `max(concurrency, MIN_WAITING)`
    /// messages or [`MAX_WAITING_BYTES`].
    pub(super) fn buffer_full(&self) -> bool {
        self.waiting.len() >= self.buffer_capacity() || self.waiting_bytes >= MAX_WAITING_BYTES
    }

    /// Whether the buffer of waiting messages is more than half full.
    pub(super) fn buffer_over_half(&self) -> bool {
        self.waiting.len() > self.buffer_capacity() / 2
            || self.waiting_bytes > MAX_WAITING_BYTES / 2
    }

    /// Messages the buffer of waiting messages holds when full.
    pub(super) fn buffer_capacity(&self) -> usize {
        self.options.concurrency.max(MIN_WAITING)
    }

    /// Pauses the assignment when the buffer of waiting messages has been full for
    /// [`FULL_BEFORE_PAUSE`], and resumes it when the buffer is down to half, so workers
    /// that free up find messages while the resumed partitions are fetched again.
    pub(super) fn apply_backpressure(&mut self, consumer: &StreamConsumer<FencingContext>) {
        let in_flight = self.in_flight();
        let now = tokio::time::Instant::now();
        if self.buffer_full() {
            self.full_since.get_or_insert(now);
        } else {
            self.full_since = None;
        }
        let hold = match self.paused {
            Some(_) => self.buffer_over_half(),
            None => self
                .full_since
                .is_some_and(|since| now.duration_since(since) >= FULL_BEFORE_PAUSE),
        };
        // librdkafka keeps an application's pause on a partition across a rebalance
        // (librdkafka#1849): after a new assignment, pause or resume all of it again.
        let assignments = self.ownership.assignments();
        let reassigned = assignments != self.assignments_seen;
        if !hold && !reassigned && self.paused.is_none() {
            // Fetching, and nothing changed: the common turn asks librdkafka nothing.
            return;
        }
        let Ok(assignment) = consumer.assignment() else {
            return;
        };
        self.assignments_seen = assignments;
        if reassigned && let Some(paused) = &mut self.paused {
            paused.clear();
        }
        if !hold {
            if self.paused.take().is_some() || reassigned {
                tracing::debug!(in_flight, "resuming partitions");
                if let Err(err) = consumer.resume(&assignment) {
                    tracing::warn!(error = %err, "cannot resume partitions");
                }
            }
            return;
        }
        // Pause what is not paused yet: a rebalance may have assigned more partitions.
        let paused = self.paused.get_or_insert_with(HashSet::new);
        let mut more = TopicPartitionList::new();
        for e in assignment.elements() {
            if !paused.contains(&(e.topic().to_owned(), e.partition())) {
                more.add_partition(e.topic(), e.partition());
            }
        }
        if more.count() == 0 {
            return;
        }
        tracing::debug!(in_flight, partitions = more.count(), "pausing partitions");
        match consumer.pause(&more) {
            Ok(()) => paused.extend(
                more.elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition())),
            ),
            Err(err) => tracing::warn!(error = %err, "cannot pause partitions"),
        }
    }
}

/// The bytes a waiting message holds (payload and key).
pub(super) fn size_of_message(message: &OwnedMessage) -> usize {
    message.payload().map_or(0, <[u8]>::len) + message.key().map_or(0, <[u8]>::len)
}
