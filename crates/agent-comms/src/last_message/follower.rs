//! [`Follower`]: the background task that keeps the view of each followed topic's newest
//! record.
//!
//! One consumer, outside any consumer group (partitions assigned, nothing committed),
//! reads every partition of every followed topic. A topic is added by a lookup — its
//! partitions ([`partitions_of`]) and each partition's watermarks, on the blocking pool,
//! at most [`MAX_LOOKUPS`] at once — and then assigned incrementally, each partition at
//! its high-water mark − 1 (its last record), or at its high-water mark when it is empty.
//! The topic is loaded once each non-empty partition delivered that last record.
//! Records then arrive as they are produced (`fetch.wait.max.ms` is
//! `KAFKA_FETCH_WAIT_MAX_MS`); each batch the consumer has ready is scanned, and only its
//! newest record per topic, when newer than the one shown, is rendered and published.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
    time::Duration,
};

use agent_runtime::{
    Result,
    kafka::{ClosingConsumer, KafkaSettings, partitions_of},
};
use futures::StreamExt;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
    error::KafkaResult,
    message::BorrowedMessage,
};
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::{Id, JoinSet},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{
    Newest,
    view::{Admission, Directory, Follow, TopicState, ViewOptions},
};
use crate::SERVICE;

/// Topic lookups (metadata and watermark requests, which block their thread) in flight
/// at once.
pub const MAX_LOOKUPS: usize = 4;

/// How long each broker request of a lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// How often followed topics not found yet are looked up again and loads are checked.
const TICK: Duration = Duration::from_secs(1);

/// How often the partitions of followed topics are looked up again, to follow partitions
/// added since.
const REFRESH: Duration = Duration::from_secs(60);

/// A topic whose partitions did not all deliver their last record this long after they
/// were assigned counts as loaded with what it has (a last record removed by retention
/// or that is a transaction marker is never delivered).
const LOAD_GRACE: Duration = Duration::from_secs(3);

/// The most records taken from the consumer in one go.
const BATCH: usize = 512;

/// librdkafka's prefetch queue, in KiB (its default is 64 MiB).
const QUEUED_MAX_KBYTES: u32 = 16 * 1024;

/// One partition's watermarks at lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PartitionEnds {
    partition: i32,
    /// The log-start offset.
    low: i64,
    /// The high-water mark: the offset the next record will get.
    high: i64,
}

impl PartitionEnds {
    /// Where reading starts: the last record, or the end of an empty partition.
    fn start(self) -> i64 {
        if self.high > self.low {
            self.high - 1
        } else {
            self.high
        }
    }
}

/// A followed topic.
#[derive(Debug)]
struct Followed {
    /// What requests see.
    state: watch::Sender<TopicState>,
    /// The partitions assigned.
    partitions: HashSet<i32>,
    /// Partitions whose last record (at this offset) was not read yet.
    pending: HashMap<i32, i64>,
    /// When its first partitions were assigned; `None` until a lookup found it.
    assigned_at: Option<Instant>,
    /// The newest record read.
    newest: Option<Arc<Newest>>,
}

impl Followed {
    fn new() -> Self {
        Self {
            state: watch::Sender::new(TopicState::Loading),
            partitions: HashSet::new(),
            pending: HashMap::new(),
            assigned_at: None,
            newest: None,
        }
    }

    fn loaded(&self) -> bool {
        self.assigned_at.is_some() && self.pending.is_empty()
    }

    /// Shows the topic's state to requests.
    fn publish(&self) {
        let state = if self.loaded() {
            TopicState::Ready(self.newest.clone())
        } else {
            TopicState::Loading
        };
        self.state.send_replace(state);
    }
}

