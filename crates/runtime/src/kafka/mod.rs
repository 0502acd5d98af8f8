//! Kafka: topic names, client properties (TLS and SASL included), producer, at-least-once
//! consumer loop, CloudEvents headers, topic creation and the broker watch behind `/health`.
//!
//! Values are JSON; keys are task ids, so every message of one task lands on one
//! partition, in order. Headers carry CloudEvents binary-mode attributes and a W3C
//! `traceparent` ([`headers`]).

mod admin;
mod best_effort;
mod consumer;
pub mod headers;
mod offsets;
mod producer;
mod progress;
mod security;
mod settings;
mod watch;

pub use admin::{
    PROGRESS_TOPIC_CONFIGS, RESULTS_TOPIC_CONFIGS, TopicSpec, ensure_service_topics, ensure_topics,
};
pub use best_effort::{BestEffortProducer, BestEffortStats, partition_for_key};
pub use consumer::{
    AssignmentWatch, ClosingConsumer, ConsumerOptions, DEAD_LETTER_PREFIX_BYTES, GroupReader,
    LogBounds, MAX_DEAD_LETTER_BYTES, MAX_DEAD_LETTER_REASON_BYTES, Outcome, Ownership,
    PartitionLookup, TopicReader, log_bounds, partitions_of, run_at_least_once,
};
pub use headers::CloudEvent;
pub use producer::{Delivery, Producer};
pub use progress::{ConsumerProgress, Stall};
pub use security::{SaslMechanism, SecurityProtocol};
pub use settings::KafkaSettings;
pub use watch::{BrokerStatus, BrokerWatch};

/// The largest record (key, value and headers) the services build on their own account
/// — results and dead-letter records — in bytes (900 KiB): under what the producer
/// accepts ([`Producer::MAX_RECORD_BYTES`], just under 1 MB) with room for the headers
/// added around them.
pub const MAX_OWN_RECORD_BYTES: usize = 900 * 1024;

/// The topic names in force (see the README's Kafka contract).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Topics {
    /// Tasks: `KAFKA_TOPIC`, default `{prefix}-langgraph-agent-events`.
    pub events: String,
    /// Results: `KAFKA_RESULTS_TOPIC`, default `{prefix}-langgraph-task-results`.
    pub results: String,
    /// Poison messages: `KAFKA_DEAD_LETTER_TOPIC`, default `{prefix}-langgraph-dead-letter`.
    pub dead_letter: String,
    /// What tasks' runs report while they go
    /// ([`ProgressEvent`](agent_core::task::ProgressEvent)): `KAFKA_PROGRESS_TOPIC`,
    /// default `{prefix}-langgraph-task-progress`.
    pub progress: String,
}

impl Topics {
    /// Topic names from a prefix and optional overrides.
    pub fn new(
        prefix: &str,
        events: Option<String>,
        results: Option<String>,
        dead_letter: Option<String>,
        progress: Option<String>,
    ) -> Self {
        let named = |suffix: &str| {
            if prefix.is_empty() {
                format!("langgraph-{suffix}")
            } else {
                format!("{prefix}-langgraph-{suffix}")
            }
        };
        Self {
            events: events.unwrap_or_else(|| named("agent-events")),
            results: results.unwrap_or_else(|| named("task-results")),
            dead_letter: dead_letter.unwrap_or_else(|| named("dead-letter")),
            progress: progress.unwrap_or_else(|| named("task-progress")),
        }
    }

    /// All four names.
    pub fn all(&self) -> [&str; 4] {
        [
            &self.events,
            &self.results,
            &self.dead_letter,
            &self.progress,
        ]
    }
}

/// Kafka's rule for topic names ([`valid_topic_name`]) as an ECMA-262 regular
/// expression, for the `pattern` of a topic in an OpenAPI document.
pub const TOPIC_NAME_PATTERN: &str = r"^(?!\.\.?$)[a-zA-Z0-9._-]{1,249}$";

/// Kafka's rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, and not `.` or `..`
/// ([`TOPIC_NAME_PATTERN`]).
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
