//! The at-least-once consumer loop, and the dead-letter topic.
//!
//! [`run_at_least_once`] reads a consumer group's messages and hands each to a `process`
//! function, up to [`ConsumerOptions::concurrency`] at a time. It stores a partition's
//! offset only up to the lowest message still in flight ([`PartitionOffsets`](crate::kafka::offsets::PartitionOffsets)), and a
//! message counts as done only once `process` returned — that is, once its output was
//! acknowledged by the broker — so a crash at any point redelivers unfinished messages
//! rather than losing them (`enable.auto.offset.store=false`, as in rust-rdkafka's
//! `at_least_once` example). A message `process` cannot use goes to the dead-letter topic
//! with its error in headers, and the loop moves on: nothing is dropped silently.
//!
//! - **Nothing is retried for ever**: a failure of the message's own
//!   ([`Error::is_permanent`](crate::Error::is_permanent): a record the broker can never
//!   take, a value that cannot be encoded) is tried [`ConsumerOptions::max_attempts`]
//!   times, then the message goes to the dead-letter topic; if even its dead-letter
//!   record is refused, a minimal one (coordinates and reason, no value); if that is
//!   refused too, the loop logs the coordinates at ERROR and moves on. A failure of the
//!   world's (the broker or the checkpoint store is unreachable) is retried in place
//!   with exponential backoff (200 ms to 30 s), since dead-lettering healthy tasks
//!   during an outage would lose them; [`ConsumerProgress`] reports the partition as
//!   stalled after a while, and `/ready` fails.
//!
//! - **Backpressure**: messages taken but not started wait in a buffer of
//!   `max(concurrency, MIN_WAITING)` messages and at most [`MAX_WAITING_BYTES`]. While
//!   it is full the loop stops taking messages from librdkafka, whose own prefetch queue
//!   (at most `queued.max.messages.kbytes`, 32 MiB) keeps the next ones ready: a worker
//!   that frees up starts the next message at once, with no fetch round trip. When the
//!   buffer stays full for [`FULL_BEFORE_PAUSE`] (tasks are slow), the loop pauses its
//!   partitions — librdkafka stops fetching, and the loop polls again so the member
//!   stays in the group (`max.poll.interval.ms`) — and resumes them once the buffer is
//!   down to half. A pause drops librdkafka's prefetched messages and a resume waits
//!   for the broker thread's next fetch (up to ~1 s seen on Tansu), which is why a pause
//!   is kept for slow work: pausing whenever the buffer filled left one solver slot
//!   idle ~90% of the time on fast tasks.
//! - **Fencing**: each assigned partition carries a fence ([`Ownership`]); when a
//!   rebalance takes the partition away, the fence is cancelled and the work in flight for
//!   it is dropped before it publishes, leaving the message to its new owner.
//! - **One message per key at a time**: a message whose key is already in flight waits for
//!   it (a task redelivered under the same id does not run twice side by side).
//! - **Shutdown**: fetching stops, work in flight gets [`ConsumerOptions::drain_timeout`],
//!   finished offsets are committed, the member leaves the group; unfinished messages
//!   stay uncommitted and are redelivered.
//!
//! # Layout
//!
//! - `closing`: [`ClosingConsumer`], a consumer closed on its own thread.
//! - `ownership`: [`Ownership`] and [`FencingContext`], the partitions owned and their
//!   fences; [`group_consumer`], the librdkafka settings of a group member.
//! - `state`: the loop's books — messages waiting and running, offsets, backpressure.
//! - `handle`: one message's attempts, retries and backoff.
//! - `dead_letter`: the dead-letter records and their bounds.
//! - `lag`: the `kafka_consumer_lag` gauge, from librdkafka's statistics.
//! - `group_reader`: [`GroupReader`], a consumer-group member for a view whose offsets
//!   live in its own store.
//! - `reader`: [`TopicReader`] (with [`assign_all`] and [`partitions_of`]), reading whole
//!   topics outside any group.

mod closing;
mod dead_letter;
mod group_reader;
mod handle;
mod lag;
mod ownership;
mod reader;
mod state;
#[cfg(test)]
mod tests;

pub use closing::ClosingConsumer;
pub use dead_letter::{
    DEAD_LETTER_PREFIX_BYTES, MAX_DEAD_LETTER_BYTES, MAX_DEAD_LETTER_REASON_BYTES,
};
pub use group_reader::{AssignmentWatch, GroupReader};
pub use ownership::Ownership;
pub(crate) use ownership::{FencingContext, group_consumer};
pub use reader::{LogBounds, PartitionLookup, TopicReader, log_bounds, partitions_of};

use std::{
    collections::{HashMap, HashSet, VecDeque},
    future::Future,
    time::Duration,
};

use rdkafka::{consumer::Consumer, message::OwnedMessage};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use self::state::LoopState;
use crate::kafka::{Producer, progress::ConsumerProgress};
use crate::{Result, kafka::KafkaSettings};

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled; its output (if any) is acknowledged. The offset may be stored.
    Done,
    /// Unusable (unparseable, invalid): send it to the dead-letter topic with this reason,
    /// then store the offset.
    DeadLetter(String),
}

