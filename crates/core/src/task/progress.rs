//! [`ProgressEvent`]: what a task's run reports while it goes — the value of a record on
//! the progress topic (`{prefix}-langgraph-task-progress`), keyed by `task_id`, so one
//! task's events are ordered in one partition.
//!
//! A run of a task (one delivery of it to a solver, [`ProgressEvent::run_id`]) reports
//! `status` `running`, then its graph's `node` starts and finishes, the model's output
//! as `token` chunks, what nodes emit as `custom` events, a last `status`, and the
//! `result`. A task delivered twice (a solver crashed mid-task) has two runs; their
//! events follow each other in the partition, told apart by `run_id`.
//!
//! The shapes follow LangGraph's stream modes (`custom` is its `custom` mode; `node`
//! its `debug` mode's task start and result), flattened into one tagged record.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{MAX_TAG_CHARS, TaskInterrupt, TaskResult};
use crate::{Error, Result};

/// Longest `chunk` of a `token` event, in characters (a chunk that would be longer is
/// split).
pub const MAX_CHUNK_CHARS: usize = 16_384;

/// Largest `value` of a `custom` event, in bytes of JSON.
pub const MAX_CUSTOM_BYTES: usize = 64 * 1024;

/// Largest progress record read, in bytes: one `result` event (a result of at most
/// 200 000 characters of up to 4 bytes each, with room for the rest).
pub const MAX_PROGRESS_BYTES: usize = 900 * 1024;

/// One event of a task's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProgressEvent {
    /// The task.
    pub task_id: Uuid,
    /// The run (one delivery of the task to a solver): events of a redelivered task's
    /// runs are told apart by it.
    pub run_id: Uuid,
    /// When the solver sent the event (RFC 3339, UTC).
    pub at: DateTime<Utc>,
    /// What happened; its `event` field names the kind.
    #[serde(flatten)]
    pub body: Progress,
}

/// What a [`ProgressEvent`] reports, tagged by `event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Progress {
    /// The run's status changed.
    Status {
        /// `running`, `interrupted`, `completed` or `failed`.
        status: RunStatus,
        /// Why, for `failed` and `interrupted`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A graph node started or finished.
    Node {
        /// The node's name.
        node: String,
        /// The superstep it ran in (from 0).
        superstep: u64,
        /// `started` or `finished`.
        phase: NodePhase,
        /// How long it ran, in milliseconds (`finished` only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
    },
    /// A piece of the model's output, as it was written.
    Token {
        /// The node whose model call wrote it.
        node: String,
        /// The chunk's number in the run, from 0, without gaps: chunks in `chunk_id`
        /// order concatenate to the node's output.
        chunk_id: u64,
        /// The text, at most [`MAX_CHUNK_CHARS`] characters.
        chunk: String,
    },
    /// What a node emitted (`RunContext::emit`).
    Custom {
        /// The node.
        node: String,
        /// What it emitted: any JSON, at most [`MAX_CUSTOM_BYTES`].
        value: Value,
    },
    /// The run paused for a person at this interrupt (human review); a resume carries
    /// it on in a new run.
    Interrupt {
        /// Where it paused and what it shows, e.g. `{"plan": "…"}`.
        interrupt: TaskInterrupt,
    },
    /// The task's result: the run's last event.
    Result {
        /// The result, as published on the results topic.
        result: TaskResult,
    },
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// A solver took the task and is working on it.
    Running,
    /// The run waits for a person (human review).
    Interrupted,
    /// The run solved the task.
    Completed,
    /// The run gave up.
    Failed,
}

/// Whether a node started or finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodePhase {
    /// It started.
    Started,
    /// It finished.
    Finished,
}

impl Progress {
    /// The kind's wire name, the value of `event`: `status`, `node`, `token`, `custom` or
    /// `result` (also the SSE event name).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Status { .. } => "status",
            Self::Node { .. } => "node",
            Self::Token { .. } => "token",
            Self::Custom { .. } => "custom",
            Self::Interrupt { .. } => "interrupt",
            Self::Result { .. } => "result",
        }
    }
}

impl ProgressEvent {
    /// An event of run `run_id` of `task_id`, now.
    pub fn now(task_id: Uuid, run_id: Uuid, body: Progress) -> Self {
        Self {
            task_id,
            run_id,
            at: Utc::now(),
            body,
        }
    }

