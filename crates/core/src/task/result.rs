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
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Published; no result yet.
    Pending,
    /// Solved; the result carries the answer.
    Completed,
    /// Given up; the result carries the reason.
    Failed,
}

impl TaskStatus {
    /// The wire name: `pending`, `completed` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

impl std::str::FromStr for TaskStatus {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "pending" => Ok(Self::Pending),
            "completed" => Ok(Self::Completed),
            "failed" => Ok(Self::Failed),
            other => Err(Error::Invalid {
                field: "status",
                reason: format!("{other:?} is not one of pending, completed, failed"),
            }),
        }
    }
}

/// LLM tokens spent, as the OpenAI API counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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

/// The outcome of one task: the value of a message on the results topic, keyed by
/// `task_id`.
///
/// `status` is `completed` (with `result`) or `failed` (with `error`); never `pending`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TaskResult {
    /// The task this answers.
    pub task_id: Uuid,
    /// The task's name, for listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_name: Option<String>,
    /// `completed` or `failed`.
    pub status: TaskStatus,
    /// The answer, when completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Why it failed, when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
    /// needs `error`, `pending` is not a result; texts are bounded.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field.
    pub fn validate(&self) -> Result<()> {
        match (self.status, &self.result, &self.error) {
            (TaskStatus::Pending, ..) => Err(Error::Invalid {
                field: "status",
                reason: "a result is completed or failed, not pending".into(),
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
