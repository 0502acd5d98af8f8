//! The task schema: what travels on the events and results topics.
//!
//! - [`Task`]: a unit of work, keyed by `task_id` on `{prefix}-langgraph-agent-events`.
//! - [`TaskDraft`]: what producers may send — either a full [`Task`] or the plain JSON the
//!   Python system wrote (`{"task_name", "task_description", "context"}`, no id).
//! - [`TaskResult`]: the outcome of a task, keyed by `task_id` on
//!   `{prefix}-langgraph-task-results`.
//! - [`TaskStatus`]: `pending`, `completed`, `failed` or `interrupted`.
//! - [`ResumeRequest`]: a person's [`Review`] of a task paused for review, keyed by
//!   `task_id` on the events topic.
//! - [`ProgressEvent`]: what a task's run reports while it goes, keyed by `task_id` on
//!   `{prefix}-langgraph-task-progress`.
//!
//! JSON Schemas of [`Task`], [`TaskResult`] and [`ProgressEvent`] are in `docs/schemas/` (kept up to date by a
//! test; regenerate with `UPDATE_SCHEMAS=1 cargo test -p agent-core`).

mod progress;
mod result;
mod resume;
mod schema;

pub use progress::{
    MAX_CHUNK_CHARS, MAX_CUSTOM_BYTES, MAX_PROGRESS_BYTES, NodePhase, Progress, ProgressEvent,
    RunStatus, progress_schema,
};
pub use result::{
    MAX_INTERRUPT_VALUE_BYTES, MAX_OUTPUT_CHARS, TaskInterrupt, TaskResult, TaskStatus, TokenUsage,
};
pub use resume::{MAX_FEEDBACK_CHARS, MAX_PLAN_CHARS, ResumeRequest, Review};
pub use schema::{llm_task_schema, task_result_schema, task_schema};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::{Error, Result};

/// Longest accepted `task_name`, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest accepted `task_description`, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 20_000;
/// Longest accepted `context`, in characters.
pub const MAX_CONTEXT_CHARS: usize = 100_000;
/// Longest accepted `source` or `conversation_id`, in characters.
pub const MAX_TAG_CHARS: usize = 200;

/// A unit of work for the solver agents.
///
/// Build one with [`Task::new`] or [`TaskDraft::into_task`]; both validate. The JSON form is
/// the value of a message on the events topic, keyed by `task_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "task_id": "0d6f5b8e-8a43-4c1e-9a55-3f1f4e2b7c10",
    "task_name": "Project help",
    "task_description": "Help the user with their project.",
    "context": "The user needs help with a project.",
    "created_at": "2026-11-21T13:27:24.100Z",
    "source": "task-generator"
})))]
pub struct Task {
    /// Unique id; the Kafka message key, and the id results are looked up by.
    pub task_id: Uuid,
    /// Short title, 1 to 200 characters.
    pub task_name: String,
    /// What is to be done, 1 to 20 000 characters.
    pub task_description: String,
    /// Background the solver needs, at most 100 000 characters (may be empty).
    #[serde(default)]
    pub context: String,
    /// When the task was created (RFC 3339, UTC).
    pub created_at: DateTime<Utc>,
    /// Who created it, e.g. `task-generator` or `agent-comms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The conversation the task came from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// Whether a person reviews the solver's plan before it is carried out: the task
    /// pauses after `plan` (an `interrupted` result) until resumed with a
    /// [`ResumeRequest`]. Written only when `true`; absent is `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub human_review: bool,
}

impl Task {
    /// A new task with a fresh random id, created now.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field when a field is empty or too long.
    pub fn new(
        task_name: impl Into<String>,
        task_description: impl Into<String>,
        context: impl Into<String>,
    ) -> Result<Self> {
        TaskDraft {
            task_name: task_name.into(),
            task_description: task_description.into(),
            context: context.into(),
            ..TaskDraft::default()
        }
        .into_task(Uuid::new_v4)
    }

