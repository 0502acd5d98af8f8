//! The at-least-once consumer loop, and the dead-letter topic.
//!
//! [`run_at_least_once`] reads a consumer group's messages and hands each to a `process`
//! function, up to [`ConsumerOptions::concurrency`] at a time. It stores a partition's
//! offset only up to the lowest message still in hand ([`PartitionOffsets`]), and a
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
//!   rebalance takes the partition away, the fence is cancelled and the work in hand for
//!   it is dropped before it publishes, leaving the message to its new owner.
//! - **One message per key at a time**: a message whose key is already in hand waits for
//!   it (a task redelivered under the same id does not run twice side by side).
//! - **Shutdown**: fetching stops, work in hand gets [`ConsumerOptions::drain_timeout`],
//!   finished offsets are committed, the member leaves the group; unfinished messages
//!   stay uncommitted and are redelivered.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use rdkafka::{
    ClientContext, Message, Offset, TopicPartitionList,
    consumer::{
        BaseConsumer, Consumer, ConsumerContext, DefaultConsumerContext, Rebalance, StreamConsumer,
    },
    message::{Header, Headers, OwnedHeaders, OwnedMessage},
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Producer, client_config, offsets::PartitionOffsets, progress::ConsumerProgress};
use crate::{Result, config::Settings};

/// A consumer whose closing (librdkafka's consumer close: leave the group, final commit),
/// which blocks until the broker answers, happens on its own thread: an unreachable broker
/// cannot hang the task, the runtime's shutdown or the process exit that drops it.
pub struct ClosingConsumer<C: ConsumerContext + 'static = DefaultConsumerContext>(
    Option<StreamConsumer<C>>,
);

impl<C: ConsumerContext + 'static> ClosingConsumer<C> {
    /// Wraps `consumer`.
    pub fn new(consumer: StreamConsumer<C>) -> Self {
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

fn close_in_background<C: ConsumerContext + 'static>(
    consumer: StreamConsumer<C>,
    done: Option<tokio::sync::oneshot::Sender<()>>,
) {
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

impl<C: ConsumerContext + 'static> std::ops::Deref for ClosingConsumer<C> {
    type Target = StreamConsumer<C>;

    fn deref(&self) -> &StreamConsumer<C> {
        // Only `close` and `drop` take the consumer out, and both consume `self`.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("consumer already closed"))
    }
}

impl<C: ConsumerContext + 'static> Drop for ClosingConsumer<C> {
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
    /// How long messages in hand may finish after shutdown is signalled.
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
pub const MIN_WAITING: usize = 32;

/// The most payload and key bytes the loop buffers before pausing its partitions (64 MiB):
/// with the broker's 1 MB record limit, a buffer of large tasks stays bounded.
pub const MAX_WAITING_BYTES: usize = 64 << 20;

/// How long the buffer of waiting messages may stay full before the partitions are
/// paused (well below librdkafka's `max.poll.interval.ms`, 300 s, and short enough that
/// a rebalance waits little for the loop to poll).
pub const FULL_BEFORE_PAUSE: Duration = Duration::from_secs(2);

/// A topic and partition.
pub type PartitionKey = (String, i32);

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
pub struct FencingContext {
    ownership: Ownership,
}

impl ClientContext for FencingContext {}

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
                    tracing::warn!(partitions = ?partitions, "assignment lost; fencing off work in hand");
                    self.ownership.lost(partitions);
                } else {
                    tracing::info!(partitions = ?partitions, "partitions revoked");
                }
            }
            Rebalance::Error(err) => tracing::warn!(error = %err, "rebalance failed"),
        }
    }
}

