//! [`ViewReader`]: keeps the results view's store up to date from the events and results
//! topics, and knows when it has caught up.
//!
//! At start it asks the store where it stopped ([`ViewStore::offsets`]), and the broker
//! where each partition ends ([`log_bounds`]): those ends are what it must reach before
//! the view can say a task does not exist ([`CatchUp`]). It then reads every partition of
//! both topics from where the store stopped (the log's start for a partition the store
//! has not seen), outside any consumer group, and applies what it reads in batches of at
//! most [`MAX_BATCH`] records or [`BATCH_WINDOW`], each batch with the offsets it ends at
//! in one transaction. A store that fails is tried again every second, with the same
//! batch: nothing read is lost, and nothing applied twice counts twice.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::Duration,
};

use agent_core::task::{Task, TaskResult};
use agent_runtime::kafka::{KafkaSettings, LogBounds, TopicReader, Topics, log_bounds};
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

/// Whether the view has read everything written before it started. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CatchUp {
    caught_up: Arc<AtomicBool>,
    behind: Arc<AtomicI64>,
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
        let Some(stored) = retry(&shutdown, "results store", || self.store.offsets()).await else {
            return;
        };
        let mut next: HashMap<(String, i32), i64> = stored
            .into_iter()
            .map(|n| ((n.topic, n.partition), n.offset))
            .collect();
        let start = {
            let next = next.clone();
            move |topic: &str, partition: i32| {
                next.get(&(topic.to_owned(), partition))
                    .map_or(Offset::Beginning, |offset| Offset::Offset(*offset))
            }
        };
        let reader =
            match TopicReader::open_at(&self.kafka, &names, &start, SERVICE, &shutdown).await {
                Ok(Some(reader)) => reader,
                Ok(None) => return,
                Err(err) => {
                    tracing::error!(error = %err, "cannot read the topics of the results view");
                    return;
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
        // A partition the store has not seen starts at its log's start.
        for LogBounds {
            topic,
            partition,
            low,
            ..
        } in &ends
        {
            next.entry((topic.clone(), *partition)).or_insert(*low);
        }
        let behind = |next: &HashMap<(String, i32), i64>| -> i64 {
            ends.iter()
                .map(|end| {
                    let at = next
                        .get(&(end.topic.clone(), end.partition))
                        .copied()
                        .unwrap_or(end.low);
                    (end.high - at).max(0)
                })
                .sum()
        };
        self.catch_up.set_behind(behind(&next));
        tracing::info!(
            behind = self.catch_up.behind(),
            store = ?self.store,
            "results view reading"
        );
        loop {
            let Some(batch) = self.next_batch(&reader, &mut next, &shutdown).await else {
                return;
            };
            let applied = retry(&shutdown, "results store", || {
                self.store.apply(batch.clone())
            });
            if applied.await.is_none() {
                return;
            }
            if !self.catch_up.is_caught_up() {
                self.catch_up.set_behind(behind(&next));
                if self.catch_up.is_caught_up() {
                    tracing::info!("results view caught up");
                }
            }
        }
    }

    /// The next batch: waits for one record, then takes more for up to [`BATCH_WINDOW`]
    /// or [`MAX_BATCH`] records. `None` when `shutdown` fired.
    async fn next_batch(
        &self,
        reader: &TopicReader,
        next: &mut HashMap<(String, i32), i64>,
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
                received = reader.recv() => match received {
                    Ok(message) => {
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
            next.insert((topic.clone(), partition), offset);
            batch.offsets.push(NextOffset {
                topic,
                partition,
                offset,
            });
        }
        Some(batch)
    }

    /// What a record says, or `None` (logged) for one the view skips: an invalid task or
    /// result, or a result not keyed by its own `task_id` (the key puts every result of a
    /// task in one partition, which is what makes positions comparable).
    fn record_of(&self, message: &BorrowedMessage<'_>) -> Option<ViewRecord> {
        let payload = message.payload().unwrap_or_default();
        let offset = message.offset();
        if message.topic() == self.topics.events {
            let id = || Task::id_for_offset(message.topic(), message.partition(), offset);
            return match Task::from_json(payload, id) {
                Ok(task) => Some(ViewRecord::Task(task)),
                Err(_) => None, // the solver dead-letters it; nothing to show
            };
        }
        match TaskResult::from_json(payload) {
            Ok(result) if message.key() == Some(result.task_id.to_string().as_bytes()) => {
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
