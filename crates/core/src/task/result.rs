//! [`TaskResult`], [`TaskStatus`] and [`TokenUsage`].

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Task, check_text};
use crate::{Error, Result};

/// Longest accepted `result` or `error` text, in characters.
pub const MAX_OUTPUT_CHARS: usize = 200_000;

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Published; no result yet.
    Pending,
    /// Solved; the result carries the answer.
    Completed,
    /// Given up; the result carries the reason.
    Failed,
    /// Paused for a person (human review); the result carries the
    /// [`interrupt`](TaskResult::interrupt) to answer. Not final: a resumed task
    /// ends `completed` or `failed`, or pauses again.
    Interrupted,
}

impl TaskStatus {
    /// The wire name: `pending`, `completed`, `failed` or `interrupted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    /// Whether the task is over: `completed` or `failed`.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

impl std::str::FromStr for TaskStatus {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "pending" => Ok(Self::Pending),
            "completed" => Ok(Self::Completed),
            "failed" => Ok(Self::Failed),
            "interrupted" => Ok(Self::Interrupted),
            other => Err(Error::Invalid {
                field: "status",
                reason: format!("{other:?} is not one of pending, completed, failed, interrupted"),
            }),
        }
    }
}

/// LLM tokens spent, as the OpenAI API counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenUsage {
    /// Tokens in the prompts.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// `prompt_tokens + completion_tokens`.
    pub total_tokens: u32,
}

impl std::ops::AddAssign for TokenUsage {
    fn add_assign(&mut self, other: Self) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
    }
}

/// Largest `interrupt.value` of a result, as JSON bytes.
pub const MAX_INTERRUPT_VALUE_BYTES: usize = 64 * 1024;

/// Where a run paused for a person (LangGraph's `Interrupt`): the `interrupt` of an
/// `interrupted` [`TaskResult`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskInterrupt {
    /// Names this pause: a resume may name it, and is refused when the task has since
    /// paused again (strict resume).
    pub id: String,
    /// The graph node that paused, e.g. `review`.
    pub node: String,
    /// What the node shows for review, e.g. `{"plan": "1. …"}` (at most
    /// [`MAX_INTERRUPT_VALUE_BYTES`] as JSON).
    pub value: serde_json::Value,
}

impl TaskInterrupt {
    /// Checks the bounds: `id` and `node` 1 to 200 characters, `value` at most
    /// [`MAX_INTERRUPT_VALUE_BYTES`] of JSON.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field.
    pub fn validate(&self) -> Result<()> {
        check_text("interrupt.id", &self.id, 1, super::MAX_TAG_CHARS)?;
        check_text("interrupt.node", &self.node, 1, super::MAX_TAG_CHARS)?;
        let bytes = serde_json::to_vec(&self.value).map_or(usize::MAX, |v| v.len());
        if bytes > MAX_INTERRUPT_VALUE_BYTES {
            return Err(Error::Invalid {
                field: "interrupt.value",
                reason: format!(
                    "is {bytes} bytes of JSON, at most {MAX_INTERRUPT_VALUE_BYTES} are allowed"
                ),
            });
        }
        Ok(())
    }
}

/// The outcome of one task: the value of a message on the results topic, keyed by
/// `task_id`.
///
/// `status` is `completed` (with `result`), `failed` (with `error`) or `interrupted`
/// (with `interrupt`: the task waits for a person, and a later result follows); never
/// `pending`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "task_id": "0d6f5b8e-8a43-4c1e-9a55-3f1f4e2b7c10",
    "task_name": "Project help",
    "status": "completed",
    "result": "1. List the parts of the project. 2. Start with the smallest.",
    "solver_id": "task-solver-7d9c",
    "attempts": 1,
    "started_at": "2026-11-21T13:27:24.300Z",
    "finished_at": "2026-11-21T13:27:26.900Z",
    "usage": {"prompt_tokens": 180, "completion_tokens": 300, "total_tokens": 480}
})))]
pub struct TaskResult {
    /// The task this answers.
    pub task_id: Uuid,
    /// The task's name, for listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_name: Option<String>,
    /// `completed`, `failed` or `interrupted`.
    pub status: TaskStatus,
    /// The answer, when completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Why it failed, when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where it paused, when interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupt: Option<TaskInterrupt>,
    /// Which solver instance produced this result.
    pub solver_id: String,
    /// How many times the task was attempted (1 on the first delivery).
    pub attempts: u32,
    /// When solving began (RFC 3339, UTC).
    pub started_at: DateTime<Utc>,
    /// When solving ended (RFC 3339, UTC).
    pub finished_at: DateTime<Utc>,
    /// Tokens the solver spent on this task.
    #[serde(default)]
    pub usage: TokenUsage,
}