/// A consumer-group member with offsets stored by hand and committed in the background.
///
/// # Errors
/// [`crate::Error::Kafka`] when librdkafka rejects the configuration.
pub fn group_consumer(
    settings: &Settings,
    group_id: &str,
    client_id: &str,
    ownership: Ownership,
) -> Result<StreamConsumer<FencingContext>> {
    let session = settings.kafka_session_timeout_ms;
    let consumer = client_config(settings, client_id)
        .set("group.id", group_id)
        .set("enable.auto.commit", "true")
        // Stored offsets reach the broker within 1 s (librdkafka's default is 5 s): a
        // crash then redoes (and republishes) at most about a second of finished work.
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session.to_string())
        .set("heartbeat.interval.ms", (session / 3).max(100).to_string())
        .set("enable.partition.eof", "false")
        // How long the broker may hold a fetch that finds nothing new: Kafka answers it
        // as soon as data arrives, Tansu only when this runs out, so on Tansu it is added
        // to every task's latency (at 1 client, p50 22 ms of 32 at 100 ms).
        .set(
            "fetch.wait.max.ms",
            settings.kafka_fetch_wait_max_ms.to_string(),
        )
        // librdkafka's prefetch queue, filled while the loop's own buffer is full (its
        // default is 64 MiB).
        .set("queued.max.messages.kbytes", "32768")
        .create_with_context(FencingContext { ownership })?;
    Ok(consumer)
}

/// How one message's work ended.
enum Ended {
    /// Processed (or dead-lettered): its offset may be stored.
    Done,
    /// Left for redelivery: shutdown's drain timeout passed, or shutdown came during a
    /// retry.
    Abandoned,
    /// Its partition went to another member; the work was dropped.
    Fenced,
}

