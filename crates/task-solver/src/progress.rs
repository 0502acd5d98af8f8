//! A task run's progress on the progress topic: [`ProgressPublisher`] and [`RunProgress`].
//!
//! The worker runs the solver graph as a stream (`values`, `custom`, `messages` and
//! `debug` modes) and hands each event to the run's [`RunProgress`], which turns it into
//! a [`ProgressEvent`] keyed by the task id: a node's start and end, what it emits, and
//! the model's output gathered into `token` chunks of `STREAM_CHUNK_MS` (a chunk also
//! ends at its node's end, and at [`MAX_CHUNK_CHARS`]). The worker adds the run's
//! `status` events and, once the result is acknowledged on the results topic, the
//! `result` event.
//!
//! Publishing never waits and never fails the task ([`BestEffortProducer`]): an event
//! that cannot be queued or delivered is counted (`progress` in `/health`) and logged
//! at most every 10 s; the task goes on, and its result is published as before.

use std::time::{Duration, Instant};

use agent_core::{
    graph::{DebugEvent, StreamEvent},
    task::{
        MAX_CHUNK_CHARS, NodePhase, Progress, ProgressEvent, RunStatus, TaskInterrupt, TaskResult,
    },
};
use agent_runtime::{
    Result,
    kafka::{BestEffortProducer, BestEffortStats, CloudEvent, KafkaSettings},
    telemetry::TraceContext,
};
use uuid::Uuid;

use crate::{SERVICE, solver::SolverState};

/// The CloudEvents type of progress records.
pub const TASK_PROGRESS: &str = "io.langgraph-kafka.task.progress";

/// How much the progress producer queues at most, in KiB (16 MiB): past that (the
/// broker is slow or away) events are dropped, not buffered.
pub const MAX_QUEUE_KIB: usize = 16 * 1024;

/// Publishes runs' progress to the progress topic. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ProgressPublisher {
    producer: std::sync::Arc<BestEffortProducer>,
    topic: String,
    chunk_window: Duration,
}

impl ProgressPublisher {
    /// A publisher to `settings`' progress topic, gathering tokens for `chunk_window`
    /// (`STREAM_CHUNK_MS`).
    ///
    /// # Errors
    /// [`agent_runtime::Error::Kafka`] when librdkafka rejects the configuration.
    pub fn new(settings: &KafkaSettings, client_id: &str, chunk_window: Duration) -> Result<Self> {
        Ok(Self {
            producer: std::sync::Arc::new(BestEffortProducer::new(
                settings,
                &format!("{client_id}-progress"),
                "progress",
                MAX_QUEUE_KIB,
            )?),
            topic: settings.topics.progress.clone(),
            chunk_window,
        })
    }

    /// A new run (delivery) of task `task_id`, continuing `trace`.
    pub fn run(&self, task_id: Uuid, trace: Option<TraceContext>) -> RunProgress {
        RunProgress {
            publisher: Some(self.clone()),
            task_id,
            run_id: Uuid::new_v4(),
            trace,
            chunk: None,
            next_chunk_id: 0,
            last_flush: None,
        }
    }

    /// What was published, dropped and lost so far (for `/health`).
    pub fn stats(&self) -> BestEffortStats {
        self.producer.stats()
    }

    /// Waits up to `timeout` for queued events to be delivered (at shutdown).
    pub fn flush(&self, timeout: Duration) {
        self.producer.flush(timeout);
    }
}

/// Model output gathered for one `token` event.
#[derive(Debug)]
struct Chunk {
    node: String,
    text: String,
    /// When its first piece came.
    since: Instant,
}

/// One run's progress: what [`ProgressPublisher::run`] makes for each delivery of a task.
#[derive(Debug)]
pub struct RunProgress {
    /// `None`: publishes nothing (tests, tools).
    publisher: Option<ProgressPublisher>,
    task_id: Uuid,
    run_id: Uuid,
    /// The task's trace, which each event continues.
    trace: Option<TraceContext>,
    chunk: Option<Chunk>,
    next_chunk_id: u64,
    /// When a chunk was last published.
    last_flush: Option<Instant>,
}