    /// Checks the bounds: names and reasons of at most 200 characters, chunks of at
    /// most [`MAX_CHUNK_CHARS`], custom values of at most [`MAX_CUSTOM_BYTES`], a
    /// result for this task.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field out of bounds.
    pub fn validate(&self) -> Result<()> {
        let too_long = |field: &'static str, text: &str, max: usize| {
            if text.chars().count() > max {
                Err(Error::Invalid {
                    field,
                    reason: format!("longer than {max} characters"),
                })
            } else {
                Ok(())
            }
        };
        match &self.body {
            Progress::Status { reason, .. } => too_long(
                "reason",
                reason.as_deref().unwrap_or_default(),
                MAX_TAG_CHARS,
            ),
            Progress::Node { node, .. } => too_long("node", node, MAX_TAG_CHARS),
            Progress::Token { node, chunk, .. } => {
                too_long("node", node, MAX_TAG_CHARS)?;
                too_long("chunk", chunk, MAX_CHUNK_CHARS)
            }
            Progress::Custom { node, value } => {
                too_long("node", node, MAX_TAG_CHARS)?;
                let bytes = serde_json::to_vec(value).map_or(usize::MAX, |v| v.len());
                if bytes > MAX_CUSTOM_BYTES {
                    return Err(Error::Invalid {
                        field: "value",
                        reason: format!("{bytes} bytes of JSON, more than {MAX_CUSTOM_BYTES}"),
                    });
                }
                Ok(())
            }
            Progress::Interrupt { interrupt } => interrupt.validate(),
            Progress::Result { result } if result.task_id != self.task_id => Err(Error::Invalid {
                field: "result",
                reason: "the result is of another task".into(),
            }),
            Progress::Result { .. } => Ok(()),
        }
    }

    /// Parses and validates a progress record's value (hostile until checked).
    ///
    /// # Errors
    /// [`Error::Invalid`] when it is larger than [`MAX_PROGRESS_BYTES`], is not a
    /// progress event, or breaks a bound of [`ProgressEvent::validate`].
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_PROGRESS_BYTES {
            return Err(Error::Invalid {
                field: "progress",
                reason: format!("{} bytes, more than {MAX_PROGRESS_BYTES}", bytes.len()),
            });
        }
        let event: Self = serde_json::from_slice(bytes).map_err(|err| Error::Invalid {
            field: "progress",
            reason: err.to_string(),
        })?;
        event.validate()?;
        Ok(event)
    }
}

/// The JSON Schema (draft 2020-12) of [`ProgressEvent`], as written to
/// `docs/schemas/task-progress.json`.
pub fn progress_schema() -> Value {
    schemars::schema_for!(ProgressEvent).to_value()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ids() -> (Uuid, Uuid) {
        (
            Uuid::parse_str("0d6f2c58-8a5e-4b8e-9c7e-1f2a3b4c5d6e").expect("uuid"),
            Uuid::parse_str("9a1b2c3d-4e5f-4a7b-8c9d-0e1f2a3b4c5d").expect("uuid"),
        )
    }

    #[test]
    fn a_token_event_is_one_flat_record_tagged_by_event() {
        let (task, run) = ids();
        let mut event = ProgressEvent::now(
            task,
            run,
            Progress::Token {
                node: "solve".into(),
                chunk_id: 3,
                chunk: "Hello".into(),
            },
        );
        event.at = DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let value = serde_json::to_value(&event).expect("serializes");
        assert_eq!(
            value,
            json!({
                "task_id": task, "run_id": run, "at": "2026-11-30T12:00:00Z",
                "event": "token", "node": "solve", "chunk_id": 3, "chunk": "Hello",
            })
        );
        assert_eq!(event.body.kind(), "token");
        let back =
            ProgressEvent::from_json(&serde_json::to_vec(&value).expect("bytes")).expect("parses");
        assert_eq!(back, event);
    }

    #[test]
    fn every_kind_round_trips() {
        let (task, run) = ids();
        let bodies = [
            Progress::Status {
                status: RunStatus::Running,
                reason: None,
            },
            Progress::Node {
                node: "plan".into(),
                superstep: 0,
                phase: NodePhase::Finished,
                duration_ms: Some(12),
            },
            Progress::Custom {
                node: "plan".into(),
                value: json!({"steps": 3}),
            },
        ];
        for body in bodies {
            let kind = body.kind();
            let event = ProgressEvent::now(task, run, body);
            let bytes = serde_json::to_vec(&event).expect("serializes");
            let value: Value = serde_json::from_slice(&bytes).expect("json");
            assert_eq!(value["event"], kind);
            assert_eq!(ProgressEvent::from_json(&bytes).expect("parses"), event);
        }
    }

    #[test]
    fn hostile_records_are_refused() {
        let (task, run) = ids();
        let long = ProgressEvent::now(
            task,
            run,
            Progress::Token {
                node: "solve".into(),
                chunk_id: 0,
                chunk: "x".repeat(MAX_CHUNK_CHARS + 1),
            },
        );
        let err = ProgressEvent::from_json(&serde_json::to_vec(&long).expect("bytes"))
            .expect_err("a chunk too long");
        assert!(err.to_string().contains("chunk"), "{err}");

        let big = ProgressEvent::now(
            task,
            run,
            Progress::Custom {
                node: "n".into(),
                value: json!("y".repeat(MAX_CUSTOM_BYTES)),
            },
        );
        assert!(big.validate().is_err(), "a custom value too large");

        let huge = vec![b' '; MAX_PROGRESS_BYTES + 1];
        assert!(
            ProgressEvent::from_json(&huge).is_err(),
            "a record too large"
        );
        assert!(ProgressEvent::from_json(br#"{"event": "token"}"#).is_err());
        assert!(
            ProgressEvent::from_json(
                serde_json::to_vec(&json!({
                    "task_id": task, "run_id": run, "at": "2026-11-30T12:00:00Z",
                    "event": "explode",
                }))
                .expect("bytes")
                .as_slice()
            )
            .is_err(),
            "an unknown kind"
        );
    }
}
