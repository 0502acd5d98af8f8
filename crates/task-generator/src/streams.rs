//! Live task streams: `GET /task-result/{task_id}/stream`, Server-Sent Events read from
//! the progress topic.
//!
//! Every event of a task is a record of the progress topic keyed by its id, so all of
//! them sit in one partition ([`partition_for_key`]), in order. A stream is that
//! partition read from a start, filtered by key:
//!
//! - **Where it starts.** With `Last-Event-ID` (what `EventSource` sends when it
//!   reconnects), just after that event: every event's `id` is its offset in the
//!   partition, the same on every replica, so a client resumes on any replica with no
//!   gap and no repeat. Without, from the task's first event: the first record written at
//!   or after [`CLOCK_SKEW`] before the task's `created_at` (Kafka's time index,
//!   `offsets_for_times`), so a stream opened after the task ended replays it whole.
//! - **One reader per partition.** A replica reads a partition only while a stream needs
//!   it: one consumer (no group, nothing committed) from the partition's end, fanned out
//!   by key: a record goes only to the streams of its task, each through a bounded
//!   queue ([`LIVE_BUFFER`] records); records of tasks no stream follows are dropped
//!   unread, so a thousand streams cost no more per record than one. The history a stream needs before that (a replay, or the events written
//!   since its task started) is read by a reader of its own, up to where the shared one
//!   began, then the stream follows the shared one. At most [`MAX_REPLAYS`] streams
//!   of a replica read their history at once; the others wait their turn.
//! - **Streams that start before their task.** `POST /generate-task` with
//!   `Accept: text/event-stream` [subscribes](Streams::subscribe) to the partition
//!   before the task is published, so every event of the task reaches it live, with no
//!   replay.
//! - **Slow clients.** A stream that falls [`LIVE_BUFFER`] of its task's records behind
//!   the shared reader, or whose client does not take [`STREAM_BUFFER`] events, is
//!   closed; it can
//!   resume from its last id. Memory stays bounded whatever the clients do.
//! - **The end.** The `result` event is the last; its `id` ends with `.end`, and a
//!   reconnection with such an id answers 204 (which tells `EventSource` to stop). Since
//!   progress is best-effort (an event may be lost) and kept a day, a task the view shows
//!   finished whose `result` event has not come [`RESULT_GRACE`] after the stream
//!   reached the live end gets its `result` from the view (id `view.end`).
//! - At shutdown every stream ends; clients reconnect to another replica.
//!
//! Events (`event:` / `data:`): `status` `{"task_id", "run_id", "status", "reason"?}`,
//! `node` `{"task_id", "node", "superstep", "phase", "duration_ms"?}`, `token`
//! `{"task_id", "node", "chunk_id", "chunk"}`, `custom` `{"task_id", "node", "value"}`,
//! `interrupt` `{"task_id", "id", "node", "value"}` (paused for review),
//! `result` (the [`TaskResult`] with `"is_final": true`). A comment every 15 s keeps
//! the connection open through proxies.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use agent_core::task::{NodePhase, Progress, ProgressEvent, RunStatus, TaskResult};
use agent_runtime::kafka::{KafkaSettings, PartitionLookup, TopicReader, partition_for_key};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use rdkafka::{Message, Offset};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{SERVICE, generation::Accepted, store::ViewStore};

/// Records of its task the shared reader holds for a stream that has not taken them
/// yet (a stream further behind is closed).
pub const LIVE_BUFFER: usize = 1024;

/// Events a stream holds for a client that does not read them (it is closed past that).
pub const STREAM_BUFFER: usize = 256;

/// How far before a task's `created_at` its stream starts looking for its events: the
/// solver's clock may be behind the generator's by up to this much.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// How long after reaching the live end a stream waits for the `result` event of a task
/// the view shows finished, before sending the view's result.
pub const RESULT_GRACE: Duration = Duration::from_secs(5);

/// Streams of one replica that may read their history at once (each with a Kafka
/// consumer of its own); more wait their turn.
pub const MAX_REPLAYS: usize = 32;