/// What the loop consumes, how much at once, and where poison messages go.
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
    /// How long messages in flight may finish after shutdown is signalled.
    pub drain_timeout: Duration,
    /// How many messages are worked on at once (at least 1).
    pub concurrency: usize,
    /// How many times a message failing for a reason of its own is tried before it is
    /// dead-lettered (at least 1; `CONSUMER_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// Where the loop records each partition's progress, for `/ready`.
    pub progress: ConsumerProgress,
}

/// The fewest messages the buffer of waiting messages holds, whatever the concurrency:
/// after a resume they keep the workers busy while the partitions are fetched again.
pub(crate) const MIN_WAITING: usize = 32;

/// The most payload and key bytes the loop buffers before pausing its partitions (64 MiB):
/// with the broker's 1 MB record limit, a buffer of large tasks stays bounded.
pub(crate) const MAX_WAITING_BYTES: usize = 64 << 20;

/// How long the buffer of waiting messages may stay full before the partitions are
/// paused (well below librdkafka's `max.poll.interval.ms`, 300 s, and short enough that
/// a rebalance waits little for the loop to poll).
pub(crate) const FULL_BEFORE_PAUSE: Duration = Duration::from_secs(2);

/// A topic and partition.
pub(crate) type PartitionKey = (String, i32);

/// Consumes `options.topics` in group `options.group_id` until `shutdown` fires, calling
/// `process` for each message, up to `options.concurrency` at once, and storing offsets
/// as messages finish (see the module docs for ordering, backpressure and fencing).
///
/// - `Ok(Outcome::Done)`: the message is done.
/// - `Ok(Outcome::DeadLetter(reason))`: the original key, value and headers go to the
///   dead-letter topic with `dlq_error`, `dlq_topic`, `dlq_partition`, `dlq_offset`,
///   `dlq_group` and `dlq_time` headers; once acknowledged, the message is done.
/// - `Err(_)`: a transient failure; the same message is retried after a backoff (200 ms
///   doubling to 30 s) until it succeeds, its partition is taken away, or shutdown fires
///   (then it stays uncommitted and is redelivered to whoever owns the partition next).
///
/// At shutdown messages in flight get `options.drain_timeout` to finish, stored offsets
/// are committed, and the consumer leaves the group.
///
/// # Errors
/// [`crate::Error::Kafka`] when the consumer cannot be created or subscribe.
pub async fn run_at_least_once<F, Fut>(
    settings: &KafkaSettings,
    options: ConsumerOptions,
    producer: Producer,
    shutdown: CancellationToken,
    process: F,
) -> Result<()>
where
    F: Fn(OwnedMessage) -> Fut + Clone + std::marker::Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome>> + std::marker::Send + 'static,
{
    let ownership = Ownership::default();
    let consumer = ClosingConsumer::new(group_consumer(
        settings,
        &options.group_id,
        &options.client_id,
        ownership.clone(),
    )?);
    let topics: Vec<&str> = options.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(group = %options.group_id, topics = ?options.topics, concurrency = options.concurrency, "consumer subscribed");

    let mut state = LoopState {
        options: options.clone(),
        producer,
        shutdown: shutdown.clone(),
        process,
        ownership,
        offsets: HashMap::new(),
        waiting: VecDeque::new(),
        waiting_bytes: 0,
        keys_in_flight: HashSet::new(),
        running: JoinSet::new(),
        paused: None,
        full_since: None,
        assignments_seen: 0,
    };
    // The loop turns when a message arrives, work ends or the assignment changes (its
    // pause state must be set again), and at least once a second.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ownership = state.ownership.clone();
    loop {
        state.drop_fenced();
        state.start_waiting();
        state.apply_backpressure(&consumer);
        // A full buffer takes no more (librdkafka holds them) unless the partitions are
        // paused; then polling goes on so the member stays in the group.
        let receive = state.paused.is_some() || !state.buffer_full();
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = ownership.reassigned() => {}
            _ = tick.tick() => {}
            Some(joined) = state.running.join_next() => state.finished(&consumer, joined),
            received = consumer.recv(), if receive => match received {
                Ok(message) => state.received(message.detach()),
                Err(err) => {
                    tracing::warn!(error = %err, "consumer error; retrying in 1 s");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            },
        }
    }

    // Shutdown: stop fetching; work in flight ends by itself within the drain timeout.
    if let Ok(assignment) = consumer.assignment() {
        let _ = consumer.pause(&assignment);
    }
    let in_flight = state.running.len();
    if in_flight > 0 {
        tracing::info!(
            in_flight,
            drain_timeout_s = options.drain_timeout.as_secs(),
            "draining work in flight"
        );
    }
    while let Some(joined) = state.running.join_next().await {
        state.finished(&consumer, joined);
    }
    if !state.waiting.is_empty() {
        tracing::info!(
            waiting = state.waiting.len(),
            "messages not started are left for redelivery"
        );
    }
    // Closing commits the stored offsets (auto-commit is on) and leaves the group; it
    // runs on its own thread so an unreachable broker cannot block this task.
    consumer.close(Duration::from_secs(10)).await;
    tracing::info!(group = %options.group_id, "consumer stopped");
    Ok(())
}