/// One message's work, reported back to the loop.
struct Finished {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    ended: Ended,
}

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
/// At shutdown messages in hand get `options.drain_timeout` to finish, stored offsets
/// are committed, and the consumer leaves the group.
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
        keys_in_hand: HashSet::new(),
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

    // Shutdown: stop fetching; work in hand ends by itself within the drain timeout.
    if let Ok(assignment) = consumer.assignment() {
        let _ = consumer.pause(&assignment);
    }
    let in_hand = state.running.len();
    if in_hand > 0 {
        tracing::info!(
            in_hand,
            drain_timeout_s = options.drain_timeout.as_secs(),
            "draining work in hand"
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

/// The consumer loop's books.
struct LoopState<F> {
    options: ConsumerOptions,
    producer: Producer,
    shutdown: CancellationToken,
    process: F,
    ownership: Ownership,
    /// Offsets in hand, per partition owned, with the fence they were taken under (a
    /// partition lost and assigned again starts afresh).
    offsets: HashMap<PartitionKey, (CancellationToken, PartitionOffsets)>,
    /// Messages taken and not started, with their partition's fence: over the
    /// concurrency limit, or their key in hand.
    waiting: VecDeque<(OwnedMessage, CancellationToken)>,
    /// Payload and key bytes of the waiting messages.
    waiting_bytes: usize,
    /// Keys of the messages running.
    keys_in_hand: HashSet<Vec<u8>>,
    running: JoinSet<Finished>,
    /// The partitions paused for backpressure; `None` when not holding back.
    paused: Option<HashSet<PartitionKey>>,
    /// Since when the buffer of waiting messages has been full.
    full_since: Option<tokio::time::Instant>,
    /// [`Ownership::assignments`] when the pause state was last made to match.
    assignments_seen: u64,
}

impl<F, Fut> LoopState<F>
where
    F: Fn(OwnedMessage) -> Fut + Clone + std::marker::Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome>> + std::marker::Send + 'static,
{
    /// Messages taken: running and waiting.
    fn in_hand(&self) -> usize {
        self.running.len() + self.waiting.len()
    }

    /// A message arrived: take it unless it is a redelivery of one taken already.
    fn received(&mut self, message: OwnedMessage) {
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
                "redelivered message already in hand or done; skipped"
            );
            return;
        }
        self.waiting_bytes += size_of_message(&message);
        self.waiting.push_back((message, fence));
    }

    /// Starts waiting messages while there is room, in arrival order, skipping those
    /// whose key is running.
    fn start_waiting(&mut self) {
        let mut index = 0;
        while self.running.len() < self.options.concurrency && index < self.waiting.len() {
            let busy = self.waiting[index]
                .0
                .key()
                .is_some_and(|key| self.keys_in_hand.contains(key));
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

    fn start(&mut self, message: OwnedMessage, fence: CancellationToken) {
        let key = message.key().map(<[u8]>::to_vec);
        if let Some(key) = &key {
            self.keys_in_hand.insert(key.clone());
        }
        let span = tracing::info_span!(
            "consume",
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset()
        );
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
    fn finished(
        &mut self,
        consumer: &StreamConsumer<FencingContext>,
        joined: std::result::Result<Finished, tokio::task::JoinError>,
    ) {
        let finished = match joined {
            Ok(finished) => finished,
            Err(err) => {
                // A panic in `process`: its key stays busy and its offset in hand, so the
                // message is redelivered after a restart rather than skipped.
                tracing::error!(error = %err, "message processing panicked; left uncommitted");
                return;
            }
        };
        if let Some(key) = &finished.key {
            self.keys_in_hand.remove(key);
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
    fn drop_fenced(&mut self) {
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
    fn buffer_full(&self) -> bool {
        self.waiting.len() >= self.buffer_capacity() || self.waiting_bytes >= MAX_WAITING_BYTES
    }

    /// Whether the buffer of waiting messages is more than half full.
    fn buffer_over_half(&self) -> bool {
        self.waiting.len() > self.buffer_capacity() / 2
            || self.waiting_bytes > MAX_WAITING_BYTES / 2
    }

    /// Messages the buffer of waiting messages holds when full.
    fn buffer_capacity(&self) -> usize {
        self.options.concurrency.max(MIN_WAITING)
    }

    /// Pauses the assignment when the buffer of waiting messages has been full for
    /// [`FULL_BEFORE_PAUSE`], and resumes it when the buffer is down to half, so workers
    /// that free up find messages while the resumed partitions are fetched again.
    fn apply_backpressure(&mut self, consumer: &StreamConsumer<FencingContext>) {
        let in_hand = self.in_hand();
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
                tracing::debug!(in_hand, "resuming partitions");
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
        tracing::debug!(in_hand, partitions = more.count(), "pausing partitions");
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
fn size_of_message(message: &OwnedMessage) -> usize {
    message.payload().map_or(0, <[u8]>::len) + message.key().map_or(0, <[u8]>::len)
}

/// Runs `process` on one message until it succeeds, or fails of its own
/// [`ConsumerOptions::max_attempts`] times and is dead-lettered (`true`: the message is
/// done), or shutdown stops it (`false`: leave the message uncommitted).
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
    let key = (message.topic().to_owned(), message.partition());
    let mut backoff = Duration::from_millis(200);
    let mut own_failures = 0;
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
                return dead_letter(producer, message, options, &reason, shutdown).await;
            }
            Err(err) => err,
        };
        let text = failure.to_string();
        options.progress.failed(&key, &text);
        if failure.is_permanent() {
            own_failures += 1;
            if own_failures >= options.max_attempts {
                let reason = format!("gave up after {own_failures} attempts: {text}");
                return dead_letter(producer, message, options, &reason, shutdown).await;
            }
        }
        tracing::warn!(error = %bounded(&text, MAX_DEAD_LETTER_REASON_BYTES), own_failures, retry_in_ms = backoff.as_millis() as u64, "processing failed; will retry");
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Sends `message` to the dead-letter topic with `reason` (`true` once it is there, or
/// once the loop gave up on it; `false` when shutdown came first). The full record is
/// tried first; if the broker refuses it for good, a minimal record (see
/// [`send_to_dead_letter`]); if that is refused for good too, the message's coordinates
/// and the reason are logged at ERROR and the loop moves on (the original stays on its
/// topic until retention removes it). While the broker is unreachable it is tried again
/// with backoff.
async fn dead_letter(
    producer: &Producer,
    message: &OwnedMessage,
    options: &ConsumerOptions,
    reason: &str,
    shutdown: &CancellationToken,
) -> bool {
    let key = (message.topic().to_owned(), message.partition());
    let reason = crate::redact::redact(reason);
    let shown = bounded(&reason, MAX_DEAD_LETTER_REASON_BYTES);
    let mut backoff = Duration::from_millis(200);
    loop {
        let failure = match send_to_dead_letter(producer, message, options, &reason, false).await {
            Ok(()) => {
                tracing::warn!(reason = %shown, topic = %options.dead_letter_topic, "message sent to the dead-letter topic");
                return true;
            }
            Err(err) if err.is_permanent() => {
                tracing::warn!(error = %err, "the dead-letter record was refused; sending a minimal one");
                match send_to_dead_letter(producer, message, options, &reason, true).await {
                    Ok(()) => {
                        tracing::warn!(reason = %shown, topic = %options.dead_letter_topic, "minimal record sent to the dead-letter topic");
                        return true;
                    }
                    Err(err) if err.is_permanent() => {
                        tracing::error!(reason = %shown, error = %err, "cannot dead-letter the message; skipped (it stays at its offset until retention)");
                        return true;
                    }
                    Err(err) => err,
                }
            }
            Err(err) => err,
        };
        let text = format!("dead-letter publish failed: {failure}");
        options.progress.failed(&key, &text);
        tracing::warn!(error = %text, retry_in_ms = backoff.as_millis() as u64, "will retry");
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// The longest `dlq_error` header, in bytes: a reason, never a payload (a parse error
/// may quote the whole value it choked on).
pub const MAX_DEAD_LETTER_REASON_BYTES: usize = 1024;

/// The largest dead-letter record the loop produces, key, value and headers (the
/// broker's default limit, `message.max.bytes`, is 1 MB).
pub const MAX_DEAD_LETTER_BYTES: usize = super::MAX_OWN_RECORD_BYTES;

/// How much of a value that does not fit is kept in its dead-letter record.
pub const DEAD_LETTER_PREFIX_BYTES: usize = 64 * 1024;

/// `text` cut to at most `max` bytes at a character boundary, with `…` when cut.
fn bounded(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

/// Publishes `message` to the dead-letter topic with its error in headers: unchanged when
/// it fits [`MAX_DEAD_LETTER_BYTES`]; otherwise the first [`DEAD_LETTER_PREFIX_BYTES`]
/// of its value, its original headers dropped, and `dlq_truncated: true` with
/// `dlq_original_bytes` (the original stays at `dlq_topic`/`dlq_partition`/`dlq_offset`
/// until retention removes it). `minimal` sends no value at all (and `dlq_truncated`).
/// The reason is cut to [`MAX_DEAD_LETTER_REASON_BYTES`].
async fn send_to_dead_letter(
    producer: &Producer,
    message: &OwnedMessage,
    options: &ConsumerOptions,
    reason: &str,
    minimal: bool,
) -> Result<()> {
    let payload = message.payload().unwrap_or_default();
    let original_headers: usize = message.headers().map_or(0, |headers| {
        headers
            .iter()
            .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
            .sum()
    });
    let key_bytes = message.key().map_or(0, <[u8]>::len);
    // Our own headers stay well under 2 KiB (the reason is bounded).
    let fits = !minimal
        && key_bytes + payload.len() + original_headers + MAX_DEAD_LETTER_REASON_BYTES + 1024
            <= MAX_DEAD_LETTER_BYTES;
    let mut headers = OwnedHeaders::new();
    if fits && let Some(original) = message.headers() {
        for h in original.iter() {
            headers = headers.insert(h);
        }
    }
    let value = if fits {
        payload
    } else if minimal {
        &[]
    } else {
        &payload[..payload.len().min(DEAD_LETTER_PREFIX_BYTES)]
    };
    let reason = bounded(reason, MAX_DEAD_LETTER_REASON_BYTES);
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let time = Utc::now().to_rfc3339();
    let original_bytes = payload.len().to_string();
    if !fits {
        for (key, value) in [
            ("dlq_truncated", "true"),
            ("dlq_original_bytes", original_bytes.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
    }
    for (key, value) in [
        ("dlq_error", reason.as_ref()),
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
        .send_bytes(&options.dead_letter_topic, key.as_deref(), value, headers)
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

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        sync::{
            Arc, Mutex,
            atomic::{AtomicUsize, Ordering},
        },
        time::Duration,
    };

    use rdkafka::{
        ClientConfig, Message, Offset, TopicPartitionList,
        consumer::{BaseConsumer, Consumer},
        message::OwnedMessage,
        mocking::MockCluster,
        producer::{FutureProducer, FutureRecord},
    };
    use tokio_util::sync::CancellationToken;

    use super::{ConsumerOptions, Outcome, run_at_least_once};
    use crate::{config::Settings, kafka::Producer};

    const TOPIC: &str = "events";

    /// Locks `mutex`, poisoned or not (a panicking test fails anyway).
    fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        mutex
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn settings(bootstrap: &str) -> Settings {
        Settings::from_vars([
            ("KAFKA_BOOTSTRAP_SERVERS", bootstrap),
            ("KAFKA_SESSION_TIMEOUT_MS", "3000"),
        ])
        .expect("settings")
    }

    fn options(concurrency: usize) -> ConsumerOptions {
        ConsumerOptions {
            group_id: "group".into(),
            topics: vec![TOPIC.into()],
            dead_letter_topic: "dead".into(),
            client_id: "test".into(),
            drain_timeout: Duration::from_secs(5),
            concurrency,
            max_attempts: 3,
            progress: super::ConsumerProgress::default(),
        }
    }

    async fn produce(bootstrap: &str, keys: &[String]) {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("producer");
        for (i, key) in keys.iter().enumerate() {
            producer
                .send(
                    FutureRecord::to(TOPIC).key(key).payload(&format!("m{i}")),
                    Duration::from_secs(5),
                )
                .await
                .expect("produced");
        }
    }

    /// What the process function saw.
    #[derive(Default)]
    struct Seen {
        running: AtomicUsize,
        most_running: AtomicUsize,
        /// (partition, offset) → times processed.
        times: Mutex<HashMap<(i32, i64), usize>>,
        /// Key → messages of that key running now, and the most seen at once.
        per_key: Mutex<HashMap<Vec<u8>, (usize, usize)>>,
        /// Payloads in the order processing started.
        started: Mutex<Vec<String>>,
    }

    /// Runs the loop until `total` messages were processed; each takes 5 to 30 ms.
    async fn consume(bootstrap: &str, concurrency: usize, total: usize) -> Arc<Seen> {
        let settings = settings(bootstrap);
        let producer = Producer::new(&settings, "test").expect("producer");
        let seen = Arc::new(Seen::default());
        let shutdown = CancellationToken::new();
        let done = Arc::new(AtomicUsize::new(0));
        let process = {
            let (seen, shutdown) = (seen.clone(), shutdown.clone());
            move |message: OwnedMessage| {
                let (seen, shutdown, done) = (seen.clone(), shutdown.clone(), done.clone());
                async move {
                    let key = message.key().unwrap_or_default().to_vec();
                    let payload = String::from_utf8_lossy(message.payload().unwrap_or_default());
                    lock(&seen.started).push(payload.into_owned());
                    let now = seen.running.fetch_add(1, Ordering::SeqCst) + 1;
                    seen.most_running.fetch_max(now, Ordering::SeqCst);
                    {
                        let mut per_key = lock(&seen.per_key);
                        let entry = per_key.entry(key.clone()).or_default();
                        entry.0 += 1;
                        entry.1 = entry.1.max(entry.0);
                    }
                    let millis = 5 + (message.offset() as u64 * 7) % 25;
                    tokio::time::sleep(Duration::from_millis(millis)).await;
                    lock(&seen.per_key).entry(key).or_default().0 -= 1;
                    seen.running.fetch_sub(1, Ordering::SeqCst);
                    *lock(&seen.times)
                        .entry((message.partition(), message.offset()))
                        .or_default() += 1;
                    if done.fetch_add(1, Ordering::SeqCst) + 1 == total {
                        shutdown.cancel();
                    }
                    Ok(Outcome::Done)
                }
            }
        };
        let run = run_at_least_once(&settings, options(concurrency), producer, shutdown, process);
        tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("all messages processed within 60 s")
            .expect("the loop ran");
        seen
    }

    /// The group's committed offset of each partition.
    fn committed(bootstrap: &str, partitions: i32) -> Vec<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "group")
            .create()
            .expect("consumer");
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition(TOPIC, p);
        }
        let committed = consumer
            .committed_offsets(list, Duration::from_secs(5))
            .expect("committed offsets");
        (0..partitions)
            .map(
                |p| match committed.find_partition(TOPIC, p).map(|e| e.offset()) {
                    Some(Offset::Offset(offset)) => offset,
                    other => panic!("partition {p}: no committed offset ({other:?})"),
                },
            )
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_runs_side_by_side_up_to_the_limit_and_every_offset_is_committed() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic(TOPIC, 2, 1).expect("topic");
        let bootstrap = cluster.bootstrap_servers();
        let keys: Vec<String> = (0..40).map(|i| format!("task-{i}")).collect();
        produce(&bootstrap, &keys).await;

        let seen = consume(&bootstrap, 3, keys.len()).await;
        let most = seen.most_running.load(Ordering::SeqCst);
        assert!(most <= 3, "{most} messages ran at once with a limit of 3");
        assert!(most >= 2, "messages ran one at a time ({most})");
        let times = lock(&seen.times);
        assert_eq!(times.len(), 40, "every message processed");
        assert!(times.values().all(|&n| n == 1), "none twice: {times:?}");
        let per_partition: Vec<i64> = (0..2)
            .map(|p| {
                times
                    .keys()
                    .filter(|(partition, _)| *partition == p)
                    .count() as i64
            })
            .collect();
        assert_eq!(
            committed(&bootstrap, 2),
            per_partition,
            "committed past the last message"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_of_one_key_run_one_at_a_time_in_order() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic(TOPIC, 1, 1).expect("topic");
        let bootstrap = cluster.bootstrap_servers();
        // Five messages of task `a` among others.
        let keys: Vec<String> = (0..12)
            .map(|i| {
                if i % 2 == 0 && i < 10 {
                    "a".into()
                } else {
                    format!("b{i}")
                }
            })
            .collect();
        produce(&bootstrap, &keys).await;

        let seen = consume(&bootstrap, 4, keys.len()).await;
        let per_key = lock(&seen.per_key);
        assert_eq!(
            per_key[b"a".as_slice()].1,
            1,
            "two messages of key a ran at once"
        );
        assert!(
            seen.most_running.load(Ordering::SeqCst) >= 2,
            "others ran beside them"
        );
        let started = lock(&seen.started);
        let order: Vec<&str> = started
            .iter()
            .map(String::as_str)
            .filter(|p| ["m0", "m2", "m4", "m6", "m8"].contains(p))
            .collect();
        assert_eq!(
            order,
            ["m0", "m2", "m4", "m6", "m8"],
            "key a in offset order"
        );
        assert_eq!(committed(&bootstrap, 1), [12]);
    }

    /// Sets its flag when dropped: the work it lives in was cancelled.
    struct DropFlag(Arc<Mutex<Vec<i32>>>, i32);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            lock(&self.0).push(self.1);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_of_a_partition_that_moves_to_another_member_is_dropped() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic(TOPIC, 2, 1).expect("topic");
        let bootstrap = cluster.bootstrap_servers();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("producer");
        for partition in 0..2 {
            producer
                .send(
                    FutureRecord::to(TOPIC)
                        .partition(partition)
                        .key(&format!("task-{partition}"))
                        .payload("task"),
                    Duration::from_secs(5),
                )
                .await
                .expect("produced");
        }
        let settings = settings(&bootstrap);

        // Member A takes both partitions and works on both messages without end.
        let started_a = Arc::new(Mutex::new(Vec::new()));
        let dropped_a = Arc::new(Mutex::new(Vec::new()));
        let stop_a = CancellationToken::new();
        let process_a = {
            let (started, dropped) = (started_a.clone(), dropped_a.clone());
            move |message: OwnedMessage| {
                let (started, dropped) = (started.clone(), dropped.clone());
                async move {
                    let _flag = DropFlag(dropped, message.partition());
                    lock(&started).push(message.partition());
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    Ok(Outcome::Done)
                }
            }
        };
        let mut options_a = options(4);
        options_a.drain_timeout = Duration::from_millis(200);
        let a = tokio::spawn({
            let settings = settings.clone();
            let producer = Producer::new(&settings, "a").expect("producer");
            let stop = stop_a.clone();
            async move { run_at_least_once(&settings, options_a, producer, stop, process_a).await }
        });
        wait_until(|| lock(&started_a).len() == 2).await;

        // Member B joins: the group gives it one partition, whose work A must drop.
        let done_b = Arc::new(Mutex::new(Vec::new()));
        let stop_b = CancellationToken::new();
        let process_b = {
            let done = done_b.clone();
            move |message: OwnedMessage| {
                let done = done.clone();
                async move {
                    lock(&done).push(message.partition());
                    Ok(Outcome::Done)
                }
            }
        };
        let b = tokio::spawn({
            let producer = Producer::new(&settings, "b").expect("producer");
            let stop = stop_b.clone();
            async move { run_at_least_once(&settings, options(4), producer, stop, process_b).await }
        });
        wait_until(|| !lock(&done_b).is_empty()).await;
        let moved = lock(&done_b)[0];
        wait_until(|| lock(&dropped_a).contains(&moved)).await;
        assert_eq!(
            *lock(&dropped_a),
            [moved],
            "only the moved partition's work is dropped"
        );

        stop_a.cancel();
        stop_b.cancel();
        a.await.expect("a joined").expect("a ran");
        b.await.expect("b joined").expect("b ran");
    }

    /// Reads the dead-letter topic `dead` from the start until `count` records are there
    /// or `wait` has passed.
    async fn dead_letters(bootstrap: &str, count: usize, wait: Duration) -> Vec<OwnedMessage> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", uuid::Uuid::new_v4().to_string())
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        let mut partitions = TopicPartitionList::new();
        partitions
            .add_partition_offset("dead", 0, Offset::Beginning)
            .expect("partition");
        consumer.assign(&partitions).expect("assign");
        let mut found = Vec::new();
        let deadline = std::time::Instant::now() + wait;
        while found.len() < count && std::time::Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
                found.push(message.detach());
            }
        }
        found
    }

    fn header<'a>(message: &'a OwnedMessage, key: &str) -> Option<&'a str> {
        use rdkafka::message::Headers;
        message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == key)
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_failing_of_its_own_is_dead_lettered_after_the_attempts_and_the_world_s_failures_stall_it()
     {
        use rdkafka::{error::KafkaError, types::RDKafkaErrorCode};
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic(TOPIC, 2, 1).expect("topic");
        cluster.create_topic("dead", 1, 1).expect("topic");
        let bootstrap = cluster.bootstrap_servers();
        // Key "own" always fails as a too-large result would; key "world" as an
        // unreachable broker would; key "fine" succeeds.
        produce(&bootstrap, &["own".into(), "world".into(), "fine".into()]).await;
        let settings = settings(&bootstrap);
        let producer = Producer::new(&settings, "test").expect("producer");
        let attempts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let process = {
            let attempts = attempts.clone();
            move |message: OwnedMessage| {
                let attempts = attempts.clone();
                async move {
                    let key =
                        String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
                    *lock(&attempts).entry(key.clone()).or_default() += 1;
                    let code = match key.as_str() {
                        "own" => RDKafkaErrorCode::MessageSizeTooLarge,
                        "world" => RDKafkaErrorCode::MessageTimedOut,
                        _ => return Ok(Outcome::Done),
                    };
                    Err(crate::Error::Kafka(KafkaError::MessageProduction(code)))
                }
            }
        };
        let options = options(4);
        let progress = options.progress.clone();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { run_at_least_once(&settings, options, producer, shutdown, process).await }
        });

        let dead = dead_letters(&bootstrap, 1, Duration::from_secs(30)).await;
        assert_eq!(
            dead.len(),
            1,
            "the record failing of its own is dead-lettered"
        );
        assert_eq!(dead[0].key(), Some(b"own".as_slice()));
        let reason = header(&dead[0], "dlq_error").unwrap_or_default();
        assert!(
            reason.starts_with("gave up after 3 attempts: ")
                && reason.contains("MessageSizeTooLarge"),
            "{reason}"
        );
        assert_eq!(lock(&attempts).get("own"), Some(&3));

        // The world's failure is retried, not dead-lettered, and shows as a stall.
        wait_until(|| lock(&attempts).get("world").is_some_and(|&n| n >= 4)).await;
        let stalls = progress.stalled(Duration::from_millis(500));
        assert_eq!(stalls.len(), 1, "{stalls:?}");
        assert!(
            stalls[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("MessageTimedOut")),
            "{stalls:?}"
        );
        assert_eq!(
            dead_letters(&bootstrap, 2, Duration::from_secs(3))
                .await
                .len(),
            1,
            "no second dead letter"
        );
        shutdown.cancel();
        run.await.expect("joined").expect("ran");
    }

    #[test]
    fn a_dead_letter_reason_is_cut_at_a_character_boundary() {
        assert_eq!(super::bounded("short", 10), "short");
        let long = "é".repeat(1000);
        let cut = super::bounded(&long, super::MAX_DEAD_LETTER_REASON_BYTES);
        assert!(
            cut.len() <= super::MAX_DEAD_LETTER_REASON_BYTES,
            "{}",
            cut.len()
        );
        assert!(cut.ends_with('…') && cut.starts_with("éé"));
    }

    /// Polls `condition` every 20 ms for up to 30 s.
    async fn wait_until(condition: impl Fn() -> bool) {
        for _ in 0..1500 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("condition not met within 30 s");
    }
}