/// How often a comment is sent to keep an idle stream open through proxies.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How often the partition count of the progress topic is asked again.
const PARTITIONS_TTL: Duration = Duration::from_secs(60);

/// One record of the progress topic, as the shared reader read it.
#[derive(Debug)]
struct Record {
    offset: i64,
    key: Vec<u8>,
    payload: Vec<u8>,
}

/// The shared reader of one partition and the streams following it.
struct Feed {
    state: Arc<Mutex<FeedState>>,
    /// Stops the reader when the last stream lets go of the feed.
    stop: CancellationToken,
}

struct FeedState {
    /// The offset after the last record sent: where a new stream's share begins.
    next: i64,
    /// The queues of the streams following each task, by key.
    streams: HashMap<Vec<u8>, Vec<mpsc::Sender<Arc<Record>>>>,
}

impl FeedState {
    /// Forgets the streams of `key` that have ended.
    fn prune(&mut self, key: &[u8]) {
        if let Some(senders) = self.streams.get_mut(key) {
            senders.retain(|tx| !tx.is_closed());
            if senders.is_empty() {
                self.streams.remove(key);
            }
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Feed {
    /// The records of `key` from now on, and the offset where they begin.
    fn subscribe(self: &Arc<Self>, key: &[u8]) -> (Live, i64) {
        let (tx, rx) = mpsc::channel(LIVE_BUFFER);
        let mut state = lock(&self.state);
        state.streams.entry(key.to_vec()).or_default().push(tx);
        let live = Live {
            rx,
            key: key.to_vec(),
            feed: Arc::clone(self),
        };
        (live, state.next)
    }
}

/// One stream's queue of its task's records from the shared reader. It holds the feed
/// (the partition stays read while it lives) and leaves it when dropped.
struct Live {
    rx: mpsc::Receiver<Arc<Record>>,
    key: Vec<u8>,
    feed: Arc<Feed>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.rx.close();
        lock(&self.feed.state).prune(&self.key);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere while holding it; the state is one
    // offset and a sender, always consistent.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where a stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After the event with this offset (`Last-Event-ID`).
    After(i64),
    /// At the first record written at or after this time (ms since the Unix epoch).
    Since(i64),
}

/// What a `Last-Event-ID` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastEventId {
    /// Resume after this offset.
    After(i64),
    /// The stream already ended (its `result` was seen).
    Ended,
}

/// What a `Last-Event-ID` looks like, as an ECMA-262 regular expression (the OpenAPI
/// document's `pattern` of it): empty (no id), or an `id` this service gives — an offset
/// of 1 to 18 digits, optionally followed by `.end`, or `view.end`.
/// [`LastEventId::parse`] takes exactly the non-empty texts it matches.
pub const LAST_EVENT_ID_PATTERN: &str = r"^(?:[0-9]{1,18}(?:\.end)?|view\.end)?$";

impl LastEventId {
    /// Parses an `id` this service gave: `<offset>`, `<offset>.end` or `view.end`;
    /// `None` for anything else ([`LAST_EVENT_ID_PATTERN`]).
    pub fn parse(text: &str) -> Option<Self> {
        if text == "view.end" {
            return Some(Self::Ended);
        }
        let (offset, ended) = text
            .strip_suffix(".end")
            .map_or((text, false), |offset| (offset, true));
        if !(1..=18).contains(&offset.len()) || !offset.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if ended {
            return Some(Self::Ended);
        }
        offset.parse().ok().map(Self::After)
    }
}

/// The live streams of one replica: the shared partition readers and what they need.
pub struct Streams {
    kafka: KafkaSettings,
    topic: String,
    lookup: PartitionLookup,
    partitions: tokio::sync::Mutex<Option<(i32, std::time::Instant)>>,
    feeds: Mutex<HashMap<i32, Weak<Feed>>>,
    replays: tokio::sync::Semaphore,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("topic", &self.topic)
            .field("feeds", &lock(&self.feeds).len())
            .finish_non_exhaustive()
    }
}

/// Why a stream cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The broker did not answer (or the progress topic does not exist yet).
    #[error("the progress topic cannot be read: {0}")]
    Broker(String),
}