impl RunProgress {
    /// A run whose progress goes nowhere.
    pub fn silent(task_id: Uuid) -> Self {
        Self {
            publisher: None,
            task_id,
            run_id: Uuid::new_v4(),
            trace: None,
            chunk: None,
            next_chunk_id: 0,
            last_flush: None,
        }
    }

    /// The run's id (`run_id` of its events).
    pub fn run_id(&self) -> Uuid {
        self.run_id
    }

    /// Publishes a `status` event.
    pub fn status(&mut self, status: RunStatus, reason: Option<String>) {
        self.flush_chunk();
        self.publish(Progress::Status { status, reason });
    }

    /// Publishes that the run paused for review: an `interrupt` event (what a stream's
    /// client shows the reviewer), then `status: interrupted` naming the interrupt in
    /// `reason`.
    pub fn interrupted(&mut self, interrupt: &TaskInterrupt) {
        self.flush_chunk();
        self.publish(Progress::Interrupt {
            interrupt: interrupt.clone(),
        });
        self.publish(Progress::Status {
            status: RunStatus::Interrupted,
            reason: Some(format!("waiting for review at {}", interrupt.id)),
        });
    }

    /// Publishes the `result` event (the run's last).
    pub fn result(&mut self, result: &TaskResult) {
        self.flush_chunk();
        self.publish(Progress::Result {
            result: result.clone(),
        });
    }

