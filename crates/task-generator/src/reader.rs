//! [`ViewReader`]: keeps the results view's store up to date from the events and results
//! topics, and knows when it has caught up.
//!
//! At start it asks the broker where each partition ends ([`log_bounds`]): those ends
//! are what the store must reach before the view can say a task does not exist
//! ([`CatchUp`], which watches the store's offsets, [`ViewStore::offsets`], until they
//! do). It reads from where the store stopped (the log's start for a partition the store
//! has not seen) and applies what it reads in batches of at most [`MAX_BATCH`] records or
//! [`BATCH_WINDOW`], each batch with the offsets it ends at in one transaction. A store
//! that fails is tried again every second, with the same batch: nothing read is lost,
//! and nothing applied twice counts twice.
//!
//! How it reads depends on the store:
//! - a store of its own ([`SqliteStore`](crate::store::SqliteStore),
//!   [`MemoryStore`](crate::store::MemoryStore)): every partition of both topics, outside
//!   any consumer group ([`TopicReader`]);
//! - a store replicas share ([`PostgresStore`](crate::store::PostgresStore),
//!   [`ViewStore::shared`]): as a member of consumer group [`view_group`]
//!   ([`GroupReader`]), so the group splits the partitions and each record is applied by
//!   one replica. The store's offsets stay the truth: on the first record of each newly
//!   assigned partition the reader seeks to the store's offset when Kafka's (a hint it
//!   commits after each batch) differs. A replica is ready as soon as the shared store
//!   has reached the ends, whoever wrote it: a new pod has nothing to replay.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::Duration,
};

use agent_core::task::{Task, TaskResult};
use agent_runtime::kafka::{
    AssignmentWatch, GroupReader, KafkaSettings, LogBounds, TopicReader, Topics,
    headers::{TASK_RESUMED, header_str, is_resume, trace_of},
    log_bounds,
};
use rdkafka::{Message, Offset, message::BorrowedMessage};
use tokio_util::sync::CancellationToken;

use crate::{
    SERVICE,
    store::{Batch, LogPosition, NextOffset, ViewRecord, ViewStore},
};

/// The most records applied in one transaction.
pub const MAX_BATCH: usize = 1000;

/// How long a batch may wait for more records once it holds one.
pub const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// How often [`CatchUp`] reads the store's offsets until they reach the ends.
pub const CATCH_UP_POLL: Duration = Duration::from_millis(200);

/// How long a group member waits, at shutdown, to leave the group (so its partitions
/// move to the other replicas at once, not after the session timeout).
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The consumer group of the replicas sharing one view of `topics`:
/// `task-generator-view.<events topic>` (views of other topics, say another
/// `KAFKA_TOPIC_PREFIX` on the same cluster, have groups of their own).
pub fn view_group(topics: &Topics) -> String {
    format!("{SERVICE}-view.{}", topics.events)
}

/// Whether the view has read everything written before it started. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CatchUp {
    caught_up: Arc<AtomicBool>,
    behind: Arc<AtomicI64>,
    group: Arc<std::sync::OnceLock<(String, AssignmentWatch)>>,
}

impl CatchUp {
    /// Whether the view has read up to the ends it saw at start (and so a task it does
    /// not hold was not written before then).
    pub fn is_caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// Records still to read before the view has caught up (0 once it has; unknown,
    /// and so -1, until the ends are known).
    pub fn behind(&self) -> i64 {
        self.behind.load(Ordering::Acquire)
    }

    /// When the view is read in a consumer group: the group and the partitions this
    /// replica holds now (`<topic>/<partition>`); `None` otherwise.
    pub fn group(&self) -> Option<(String, Vec<String>)> {
        self.group.get().map(|(group, watch)| {
            let held = watch
                .partitions()
                .into_iter()
                .map(|(topic, partition)| format!("{topic}/{partition}"))
                .collect();
            (group.clone(), held)
        })
    }