impl Streams {
    /// The streams of `kafka`'s progress topic, all ended when `shutdown` fires.
    ///
    /// # Errors
    /// [`agent_runtime::Error::Kafka`] when librdkafka rejects the configuration.
    pub fn new(kafka: &KafkaSettings, shutdown: CancellationToken) -> agent_runtime::Result<Self> {
        let topic = kafka.topics.progress.clone();
        Ok(Self {
            lookup: PartitionLookup::new(kafka, &topic, &format!("{SERVICE}-streams"))?,
            kafka: kafka.clone(),
            topic,
            partitions: tokio::sync::Mutex::new(None),
            feeds: Mutex::new(HashMap::new()),
            replays: tokio::sync::Semaphore::new(MAX_REPLAYS),
            shutdown,
        })
    }

    /// How many partitions are being read now (for `/health`).
    pub fn feeds(&self) -> usize {
        lock(&self.feeds)
            .values()
            .filter(|feed| feed.strong_count() > 0)
            .count()
    }

    /// The partition of `task_id`'s events.
    async fn partition_of(&self, task_id: Uuid) -> Result<i32, StreamError> {
        let mut cached = self.partitions.lock().await;
        let count = match *cached {
            Some((count, at)) if at.elapsed() < PARTITIONS_TTL => count,
            _ => {
                let count = self
                    .lookup
                    .partitions()
                    .await
                    .map_err(|err| StreamError::Broker(err.to_string()))?;
                if count == 0 {
                    return Err(StreamError::Broker(format!(
                        "topic {} does not exist yet",
                        self.topic
                    )));
                }
                *cached = Some((count, std::time::Instant::now()));
                count
            }
        };
        Ok(partition_for_key(task_id.to_string().as_bytes(), count))
    }

    /// The shared reader of `partition`, started (from the partition's end) when no
    /// stream holds it.
    async fn feed(&self, partition: i32) -> Result<Arc<Feed>, StreamError> {
        if let Some(feed) = lock(&self.feeds).get(&partition).and_then(Weak::upgrade) {
            return Ok(feed);
        }
        let (_, end) = self
            .lookup
            .bounds(partition)
            .await
            .map_err(|err| StreamError::Broker(err.to_string()))?;
        let mut feeds = lock(&self.feeds);
        // Another stream may have started it meanwhile.
        if let Some(feed) = feeds.get(&partition).and_then(Weak::upgrade) {
            return Ok(feed);
        }
        let reader = TopicReader::open_partition(
            &self.kafka,
            &self.topic,
            partition,
            Offset::Offset(end),
            &format!("{SERVICE}-stream"),
        )
        .map_err(|err| StreamError::Broker(err.to_string()))?;
        let state = Arc::new(Mutex::new(FeedState {
            next: end,
            streams: HashMap::new(),
        }));
        let stop = self.shutdown.child_token();
        tokio::spawn(follow(reader, Arc::clone(&state), stop.clone()));
        let feed = Arc::new(Feed { state, stop });
        feeds.retain(|_, feed| feed.strong_count() > 0);
        feeds.insert(partition, Arc::downgrade(&feed));
        tracing::debug!(partition, end, "progress partition followed");
        Ok(feed)
    }

    /// Follows the partition of `task_id`'s events from now on: every record written
    /// after this call returns reaches the [`Subscription`]. Taken before a task is
    /// published, it will see all of the task's events with no replay.
    ///
    /// # Errors
    /// [`StreamError`] when the progress topic cannot be read.
    pub async fn subscribe(&self, task_id: Uuid) -> Result<Subscription, StreamError> {
        let partition = self.partition_of(task_id).await?;
        let feed = self.feed(partition).await?;
        let (live, from) = feed.subscribe(task_id.to_string().as_bytes());
        Ok(Subscription {
            task_id,
            partition,
            live,
            from,
        })
    }