    /// Takes one event of the graph's stream: a node's start or end, a custom event, a
    /// piece of model output. `values` and `updates` events carry nothing to publish.
    pub fn on_event(&mut self, event: &StreamEvent<SolverState>) {
        match event {
            StreamEvent::Debug(DebugEvent::TaskStart { step, node, .. }) => {
                self.publish(Progress::Node {
                    node: node.clone(),
                    superstep: *step as u64,
                    phase: NodePhase::Started,
                    duration_ms: None,
                });
            }
            StreamEvent::Debug(DebugEvent::TaskEnd {
                step,
                node,
                elapsed,
                ..
            }) => {
                if self.chunk.as_ref().is_some_and(|c| &c.node == node) {
                    self.flush_chunk();
                }
                self.publish(Progress::Node {
                    node: node.clone(),
                    superstep: *step as u64,
                    phase: NodePhase::Finished,
                    duration_ms: Some(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)),
                });
            }
            StreamEvent::Custom { node, value } => {
                self.publish(Progress::Custom {
                    node: node.clone(),
                    value: value.clone(),
                });
            }
            StreamEvent::Messages { node, chunk } => self.token(node, chunk),
            StreamEvent::Values(_) | StreamEvent::Updates { .. } | StreamEvent::Interrupted(_) => {}
        }
    }

    /// When the chunk being gathered must be published ([`RunProgress::flush_chunk`]);
    /// `None` when there is none. A throttle with a leading edge: a piece that comes
    /// the chunk window (`STREAM_CHUNK_MS`) or more after the last chunk (the first piece
    /// of the run, above all: the time to the first token) is due at once; the pieces
    /// after it gather until a window after that.
    pub fn chunk_deadline(&self) -> Option<Instant> {
        let window = self.publisher.as_ref()?.chunk_window;
        let chunk = self.chunk.as_ref()?;
        Some(
            self.last_flush
                .map_or(chunk.since, |at| (at + window).max(chunk.since)),
        )
    }

    /// Publishes the chunk being gathered, if any.
    pub fn flush_chunk(&mut self) {
        let Some(Chunk { node, text, .. }) = self.chunk.take() else {
            return;
        };
        self.last_flush = Some(Instant::now());
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let end = rest
                .char_indices()
                .nth(MAX_CHUNK_CHARS)
                .map_or(rest.len(), |(at, _)| at);
            let (piece, after) = rest.split_at(end);
            let chunk_id = self.next_chunk_id;
            self.next_chunk_id += 1;
            self.publish(Progress::Token {
                node: node.clone(),
                chunk_id,
                chunk: piece.to_owned(),
            });
            rest = after;
        }
    }

    /// Adds a piece of `node`'s model output to the chunk, publishing the chunk first
    /// when it is another node's or its time is up.
    fn token(&mut self, node: &str, piece: &str) {
        if piece.is_empty() || self.publisher.is_none() {
            return;
        }
        let now = Instant::now();
        if self.chunk.as_ref().is_some_and(|c| c.node != node)
            || self.chunk_deadline().is_some_and(|due| now >= due)
        {
            self.flush_chunk();
        }
        match &mut self.chunk {
            Some(chunk) => chunk.text.push_str(piece),
            None => {
                self.chunk = Some(Chunk {
                    node: node.to_owned(),
                    text: piece.to_owned(),
                    since: now,
                });
            }
        }
        if self.chunk_deadline().is_some_and(|due| now >= due) {
            // The first piece after a quiet window (and, with a zero window, every
            // piece) goes at once.
            self.flush_chunk();
        }
    }

    fn publish(&self, body: Progress) {
        let Some(publisher) = &self.publisher else {
            return;
        };
        let event = ProgressEvent::now(self.task_id, self.run_id, body);
        if let Err(err) = event.validate() {
            tracing::warn!(kind = event.body.kind(), error = %err, "progress event out of bounds; not published");
            return;
        }
        let Ok(payload) = serde_json::to_vec(&event) else {
            return;
        };
        publisher.producer.send(
            &publisher.topic,
            None,
            &self.task_id.to_string(),
            &payload,
            // Each event a CloudEvent of its own (its own `ce_id`), in the task's trace.
            Some(CloudEvent::new(SERVICE, TASK_PROGRESS, self.trace).to_headers()),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use agent_runtime::kafka::partition_for_key;
    use rdkafka::{
        ClientConfig, Message, Offset, TopicPartitionList,
        consumer::{BaseConsumer, Consumer},
        mocking::MockCluster,
    };

    use super::*;

    const PARTITIONS: i32 = 3;

    fn publisher(bootstrap: &str, window: Duration) -> ProgressPublisher {
        let mut settings = KafkaSettings::for_brokers(bootstrap);
        settings.topics.progress = "progress".into();
        ProgressPublisher::new(&settings, "test", window).expect("publisher")
    }

    /// Every progress record of the topic, with its partition, in order per partition.
    fn read_back(bootstrap: &str, count: usize) -> Vec<(i32, ProgressEvent)> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "check")
            .create()
            .expect("consumer");
        let mut list = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            list.add_partition_offset("progress", partition, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&list).expect("assign");
        let mut found = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while found.len() < count && Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                let event = ProgressEvent::from_json(message.payload().unwrap_or_default())
                    .expect("a valid progress event");
                found.push((message.partition(), event));
            }
        }
        found
    }

    fn token(chunk: &str) -> StreamEvent<SolverState> {
        StreamEvent::Messages {
            node: "solve".into(),
            chunk: chunk.into(),
        }
    }

    fn node_event(start: bool) -> StreamEvent<SolverState> {
        StreamEvent::Debug(if start {
            DebugEvent::TaskStart {
                step: 1,
                task_id: "1:solve:0".into(),
                node: "solve".into(),
                attempt: 1,
            }
        } else {
            DebugEvent::TaskEnd {
                step: 1,
                task_id: "1:solve:0".into(),
                node: "solve".into(),
                attempt: 1,
                elapsed: Duration::from_millis(7),
                error: None,
            }
        })
    }

    fn describe(event: &ProgressEvent) -> String {
        match &event.body {
            Progress::Status { status, .. } => format!("status {status:?}"),
            Progress::Node { node, phase, .. } => format!("node {node} {phase:?}"),
            Progress::Token {
                chunk_id, chunk, ..
            } => format!("token {chunk_id} {chunk}"),
            Progress::Custom { value, .. } => format!("custom {value}"),
            Progress::Interrupt { interrupt } => format!("interrupt {}", interrupt.id),
            Progress::Result { .. } => "result".into(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_publishes_its_events_in_order_on_the_task_s_partition_tokens_gathered() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster
            .create_topic("progress", PARTITIONS, 1)
            .expect("topic");
        let bootstrap = cluster.bootstrap_servers();
        let publisher = publisher(&bootstrap, Duration::from_secs(3600));
        let task_id = Uuid::new_v4();
        let mut run = publisher.run(task_id, None);
        run.status(RunStatus::Running, None);
        run.on_event(&node_event(true));
        for piece in ["Hel", "lo", ", ", "world"] {
            run.on_event(&token(piece));
        }
        assert!(
            run.chunk_deadline().is_some(),
            "after the first piece, went at once, a chunk is being gathered"
        );
        run.on_event(&StreamEvent::Custom {
            node: "solve".into(),
            value: serde_json::json!({"step": 2}),
        });
        run.on_event(&node_event(false));
        assert!(
            run.chunk_deadline().is_none(),
            "the node's end published it"
        );
        run.status(RunStatus::Completed, None);
        publisher.flush(Duration::from_secs(10));

        let events = read_back(&bootstrap, 7);
        let described: Vec<String> = events.iter().map(|(_, e)| describe(e)).collect();
        assert_eq!(
            described,
            [
                "status Running",
                "node solve Started",
                "token 0 Hel",
                r#"custom {"step":2}"#,
                "token 1 lo, world",
                "node solve Finished",
                "status Completed",
            ]
        );
        let key_partition = partition_for_key(task_id.to_string().as_bytes(), PARTITIONS);
        assert!(
            events
                .iter()
                .all(|(partition, event)| *partition == key_partition
                    && event.task_id == task_id
                    && event.run_id == run.run_id())
        );
        assert_eq!(publisher.stats().delivered, 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_zero_window_publishes_each_piece_and_a_long_chunk_is_split() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster
            .create_topic("progress", PARTITIONS, 1)
            .expect("topic");
        let bootstrap = cluster.bootstrap_servers();
        let publisher = publisher(&bootstrap, Duration::ZERO);
        let mut run = publisher.run(Uuid::new_v4(), None);
        run.on_event(&token("a"));
        run.on_event(&token("b"));
        assert!(
            run.chunk_deadline().is_none(),
            "nothing waits with a zero window"
        );
        let long = "é".repeat(MAX_CHUNK_CHARS + 10);
        let mut slow = publisher_run_with_window(&publisher, Duration::from_secs(3600));
        slow.on_event(&token(&long));
        slow.flush_chunk();
        publisher.flush(Duration::from_secs(10));

        let events = read_back(&bootstrap, 4);
        let tokens: Vec<(Uuid, u64, usize)> = events
            .iter()
            .filter_map(|(_, e)| match &e.body {
                Progress::Token {
                    chunk_id, chunk, ..
                } => Some((e.run_id, *chunk_id, chunk.chars().count())),
                _ => None,
            })
            .collect();
        assert!(tokens.contains(&(run.run_id(), 0, 1)));
        assert!(tokens.contains(&(run.run_id(), 1, 1)));
        assert!(tokens.contains(&(slow.run_id(), 0, MAX_CHUNK_CHARS)));
        assert!(tokens.contains(&(slow.run_id(), 1, 10)));
    }

    fn publisher_run_with_window(publisher: &ProgressPublisher, window: Duration) -> RunProgress {
        let mut other = publisher.clone();
        other.chunk_window = window;
        other.run(Uuid::new_v4(), None)
    }

    #[test]
    fn a_silent_run_publishes_nothing_and_gathers_nothing() {
        let mut run = RunProgress::silent(Uuid::new_v4());
        run.on_event(&token("ignored"));
        assert!(run.chunk_deadline().is_none());
        run.status(RunStatus::Running, None);
    }
}