    pub(crate) fn set_behind(&self, behind: i64) {
        self.behind.store(behind, Ordering::Release);
        if behind == 0 {
            self.caught_up.store(true, Ordering::Release);
        }
    }
}

/// Reads the view's topics into its store.
#[derive(Debug)]
pub struct ViewReader {
    store: Arc<dyn ViewStore>,
    kafka: KafkaSettings,
    topics: Topics,
    catch_up: CatchUp,
}

impl ViewReader {
    /// A reader of `kafka`'s events and results topics into `store`, reporting through
    /// `catch_up`.
    pub fn new(store: Arc<dyn ViewStore>, kafka: &KafkaSettings, catch_up: CatchUp) -> Self {
        catch_up.behind.store(-1, Ordering::Release);
        Self {
            store,
            kafka: kafka.clone(),
            topics: kafka.topics.clone(),
            catch_up,
        }
    }

    /// Reads until `shutdown` fires. Waits for the topics to exist and the broker and
    /// the store to answer, retrying every second.
    pub async fn run(self, shutdown: CancellationToken) {
        let names = vec![self.topics.events.clone(), self.topics.results.clone()];
        let source = if self.store.shared() {
            let group = view_group(&self.topics);
            match GroupReader::join(&self.kafka, &group, &names, SERVICE, &shutdown).await {
                Ok(Some(reader)) => {
                    let _ = self.catch_up.group.set((group, reader.assignment_watch()));
                    Source::Group(reader)
                }
                Ok(None) => return,
                Err(err) => {
                    tracing::error!(error = %err, "cannot join the results view's consumer group");
                    return;
                }
            }
        } else {
            let Some(stored) = retry(&shutdown, "results store", || self.store.offsets()).await
            else {
                return;
            };
            let stored: HashMap<(String, i32), i64> = stored
                .into_iter()
                .map(|n| ((n.topic, n.partition), n.offset))
                .collect();
            let start = move |topic: &str, partition: i32| {
                stored
                    .get(&(topic.to_owned(), partition))
                    .map_or(Offset::Beginning, |offset| Offset::Offset(*offset))
            };
            match TopicReader::open_at(&self.kafka, &names, &start, SERVICE, &shutdown).await {
                Ok(Some(reader)) => Source::All(reader),
                Ok(None) => return,
                Err(err) => {
                    tracing::error!(error = %err, "cannot read the topics of the results view");
                    return;
                }
            }
        };
        let Some(ends) = retry(&shutdown, "broker", || {
            let kafka = self.kafka.clone();
            let names = names.clone();
            async move { log_bounds(&kafka, &names, SERVICE).await }
        })
        .await
        else {
            return;
        };
        let watch = self.watch_catch_up(&ends, &source, &shutdown);
        let read = async {
            loop {
                let Some(batch) = self.next_batch(&source, &ends, &shutdown).await else {
                    return;
                };
                let applied = retry(&shutdown, "results store", || {
                    self.store.apply(batch.clone())
                });
                if applied.await.is_none() {
                    return;
                }
                if let Source::Group(reader) = &source {
                    for next in &batch.offsets {
                        reader.hint(&next.topic, next.partition, next.offset);
                    }
                }
            }
        };
        tokio::join!(watch, read);
        if let Source::Group(reader) = source {
            reader.close(LEAVE_TIMEOUT).await;
        }
    }

    /// Reads the store's offsets every [`CATCH_UP_POLL`] and reports how far they are
    /// from `ends` until they reach them (or `shutdown` fires); logs the first figure
    /// with what `source` is. A partition the store has not seen counts from its log's
    /// start.
    async fn watch_catch_up(
        &self,
        ends: &[LogBounds],
        source: &Source,
        shutdown: &CancellationToken,
    ) {
        let mut first = true;
        loop {
            let Some(stored) = retry(shutdown, "results store", || self.store.offsets()).await
            else {
                return;
            };
            let stored: HashMap<(&str, i32), i64> = stored
                .iter()
                .map(|n| ((n.topic.as_str(), n.partition), n.offset))
                .collect();
            let behind = ends
                .iter()
                .map(|end| {
                    let at = stored
                        .get(&(end.topic.as_str(), end.partition))
                        .copied()
                        .unwrap_or(end.low);
                    (end.high - at).max(0)
                })
                .sum();
            self.catch_up.set_behind(behind);
            if first {
                first = false;
                tracing::info!(behind, store = ?self.store, reader = ?source, "results view reading");
            }
            if self.catch_up.is_caught_up() {
                tracing::info!("results view caught up");
                return;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(CATCH_UP_POLL) => {}
            }
        }
    }