    /// The SSE stream of `task_id` from `start`; the task's result is taken from `store`
    /// when the progress topic no longer has it.
    ///
    /// # Errors
    /// [`StreamError`] when the progress topic cannot be read.
    pub async fn open(
        self: &Arc<Self>,
        task_id: Uuid,
        start: Start,
        store: Arc<dyn ViewStore>,
    ) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>, StreamError> {
        let subscription = self.subscribe(task_id).await?;
        let begin = match start {
            Start::After(offset) => offset + 1,
            Start::Since(millis) => self
                .lookup
                .offset_at(subscription.partition, millis)
                .await
                .map_err(|err| StreamError::Broker(err.to_string()))?
                .unwrap_or(subscription.from)
                .min(subscription.from),
        };
        let (out, events) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(Arc::clone(self).follow(subscription, begin, out, store));
        Ok(sse(events))
    }

    /// Sends the events of `subscription`'s task from offset `begin` to `out`, until
    /// its `result`, the client leaves or falls behind, or shutdown. Events before the
    /// subscription began are read first by a reader of their own (at most
    /// [`MAX_REPLAYS`] at once on a replica; a stream waits its turn).
    pub async fn follow(
        self: Arc<Self>,
        subscription: Subscription,
        begin: i64,
        out: mpsc::Sender<Event>,
        store: Arc<dyn ViewStore>,
    ) {
        let Subscription {
            task_id,
            partition,
            live,
            from,
        } = subscription;
        let stream = StreamTask {
            task_id,
            key: task_id.to_string().into_bytes(),
            begin,
            from,
            out,
            store,
            shutdown: self.shutdown.clone(),
        };
        // `live` holds the feed for as long as the stream runs: the partition stays read.
        if begin < from && !self.replay(&stream, partition).await {
            return;
        }
        stream.run(live).await;
    }

    /// Sends the records of `partition` from `stream.begin` up to where its
    /// subscription began; `false` when the stream is over.
    async fn replay(&self, stream: &StreamTask, partition: i32) -> bool {
        let _permit = tokio::select! {
            () = stream.shutdown.cancelled() => return false,
            () = stream.out.closed() => return false,
            permit = self.replays.acquire() => match permit {
                Ok(permit) => permit,
                Err(_) => return false,
            },
        };
        let reader = match self
            .replay_reader(partition, stream.begin, stream.from)
            .await
        {
            Ok(Some(reader)) => reader,
            // Nothing is left of what came before (deleted by retention).
            Ok(None) => return true,
            Err(err) => {
                tracing::warn!(task_id = %stream.task_id, error = %err, "stream closed: its history cannot be read (the client may resume)");
                return false;
            }
        };
        loop {
            let message = tokio::select! {
                () = stream.shutdown.cancelled() => return false,
                () = stream.out.closed() => return false,
                message = reader.recv() => message,
            };
            let Ok(message) = message else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            if message.offset() >= stream.from {
                return true;
            }
            let sent = stream
                .send(
                    message.offset(),
                    message.key().unwrap_or_default(),
                    message.payload().unwrap_or_default(),
                )
                .await;
            if !matches!(sent, Sent::Going) {
                return false;
            }
            if message.offset() + 1 >= stream.from {
                return true;
            }
        }
    }

    /// A reader of `partition` from `begin` (or the log's start, when retention took
    /// `begin`), or `None` when nothing before `until` is left.
    async fn replay_reader(
        &self,
        partition: i32,
        begin: i64,
        until: i64,
    ) -> Result<Option<TopicReader>, StreamError> {
        let (low, _) = self
            .lookup
            .bounds(partition)
            .await
            .map_err(|err| StreamError::Broker(err.to_string()))?;
        if low >= until {
            return Ok(None);
        }
        TopicReader::open_partition(
            &self.kafka,
            &self.topic,
            partition,
            Offset::Offset(begin.max(low)),
            &format!("{SERVICE}-replay"),
        )
        .map(Some)
        .map_err(|err| StreamError::Broker(err.to_string()))
    }
}