/// Keeps the view that [`LastMessages`](super::LastMessages) reads: see the module
/// docs. Made by [`LastMessages::new`](super::LastMessages::new); runs with
/// [`Follower::run`].
pub struct Follower {
    consumer: Arc<ClosingConsumer>,
    requests: mpsc::Receiver<Follow>,
    view: View,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("topics", &self.view.topics.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The follower's state, apart from the consumer that its stream borrows.
#[derive(Debug)]
struct View {
    directory: watch::Sender<Directory>,
    topics: HashMap<String, Followed>,
    /// Topics asked for and not followed yet, with the requests waiting for them.
    asked: HashMap<String, Vec<oneshot::Sender<Admission>>>,
    /// Topics to look up, in order.
    queue: VecDeque<String>,
    /// Lookups in flight, by task.
    in_lookup: HashMap<Id, String>,
    max_topics: usize,
    last_error: Option<String>,
}

impl Follower {
    /// The follower of `options` on the brokers of `settings`, serving `requests`, and
    /// the directory of followed topics it keeps.
    pub(crate) fn new(
        settings: &KafkaSettings,
        options: &ViewOptions,
        requests: mpsc::Receiver<Follow>,
    ) -> Result<(watch::Receiver<Directory>, Self)> {
        let consumer: StreamConsumer = settings
            .client_config(SERVICE)
            // librdkafka wants a group id even for assigned partitions; nothing is committed.
            .set(
                "group.id",
                format!("{SERVICE}-last-message-{}", uuid::Uuid::new_v4()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            // A last record gone under retention: read from the new log start.
            .set("auto.offset.reset", "earliest")
            .set(
                "fetch.wait.max.ms",
                settings.fetch_wait_max.as_millis().to_string(),
            )
            .set("queued.max.messages.kbytes", QUEUED_MAX_KBYTES.to_string())
            .create()?;
        let mut topics = HashMap::new();
        let mut queue = VecDeque::new();
        for topic in &options.followed {
            if !topics.contains_key(topic) {
                topics.insert(topic.clone(), Followed::new());
                queue.push_back(topic.clone());
            }
        }
        let directory = watch::Sender::new(
            topics
                .iter()
                .map(|(topic, followed)| (topic.clone(), followed.state.subscribe()))
                .collect(),
        );
        let subscribed = directory.subscribe();
        let follower = Self {
            consumer: Arc::new(ClosingConsumer::new(consumer)),
            requests,
            view: View {
                directory,
                topics,
                asked: HashMap::new(),
                queue,
                in_lookup: HashMap::new(),
                max_topics: options.max_topics,
                last_error: None,
            },
        };
        Ok((subscribed, follower))
    }

    /// Follows the topics until `shutdown` fires. Then requests still waiting for a
    /// topic are answered [`ReadError::Stopped`](super::ReadError::Stopped), and the
    /// consumer is closed in the background.
    #[tracing::instrument(name = "last_message_view", skip_all)]
    pub async fn run(self, shutdown: CancellationToken) {
        let Self {
            consumer,
            mut requests,
            mut view,
        } = self;
        let mut lookups = JoinSet::new();
        let mut records = consumer.stream().ready_chunks(BATCH);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refreshed = Instant::now();
        loop {
            view.start_lookups(&consumer, &mut lookups);
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(batch) = records.next() => view.take(&batch),
                Some(follow) = requests.recv() => view.ask(follow),
                Some(done) = lookups.join_next_with_id(), if !lookups.is_empty() => {
                    let (id, found) = match done {
                        Ok((id, found)) => (id, found),
                        Err(err) => (err.id(), Err(std::io::Error::other(err).into())),
                    };
                    view.looked_up(id, found, &consumer);
                }
                _ = tick.tick() => {
                    let refresh = refreshed.elapsed() >= REFRESH;
                    if refresh {
                        refreshed = Instant::now();
                    }
                    view.check(refresh);
                }
            }
        }
        tracing::info!("topic view stopped");
    }
}

impl View {
    /// Handles a batch of records: marks partitions loaded, keeps each topic's newest.
    fn take(&mut self, batch: &[KafkaResult<BorrowedMessage<'_>>]) {
        let mut newest: HashMap<&str, &BorrowedMessage<'_>> = HashMap::new();
        let mut changed: HashSet<&str> = HashSet::new();
        for record in batch {
            let message = match record {
                Ok(message) => message,
                Err(err) => {
                    let error = err.to_string();
                    if self.last_error.as_ref() != Some(&error) {
                        tracing::warn!(error, "topic view: consumer error");
                        self.last_error = Some(error);
                    }
                    continue;
                }
            };
            let topic = message.topic();
            let Some(followed) = self.topics.get_mut(topic) else {
                continue;
            };
            let partition = message.partition();
            if followed
                .pending
                .get(&partition)
                .is_some_and(|&last| message.offset() >= last)
            {
                followed.pending.remove(&partition);
                changed.insert(topic);
            }
            let timestamp = message.timestamp().to_millis();
            newest
                .entry(topic)
                .and_modify(|shown| {
                    if timestamp >= shown.timestamp().to_millis() {
                        *shown = message;
                    }
                })
                .or_insert(message);
        }
        for (topic, message) in newest {
            let Some(followed) = self.topics.get_mut(topic) else {
                continue;
            };
            let timestamp = message.timestamp().to_millis();
            if followed
                .newest
                .as_ref()
                .is_some_and(|shown| timestamp < shown.timestamp_ms)
            {
                continue;
            }
            match Newest::render(message) {
                Ok(rendered) => {
                    followed.newest = Some(Arc::new(rendered));
                    changed.insert(topic);
                }
                Err(err) => tracing::warn!(topic, error = %err, "cannot render a record"),
            }
        }
        for topic in changed {
            if let Some(followed) = self.topics.get(topic) {
                followed.publish();
            }
        }
    }

    /// Answers a request for a topic not in the directory when it was made.
    fn ask(&mut self, Follow { topic, reply }: Follow) {
        if let Some(followed) = self.topics.get(&topic) {
            let _ = reply.send(Admission::Followed(followed.state.subscribe()));
            return;
        }
        if let Some(waiting) = self.asked.get_mut(&topic) {
            waiting.push(reply);
            return;
        }
        if self.topics.len() + self.asked.len() >= self.max_topics {
            self.forget_abandoned();
            if self.topics.len() + self.asked.len() >= self.max_topics {
                let _ = reply.send(Admission::Full {
                    limit: self.max_topics,
                });
                return;
            }
        }
        self.asked.insert(topic.clone(), vec![reply]);
        self.queue.push_back(topic);
    }

    /// Drops the topics asked for whose requests all went away, unless their lookup is
    /// in flight.
    fn forget_abandoned(&mut self) {
        let in_lookup: HashSet<&String> = self.in_lookup.values().collect();
        self.asked.retain(|topic, waiting| {
            waiting.retain(|reply| !reply.is_closed());
            !waiting.is_empty() || in_lookup.contains(topic)
        });
    }

    /// Starts queued lookups, up to [`MAX_LOOKUPS`] in flight.
    fn start_lookups(
        &mut self,
        consumer: &Arc<ClosingConsumer>,
        lookups: &mut JoinSet<Result<Vec<PartitionEnds>>>,
    ) {
        while lookups.len() < MAX_LOOKUPS {
            let Some(topic) = self.queue.pop_front() else {
                break;
            };
            if self.in_lookup.values().any(|t| *t == topic) {
                continue;
            }
            if let Some(waiting) = self.asked.get_mut(&topic) {
                // Nobody waits any more: the clients left, the lookup is not needed.
                waiting.retain(|reply| !reply.is_closed());
                if waiting.is_empty() {
                    self.asked.remove(&topic);
                    continue;
                }
            } else if !self.topics.contains_key(&topic) {
                continue;
            }
            let consumer = Arc::clone(consumer);
            let name = topic.clone();
            let task = lookups.spawn_blocking(move || locate(&consumer, &name));
            self.in_lookup.insert(task.id(), topic);
        }
    }

    /// Handles a lookup's outcome: assigns the topic's new partitions and answers the
    /// requests waiting for it.
    fn looked_up(&mut self, id: Id, found: Result<Vec<PartitionEnds>>, consumer: &ClosingConsumer) {
        let Some(topic) = self.in_lookup.remove(&id) else {
            return;
        };
        let waiting = self.asked.remove(&topic).unwrap_or_default();
        let answer = match found {
            Ok(ends) if ends.is_empty() => {
                if self
                    .topics
                    .get(&topic)
                    .is_some_and(|f| f.assigned_at.is_none())
                {
                    tracing::info!(topic, "waiting for the topic to exist");
                }
                Admission::Missing
            }
            Ok(ends) => match self.assign(&topic, &ends, consumer) {
                Ok(state) => Admission::Followed(state),
                Err(err) => {
                    tracing::warn!(topic, error = %err, "cannot assign the topic's partitions");
                    Admission::Failed(err.to_string())
                }
            },
            Err(err) => {
                if self.topics.contains_key(&topic) {
                    tracing::warn!(topic, error = %err, "cannot look the topic up");
                }
                Admission::Failed(err.to_string())
            }
        };
        for reply in waiting {
            let _ = reply.send(match &answer {
                Admission::Followed(state) => Admission::Followed(state.clone()),
                Admission::Missing => Admission::Missing,
                Admission::Full { limit } => Admission::Full { limit: *limit },
                Admission::Failed(reason) => Admission::Failed(reason.clone()),
            });
        }
    }

    /// Assigns the partitions of `topic` in `ends` not assigned yet, each at its last
    /// record; adds the topic to the directory when it is new.
    fn assign(
        &mut self,
        topic: &str,
        ends: &[PartitionEnds],
        consumer: &ClosingConsumer,
    ) -> KafkaResult<watch::Receiver<TopicState>> {
        let known = self.topics.get(topic);
        let added: Vec<PartitionEnds> = ends
            .iter()
            .copied()
            .filter(|end| known.is_none_or(|f| !f.partitions.contains(&end.partition)))
            .collect();
        if !added.is_empty() {
            let mut list = TopicPartitionList::new();
            for end in &added {
                list.add_partition_offset(topic, end.partition, Offset::Offset(end.start()))?;
            }
            consumer.incremental_assign(&list)?;
        }
        let followed = self.topics.entry(topic.to_owned()).or_insert_with(|| {
            let followed = Followed::new();
            let state = followed.state.subscribe();
            self.directory.send_modify(|directory| {
                directory.insert(topic.to_owned(), state);
            });
            followed
        });
        let first = followed.assigned_at.is_none();
        for end in added {
            followed.partitions.insert(end.partition);
            // Partitions added later do not make a loaded topic loading again.
            if first && end.high > end.low {
                followed.pending.insert(end.partition, end.high - 1);
            }
        }
        if first {
            followed.assigned_at = Some(Instant::now());
            tracing::info!(
                topic,
                partitions = followed.partitions.len(),
                loading = followed.pending.len(),
                "following the topic"
            );
        }
        followed.publish();
        Ok(followed.state.subscribe())
    }

    /// Every [`TICK`]: queues lookups of followed topics not found yet (and of every
    /// followed topic when `refresh`), and ends loads past [`LOAD_GRACE`].
    fn check(&mut self, refresh: bool) {
        for (topic, followed) in &mut self.topics {
            let found = followed.assigned_at.is_some();
            if (!found || refresh) && !self.queue.contains(topic) {
                self.queue.push_back(topic.clone());
            }
            if let Some(assigned_at) = followed.assigned_at
                && !followed.pending.is_empty()
                && assigned_at.elapsed() >= LOAD_GRACE
            {
                tracing::warn!(
                    topic,
                    partitions = ?followed.pending.keys().collect::<Vec<_>>(),
                    "last records not read in time; the topic counts as loaded"
                );
                followed.pending.clear();
                followed.publish();
            }
        }
    }
}

/// The partitions of `topic` and their watermarks (empty when the topic does not exist).
/// Blocks on the broker.
fn locate(consumer: &StreamConsumer, topic: &str) -> Result<Vec<PartitionEnds>> {
    partitions_of(consumer, topic)?
        .into_iter()
        .map(|partition| {
            let (low, high) = consumer.fetch_watermarks(topic, partition, LOOKUP_TIMEOUT)?;
            Ok(PartitionEnds {
                partition,
                low,
                high,
            })
        })
        .collect()
}