    /// The next batch: waits for one record, then takes more for up to [`BATCH_WINDOW`]
    /// or [`MAX_BATCH`] records. `None` when `shutdown` fired.
    async fn next_batch(
        &self,
        source: &Source,
        ends: &[LogBounds],
        shutdown: &CancellationToken,
    ) -> Option<Batch> {
        let mut batch = Batch::default();
        let mut moved: HashMap<(String, i32), i64> = HashMap::new();
        let window = tokio::time::sleep(Duration::MAX);
        tokio::pin!(window);
        let mut first = true;
        while batch.records.len() < MAX_BATCH {
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = &mut window, if !first => break,
                received = source.recv() => match received {
                    Ok(message) => {
                        if let Source::Group(reader) = source
                            && reader.take_unplaced(message.topic(), message.partition())
                            && !self.place(reader, &message, ends, shutdown).await?
                        {
                            continue;
                        }
                        if first {
                            first = false;
                            window.as_mut().reset(tokio::time::Instant::now() + BATCH_WINDOW);
                        }
                        let key = (message.topic().to_owned(), message.partition());
                        moved.insert(key, message.offset() + 1);
                        if let Some(record) = self.record_of(&message) {
                            batch.records.push(record);
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "results view read error; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
            }
        }
        for ((topic, partition), offset) in moved {
            batch.offsets.push(NextOffset {
                topic,
                partition,
                offset,
            });
        }
        Some(batch)
    }

    /// Checks the first record of a newly assigned partition against the store's offset
    /// for it: `true` when it is the next to apply; otherwise seeks to the store's
    /// offset (the log's start when the store has none) and answers `false`, the record
    /// being dropped. `None` when `shutdown` fired.
    async fn place(
        &self,
        reader: &GroupReader,
        message: &BorrowedMessage<'_>,
        ends: &[LogBounds],
        shutdown: &CancellationToken,
    ) -> Option<bool> {
        let (topic, partition) = (message.topic(), message.partition());
        let stored = retry(shutdown, "results store", || self.store.offsets()).await?;
        let stored = stored
            .into_iter()
            .find(|n| n.topic == topic && n.partition == partition)
            .map(|n| n.offset);
        let low = ends
            .iter()
            .find(|end| end.topic == topic && end.partition == partition)
            .map(|end| end.low);
        let next = stored.or(low);
        if next == Some(message.offset()) {
            return Some(true);
        }
        let target = stored.map_or(Offset::Beginning, Offset::Offset);
        tracing::info!(
            topic,
            partition,
            kafka = message.offset(),
            store = ?stored,
            "results view partition assigned; reading from the store's offset"
        );
        if let Err(err) = reader.seek(topic, partition, target) {
            tracing::warn!(topic, partition, error = %err, "results view seek failed");
        }
        Some(false)
    }

    /// What a record says, or `None` for one the view skips: a resume of a paused task
    /// on the events topic ([`is_resume`], logged at debug: it is not a task, and the
    /// view learns of its effect from the results), an invalid task, or (logged) an
    /// invalid result or a result not keyed by its own `task_id` (the key puts every
    /// result of a task in one partition, which is what makes positions comparable).
    fn record_of(&self, message: &BorrowedMessage<'_>) -> Option<ViewRecord> {
        let payload = message.payload().unwrap_or_default();
        let offset = message.offset();
        if message.topic() == self.topics.events {
            let ce_type = header_str(message.headers(), "ce_type");
            let skip_resume = || {
                tracing::debug!(
                    partition = message.partition(),
                    offset,
                    "skipping a resume on the events topic: not a task"
                );
                None
            };
            if ce_type == Some(TASK_RESUMED) {
                return skip_resume();
            }
            let id = || Task::id_for_offset(message.topic(), message.partition(), offset);
            return match Task::from_json(payload, id) {
                Ok(task) => Some(ViewRecord::Task(task)),
                // Read only once a record is not a task: tasks are not parsed twice.
                Err(_) if is_resume(ce_type, payload) => skip_resume(),
                Err(_) => None, // the solver dead-letters it; nothing to show
            };
        }
        match TaskResult::from_json(payload) {
            Ok(result) if message.key() == Some(result.task_id.to_string().as_bytes()) => {
                // Where the task's trace reaches the view: a span, child of the one that
                // published the result, made only when spans are exported.
                if agent_runtime::telemetry::exporting() {
                    let span = tracing::info_span!(
                        "view.result",
                        task_id = %result.task_id,
                        status = result.status.as_str(),
                        partition = message.partition(),
                        offset,
                        otel.name = "results view: result",
                        otel.kind = "consumer",
                    );
                    agent_runtime::telemetry::follow(&span, trace_of(message.headers()));
                    span.in_scope(|| tracing::debug!("result read into the view"));
                }
                let at = LogPosition {
                    partition: message.partition(),
                    offset,
                };
                Some(ViewRecord::Result(result, at))
            }
            Ok(result) => {
                tracing::warn!(
                    offset,
                    task_id = %result.task_id,
                    "skipping a result not keyed by its task_id"
                );
                None
            }
            Err(err) => {
                tracing::warn!(offset, error = %err, "skipping an invalid result");
                None
            }
        }
    }
}

/// Where the records come from: every partition (a store of one replica's own), or
/// this replica's share as a consumer-group member (a shared store).
#[derive(Debug)]
enum Source {
    All(TopicReader),
    Group(GroupReader),
}

impl Source {
    async fn recv(&self) -> agent_runtime::Result<BorrowedMessage<'_>> {
        match self {
            Self::All(reader) => reader.recv().await,
            Self::Group(reader) => reader.recv().await,
        }
    }
}

/// `attempt` until it succeeds, every second, logging each failure as `what`'s; `None`
/// when `shutdown` fired first.
async fn retry<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
    shutdown: &CancellationToken,
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> Option<T> {
    loop {
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return None,
            outcome = attempt() => outcome,
        };
        match outcome {
            Ok(value) => return Some(value),
            Err(err) => {
                tracing::warn!(error = %err, "{what} failed; the results view retries in 1 s");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use agent_core::task::{ResumeRequest, Review, Task};
    use agent_runtime::kafka::headers::TASK_CREATED;

    use super::*;

    #[test]
    fn a_resume_is_told_from_a_task_by_its_type_or_else_its_fields() {
        let resume = serde_json::to_vec(&ResumeRequest {
            task_id: uuid::Uuid::new_v4(),
            interrupt_id: Some("review#0".into()),
            resume: Review::Approved,
            requested_at: chrono::Utc::now(),
        })
        .expect("JSON");
        let task = serde_json::to_vec(&Task::new("t", "d", "").expect("task")).expect("JSON");
        assert!(is_resume(Some(TASK_RESUMED), &resume));
        assert!(is_resume(None, &resume));
        assert!(!is_resume(Some(TASK_CREATED), &resume));
        assert!(!is_resume(None, &task));
        assert!(!is_resume(Some(TASK_CREATED), &task));
        assert!(!is_resume(None, br#"{"resume": {}, "task_name": "t"}"#));
        assert!(!is_resume(None, b"not json"));
        assert!(!is_resume(None, br#"["resume"]"#));
    }
}