/// A stream's place in its partition's shared reader, taken by [`Streams::subscribe`]:
/// every record from `from` on reaches it.
pub struct Subscription {
    task_id: Uuid,
    partition: i32,
    live: Live,
    from: i64,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("task_id", &self.task_id)
            .field("partition", &self.partition)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The offset from which every record reaches this subscription.
    pub fn from(&self) -> i64 {
        self.from
    }
}

/// Events of `events` as an SSE answer, with a comment every 15 s.
pub fn sse(
    events: mpsc::Receiver<Event>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let events = futures::stream::unfold(events, |mut events| async move {
        events.recv().await.map(|event| (Ok(event), events))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// The shared reader of one partition: sends each record to the partition's streams
/// until `stop` fires (the last stream let go, or shutdown).
async fn follow(reader: TopicReader, state: Arc<Mutex<FeedState>>, stop: CancellationToken) {
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            message = reader.recv() => message,
        };
        match message {
            Ok(message) => {
                let key = message.key().unwrap_or_default();
                let mut state = lock(&state);
                state.next = message.offset() + 1;
                // A task no stream follows: nothing to copy.
                let Some(streams) = state.streams.get_mut(key) else {
                    continue;
                };
                let record = Arc::new(Record {
                    offset: message.offset(),
                    key: key.to_vec(),
                    payload: message.payload().unwrap_or_default().to_vec(),
                });
                let before = streams.len();
                // A stream whose queue is full has fallen behind: dropping its sender
                // ends it (it may resume from its last id).
                streams.retain(|tx| tx.try_send(Arc::clone(&record)).is_ok());
                if streams.len() < before {
                    tracing::info!(
                        offset = record.offset,
                        closed = before - streams.len(),
                        "streams closed: they fell {LIVE_BUFFER} records of their task behind, or ended (they may resume from their last id)"
                    );
                }
                state.prune(key);
            }
            Err(err) => {
                tracing::warn!(error = %err, "progress reader error; retrying in 1 s");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// One open stream.
struct StreamTask {
    task_id: Uuid,
    key: Vec<u8>,
    /// The first offset to send.
    begin: i64,
    /// Where the shared reader's share begins.
    from: i64,
    out: mpsc::Sender<Event>,
    store: Arc<dyn ViewStore>,
    shutdown: CancellationToken,
}

/// What became of a record.
enum Sent {
    /// Not this task's, or sent.
    Going,
    /// The `result` was sent: the stream is over.
    Ended,
    /// The client went away or does not keep up: the stream is over.
    Closed,
}

impl StreamTask {
    /// Follows the shared reader until the stream is over.
    async fn run(self, mut live: Live) {
        let mut grace: Option<tokio::time::Instant> = None;
        let mut check = tokio::time::interval(RESULT_GRACE);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = self.out.closed() => return,
                _ = check.tick() => {
                    if let Some(due) = grace {
                        if tokio::time::Instant::now() >= due {
                            self.send_view_result().await;
                            return;
                        }
                    } else if let Ok(Some(view)) = self.store.get(self.task_id).await
                        && view.status.is_final()
                    {
                        grace = Some(tokio::time::Instant::now() + RESULT_GRACE);
                    }
                }
                record = live.rx.recv() => match record {
                    Some(record) => {
                        if record.offset < self.begin {
                            continue;
                        }
                        match self.send(record.offset, &record.key, &record.payload).await {
                            Sent::Going => {}
                            Sent::Ended | Sent::Closed => return,
                        }
                    }
                    // Fell behind (the feed dropped it), or shutdown.
                    None => return,
                },
            }
        }
    }

    /// Sends the record at `offset` if it is this task's event.
    async fn send(&self, offset: i64, key: &[u8], payload: &[u8]) -> Sent {
        if key != self.key.as_slice() {
            return Sent::Going;
        }
        let event = match ProgressEvent::from_json(payload) {
            Ok(event) if event.task_id == self.task_id => event,
            Ok(_) => return Sent::Going,
            Err(err) => {
                tracing::warn!(offset, error = %err, "skipping an invalid progress record");
                return Sent::Going;
            }
        };
        let last = matches!(event.body, Progress::Result { .. });
        let id = if last {
            format!("{offset}.end")
        } else {
            offset.to_string()
        };
        let sse = Event::default()
            .event(event.body.kind())
            .id(id)
            .data(data_of(&event).to_string());
        // A client that does not take its events: closed rather than buffered.
        match self.out.try_send(sse) {
            Ok(()) if last => Sent::Ended,
            Ok(()) => Sent::Going,
            Err(_) => Sent::Closed,
        }
    }

    /// Sends the result the view holds as the last event.
    async fn send_view_result(&self) {
        let Ok(Some(view)) = self.store.get(self.task_id).await else {
            return;
        };
        // A task waiting for review is not over: its stream goes on.
        if !view.status.is_final() {
            return;
        }
        let Some(result) = view.result.as_ref().and_then(|r| r.decode().ok()) else {
            return;
        };
        let sse = Event::default()
            .event("result")
            .id("view.end")
            .data(result_data(&result).to_string());
        let _ = self.out.send(sse).await;
    }
}

/// `data:` of a `status` event.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct StatusData {
    /// The task.
    pub task_id: Uuid,
    /// The run (one delivery of the task to a solver).
    pub run_id: Uuid,
    /// `running`, `interrupted`, `completed` or `failed`.
    pub status: RunStatus,
    /// Why, for `failed` and `interrupted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `data:` of a `node` event.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct NodeData {
    /// The task.
    pub task_id: Uuid,
    /// The graph node.
    pub node: String,
    /// The superstep it ran in, from 0.
    pub superstep: u64,
    /// `started` or `finished`.
    pub phase: NodePhase,
    /// How long it ran, in milliseconds (`finished` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// `data:` of a `token` event: a piece of the model's answer.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TokenData {
    /// The task.
    pub task_id: Uuid,
    /// The node whose model call wrote it.
    pub node: String,
    /// Its number in the run, from 0, without gaps: a node's chunks in this order make
    /// up its answer (and start over when the node is retried).
    pub chunk_id: u64,
    /// The text.
    pub chunk: String,
}

/// `data:` of a `custom` event: what a node emitted.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct CustomData {
    /// The task.
    pub task_id: Uuid,
    /// The node.
    pub node: String,
    /// What it emitted (the solver's `plan` node: `{"plan": "…"}`).
    pub value: Value,
}

/// `data:` of an `interrupt` event: the run paused for review (human review); the
/// stream goes on when the task is resumed.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct InterruptData {
    /// The task.
    pub task_id: Uuid,
    /// The pause: answer it with `POST /task-result/{task_id}/resume` naming this id.
    pub id: String,
    /// The node that paused (`review`).
    pub node: String,
    /// What it shows for review: `{"plan": "…"}`.
    pub value: Value,
}