    /// Parses a message value: a full task or the Python system's plain JSON task.
    ///
    /// `default_id` gives the id of a task that carries none; pass a function of the
    /// message's position ([`Task::id_for_offset`]) so a redelivered message keeps its id.
    ///
    /// # Errors
    /// [`Error::Json`] for bytes that are not a JSON task object, [`Error::Invalid`] for a
    /// task that fails validation.
    pub fn from_json(bytes: &[u8], default_id: impl FnOnce() -> Uuid) -> Result<Self> {
        let draft: TaskDraft = serde_json::from_slice(bytes)?;
        draft.into_task(default_id)
    }

    /// A deterministic id for an id-less task read at `topic`/`partition`/`offset`
    /// (UUID v5), so every delivery of the same message yields the same task id.
    pub fn id_for_offset(topic: &str, partition: i32, offset: i64) -> Uuid {
        let name = format!("{topic}/{partition}/{offset}");
        Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
    }

    /// Checks every field's bounds.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first field out of bounds.
    pub fn validate(&self) -> Result<()> {
        check_text("task_name", &self.task_name, 1, MAX_NAME_CHARS)?;
        check_text(
            "task_description",
            &self.task_description,
            1,
            MAX_DESCRIPTION_CHARS,
        )?;
        check_text("context", &self.context, 0, MAX_CONTEXT_CHARS)?;
        if let Some(source) = &self.source {
            check_text("source", source, 1, MAX_TAG_CHARS)?;
        }
        if let Some(conversation_id) = &self.conversation_id {
            check_text("conversation_id", conversation_id, 1, MAX_TAG_CHARS)?;
        }
        Ok(())
    }
}

/// A task as producers may write it: only `task_name` and `task_description` are required.
///
/// This is the Python system's format (`{"task_name", "task_description", "context"}`),
/// extended with the optional fields of [`Task`]. `context` may be any JSON value; a
/// non-string context is kept as its compact JSON text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TaskDraft {
    /// See [`Task::task_id`]; assigned when missing.
    #[serde(default)]
    pub task_id: Option<Uuid>,
    /// See [`Task::task_name`].
    pub task_name: String,
    /// See [`Task::task_description`].
    pub task_description: String,
    /// See [`Task::context`].
    #[serde(default, deserialize_with = "any_json_as_text")]
    pub context: String,
    /// See [`Task::created_at`]; now when missing.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// See [`Task::source`].
    #[serde(default)]
    pub source: Option<String>,
    /// See [`Task::conversation_id`].
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// See [`Task::human_review`].
    #[serde(default)]
    pub human_review: bool,
}

impl TaskDraft {
    /// Completes and validates the draft: trims the name, assigns `default_id()` when no
    /// id was given and `created_at` = now when no time was given.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the field out of bounds.
    pub fn into_task(self, default_id: impl FnOnce() -> Uuid) -> Result<Task> {
        let task = Task {
            task_id: self.task_id.unwrap_or_else(default_id),
            task_name: self.task_name.trim().to_owned(),
            task_description: self.task_description.trim().to_owned(),
            context: self.context,
            created_at: self.created_at.unwrap_or_else(Utc::now),
            source: self.source,
            conversation_id: self.conversation_id,
            human_review: self.human_review,
        };
        task.validate()?;
        Ok(task)
    }
}

/// Checks that `value` has between `min` and `max` characters, and is not all blanks when
/// `min > 0`.
fn check_text(field: &'static str, value: &str, min: usize, max: usize) -> Result<()> {
    let chars = value.chars().count();
    if min > 0 && value.trim().is_empty() {
        return Err(Error::Invalid {
            field,
            reason: "must not be empty".into(),
        });
    }
    if chars > max {
        return Err(Error::Invalid {
            field,
            reason: format!("has {chars} characters, at most {max} are allowed"),
        });
    }
    Ok(())
}

fn any_json_as_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests;