impl TaskResult {
    /// A `completed` result for `task`.
    pub fn completed(
        task: &Task,
        result: impl Into<String>,
        solver_id: impl Into<String>,
        started_at: DateTime<Utc>,
        usage: TokenUsage,
    ) -> Self {
        Self::finished(task, solver_id, started_at, usage, Ok(result.into()))
    }

    /// A `failed` result for `task`, carrying `error` as the reason.
    pub fn failed(
        task: &Task,
        error: impl Into<String>,
        solver_id: impl Into<String>,
        started_at: DateTime<Utc>,
        usage: TokenUsage,
    ) -> Self {
        Self::finished(task, solver_id, started_at, usage, Err(error.into()))
    }

    /// An `interrupted` result for `task`: it waits at `interrupt` for a person.
    pub fn interrupted(
        task: &Task,
        interrupt: TaskInterrupt,
        solver_id: impl Into<String>,
        started_at: DateTime<Utc>,
        usage: TokenUsage,
    ) -> Self {
        Self {
            task_id: task.task_id,
            task_name: Some(task.task_name.clone()),
            status: TaskStatus::Interrupted,
            result: None,
            error: None,
            interrupt: Some(interrupt),
            solver_id: solver_id.into(),
            attempts: 1,
            started_at,
            finished_at: Utc::now(),
            usage,
        }
    }

    fn finished(
        task: &Task,
        solver_id: impl Into<String>,
        started_at: DateTime<Utc>,
        usage: TokenUsage,
        outcome: std::result::Result<String, String>,
    ) -> Self {
        let (status, result, error) = match outcome {
            Ok(result) => (TaskStatus::Completed, Some(result), None),
            Err(error) => (TaskStatus::Failed, None, Some(error)),
        };
        Self {
            task_id: task.task_id,
            task_name: Some(task.task_name.clone()),
            status,
            result,
            error,
            interrupt: None,
            solver_id: solver_id.into(),
            attempts: 1,
            started_at,
            finished_at: Utc::now(),
            usage,
        }
    }

    /// Parses and validates a message value from the results topic.
    ///
    /// # Errors
    /// [`Error::Json`] for malformed JSON, [`Error::Invalid`] for a result that breaks
    /// the rules of [`TaskResult::validate`].
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let result: Self = serde_json::from_slice(bytes)?;
        result.validate()?;
        Ok(result)
    }

    /// Checks the status and its companion field: `completed` needs `result`, `failed`
    /// needs `error`, `interrupted` needs `interrupt` (and only it has one), `pending`
    /// is not a result; texts and the interrupt are bounded.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field.
    pub fn validate(&self) -> Result<()> {
        match (&self.interrupt, self.status) {
            (None, TaskStatus::Interrupted) => {
                return Err(Error::Invalid {
                    field: "interrupt",
                    reason: "an interrupted result needs an interrupt".into(),
                });
            }
            (Some(_), status) if status != TaskStatus::Interrupted => {
                return Err(Error::Invalid {
                    field: "interrupt",
                    reason: "only an interrupted result has an interrupt".into(),
                });
            }
            (Some(interrupt), _) => interrupt.validate()?,
            (None, _) => {}
        }
        match (self.status, &self.result, &self.error) {
            (TaskStatus::Pending, ..) => Err(Error::Invalid {
                field: "status",
                reason: "a result is completed, failed or interrupted, not pending".into(),
            }),
            (TaskStatus::Completed, None, _) => Err(Error::Invalid {
                field: "result",
                reason: "a completed result needs a result".into(),
            }),
            (TaskStatus::Failed, _, None) => Err(Error::Invalid {
                field: "error",
                reason: "a failed result needs an error".into(),
            }),
            (_, result, error) => {
                for (field, text) in [("result", result), ("error", error)] {
                    if let Some(text) = text {
                        check_text(field, text, 0, MAX_OUTPUT_CHARS)?;
                    }
                }
                check_text("solver_id", &self.solver_id, 1, super::MAX_TAG_CHARS)
            }
        }
    }
}