/// `data:` of the `result` event, the stream's last: the task's result.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ResultData {
    /// The result, as on the results topic.
    #[serde(flatten)]
    pub result: TaskResult,
    /// Always `true`: nothing follows.
    pub is_final: bool,
}

/// `data:` of the `metadata` event, the first of `POST /generate-task`'s stream.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct MetadataData {
    /// The id the task will have.
    pub task_id: Uuid,
}

/// `data:` of an `error` event, the last of `POST /generate-task`'s stream when the
/// task could not be generated or stored.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ErrorData {
    /// The HTTP status the JSON answer would have had (502: the model failed; 503: the
    /// broker did not store the task; 500).
    pub status: u16,
    /// The error, as in every JSON error answer.
    pub error: ErrorBody,
}

/// `{"code", "message"}` of an error.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// Machine-readable: `bad_gateway`, `unavailable`, `internal`.
    pub code: String,
    /// For people.
    pub message: String,
}

/// The JSON Schemas of the events' `data:`, by event name, as written to
/// `docs/schemas/task-stream.json`: those of `GET /task-result/{task_id}/stream`
/// (`status`, `node`, `token`, `custom`, `result`) and those `POST /generate-task`
/// sends before them (`metadata`, `generation`, `task`, `error`).
pub fn stream_schema() -> Value {
    json!({
        "title": "The data of each event of GET /task-result/{task_id}/stream and of POST /generate-task with Accept: text/event-stream, by event name",
        "status": schemars::schema_for!(StatusData),
        "node": schemars::schema_for!(NodeData),
        "token": schemars::schema_for!(TokenData),
        "custom": schemars::schema_for!(CustomData),
        "interrupt": schemars::schema_for!(InterruptData),
        "result": schemars::schema_for!(ResultData),
        "metadata": schemars::schema_for!(MetadataData),
        "generation": schemars::schema_for!(NodeData),
        "task": schemars::schema_for!(Accepted),
        "error": schemars::schema_for!(ErrorData),
    })
}

/// The `data:` of an SSE event ([`StatusData`], [`NodeData`], [`TokenData`],
/// [`CustomData`] or [`ResultData`]).
pub fn data_of(event: &ProgressEvent) -> Value {
    let task_id = event.task_id;
    let data = match &event.body {
        Progress::Status { status, reason } => serde_json::to_value(StatusData {
            task_id,
            run_id: event.run_id,
            status: *status,
            reason: reason.clone(),
        }),
        Progress::Node {
            node,
            superstep,
            phase,
            duration_ms,
        } => serde_json::to_value(NodeData {
            task_id,
            node: node.clone(),
            superstep: *superstep,
            phase: *phase,
            duration_ms: *duration_ms,
        }),
        Progress::Token {
            node,
            chunk_id,
            chunk,
        } => serde_json::to_value(TokenData {
            task_id,
            node: node.clone(),
            chunk_id: *chunk_id,
            chunk: chunk.clone(),
        }),
        Progress::Custom { node, value } => serde_json::to_value(CustomData {
            task_id,
            node: node.clone(),
            value: value.clone(),
        }),
        Progress::Interrupt { interrupt } => serde_json::to_value(InterruptData {
            task_id,
            id: interrupt.id.clone(),
            node: interrupt.node.clone(),
            value: interrupt.value.clone(),
        }),
        Progress::Result { result } => return result_data(result),
    };
    data.unwrap_or_else(|_| json!({"task_id": task_id}))
}

/// A `result` event's data: the result with `"is_final": true`.
fn result_data(result: &TaskResult) -> Value {
    serde_json::to_value(ResultData {
        result: result.clone(),
        is_final: true,
    })
    .unwrap_or_else(|_| json!({"task_id": result.task_id, "is_final": true}))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/schemas/task-stream.json` matches the types; `UPDATE_SCHEMAS=1` rewrites it.
    #[test]
    fn the_stream_schema_in_docs_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/schemas/task-stream.json");
        let text = serde_json::to_string_pretty(&stream_schema()).expect("serializes") + "\n";
        if std::env::var_os("UPDATE_SCHEMAS").is_some() {
            std::fs::write(&path, &text).expect("writes the schema");
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            on_disk,
            text,
            "{} is stale: run `UPDATE_SCHEMAS=1 cargo test -p task-generator`",
            path.display()
        );
    }

    /// An idle stream gets a comment every [`KEEP_ALIVE`] (15 s), nothing else.
    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_gets_a_keep_alive_comment_every_15_s() {
        use axum::response::IntoResponse;
        use http_body_util::BodyExt;

        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let mut body = sse(rx).into_response().into_body();
        let start = tokio::time::Instant::now();
        for n in 1..=2u32 {
            let frame = body
                .frame()
                .await
                .expect("a frame")
                .expect("no error")
                .into_data()
                .expect("data");
            assert_eq!(
                start.elapsed(),
                KEEP_ALIVE * n,
                "comment {n} at 15 s intervals"
            );
            let text = String::from_utf8_lossy(&frame);
            assert!(
                text.starts_with(':') && text.ends_with("\n\n"),
                "a comment: {text:?}"
            );
        }
        // An event is sent as it comes, and the stream ends with its sender.
        tx.send(Event::default().event("status").id("7").data("{}"))
            .await
            .expect("sent");
        drop(tx);
        let frame = body
            .frame()
            .await
            .expect("a frame")
            .expect("ok")
            .into_data()
            .expect("data");
        assert_eq!(&frame[..], b"event: status\nid: 7\ndata: {}\n\n");
        assert!(body.frame().await.is_none(), "the stream ended");
    }

    /// The shared reader hands each stream only its own task's records, in order, and
    /// forgets a stream once it ends; a partition no stream holds is read no more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_shared_reader_hands_each_stream_only_its_task_s_records() {
        use rdkafka::{
            ClientConfig,
            mocking::MockCluster,
            producer::{FutureProducer, FutureRecord},
        };

        let cluster = MockCluster::new(1).expect("mock cluster");
        let settings = KafkaSettings::for_brokers(&cluster.bootstrap_servers());
        cluster
            .create_topic(&settings.topics.progress, 1, 1)
            .expect("topic");
        let streams = Arc::new(Streams::new(&settings, CancellationToken::new()).expect("streams"));
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut first = streams.subscribe(a).await.expect("a's subscription");
        let mut second = streams.subscribe(b).await.expect("b's subscription");
        assert_eq!(streams.feeds(), 1, "one reader for the partition");
        assert_eq!(first.from(), 0);

        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .expect("producer");
        for (n, key) in [a, c, b, a, c, c, b, a].iter().enumerate() {
            let (key, payload) = (key.to_string(), n.to_string());
            producer
                .send(
                    FutureRecord::to(&settings.topics.progress)
                        .key(&key)
                        .payload(&payload),
                    Duration::from_secs(5),
                )
                .await
                .expect("produced");
        }
        let take = async |live: &mut Live, n: usize| {
            let mut got = Vec::new();
            for _ in 0..n {
                let record = tokio::time::timeout(Duration::from_secs(10), live.rx.recv())
                    .await
                    .expect("a record in time")
                    .expect("the feed goes on");
                got.push((
                    record.offset,
                    String::from_utf8_lossy(&record.payload).into_owned(),
                ));
            }
            got
        };
        let of = |pairs: &[(i64, &str)]| -> Vec<(i64, String)> {
            pairs.iter().map(|(o, p)| (*o, (*p).to_owned())).collect()
        };
        assert_eq!(
            take(&mut first.live, 3).await,
            of(&[(0, "0"), (3, "3"), (7, "7")])
        );
        assert_eq!(take(&mut second.live, 2).await, of(&[(2, "2"), (6, "6")]));

        let feed = Arc::clone(&first.live.feed);
        drop(first);
        assert!(
            !lock(&feed.state)
                .streams
                .contains_key(a.to_string().as_bytes()),
            "an ended stream is forgotten"
        );
        drop(feed);
        drop(second);
        assert_eq!(streams.feeds(), 0, "no stream, no reader");
    }

    #[test]
    fn a_token_s_data_is_exactly_its_four_fields_and_an_id_parses() {
        let event = ProgressEvent::now(
            Uuid::nil(),
            Uuid::nil(),
            Progress::Token {
                node: "solve".into(),
                chunk_id: 2,
                chunk: "Hi".into(),
            },
        );
        assert_eq!(
            data_of(&event),
            json!({"task_id": Uuid::nil(), "node": "solve", "chunk_id": 2, "chunk": "Hi"})
        );
        assert_eq!(LastEventId::parse("41"), Some(LastEventId::After(41)));
        assert_eq!(LastEventId::parse("41.end"), Some(LastEventId::Ended));
        assert_eq!(LastEventId::parse("view.end"), Some(LastEventId::Ended));
        assert_eq!(LastEventId::parse("0"), Some(LastEventId::After(0)));
        for bad in [
            "-1",
            "nope",
            "+1",
            " 41",
            "41 ",
            "x.end",
            ".end",
            "41.end.end",
            "1e3",
            "1234567890123456789",
        ] {
            assert_eq!(LastEventId::parse(bad), None, "{bad:?}");
        }
    }
}
