//! The HTTP routes of task-generator (the Python system's, same paths and fields).
//!
//! - `POST /generate-task` `{"conversation_history": "User: …"}` (or a list of
//!   `{role, content}`) → 200 `{"task_id", "task", "status": "pending", "topic",
//!   "partition", "offset"}`, once the broker acknowledged the task. 4xx for bad input,
//!   502 when the model fails, 503 when the broker does not acknowledge in time.
//! - `GET /task-results?status=&limit=` → `{"count", "results": [TaskView…]}`, newest
//!   first (default limit 50, at most 1000).
//! - `GET /task-result/{task_id}` → a [`TaskView`]: `pending`, then `completed` or
//!   `failed` with the result; 400 for a malformed id, 404 for an unknown one.

use std::time::Duration;

use agent_core::{graph::CompiledGraph, task::TaskStatus};
use agent_runtime::http::{self, ApiError, Health, Json, health_routes};
use axum::{
    Router,
    extract::{Path, Query, State},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    generation::{self, Conversation, GenerationError, GenerationState},
    view::{ResultsView, TaskView},
};

/// Longest accepted conversation, in characters.
pub const MAX_CONVERSATION_CHARS: usize = 100_000;
/// Default and largest `limit` of `GET /task-results`.
pub const DEFAULT_LIMIT: usize = 50;
/// See [`DEFAULT_LIMIT`].
pub const MAX_LIMIT: usize = 1000;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The generation graph.
    pub graph: CompiledGraph<GenerationState>,
    /// The results view.
    pub view: ResultsView,
}

/// The router with every route and the common layers.
pub fn router(state: AppState, health: Health, request_timeout: Duration) -> Router {
    let api = Router::new()
        .route("/generate-task", post(generate_task))
        .route("/task-results", get(task_results))
        .route("/task-result/{task_id}", get(task_result))
        .with_state(state);
    http::with_common_layers(api.merge(health_routes(health)), request_timeout)
}

#[tracing::instrument(skip_all, fields(task_id))]
async fn generate_task(
    State(state): State<AppState>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let conversation = conversation_of(&body)?;
    let generated = generation::generate(&state.graph, conversation.transcript())
        .await
        .map_err(|err| match err {
            GenerationError::Publish(_) => ApiError::Unavailable(err.to_string()),
            GenerationError::Llm(_) | GenerationError::InvalidTask(_) => {
                ApiError::BadGateway(err.to_string())
            }
            GenerationError::Graph(_) => ApiError::Internal(err.to_string()),
        })?;
    tracing::Span::current().record("task_id", tracing::field::display(generated.task.task_id));
    state.view.record_task(&generated.task);
    Ok(Json(json!({
        "task_id": generated.task.task_id,
        "task": generated.task,
        "status": TaskStatus::Pending,
        "topic": generated.delivery.topic,
        "partition": generated.delivery.partition,
        "offset": generated.delivery.offset,
    })))
}

/// Checks `conversation_history`: present, a non-empty string or a non-empty list of
/// `{role, content}` messages, at most [`MAX_CONVERSATION_CHARS`].
fn conversation_of(body: &Value) -> Result<Conversation, ApiError> {
    let Some(object) = body.as_object() else {
        return Err(ApiError::Unprocessable(
            "body must be a JSON object with `conversation_history`".into(),
        ));
    };
    let history = match object.get("conversation_history") {
        None | Some(Value::Null) => {
            return Err(ApiError::Unprocessable(
                "missing field `conversation_history`".into(),
            ));
        }
        Some(history) => history,
    };
    let conversation: Conversation = serde_json::from_value(history.clone()).map_err(|_| {
        ApiError::Unprocessable(
            "`conversation_history` must be a string, or a list of {\"role\": \"user\"|\"assistant\"|\"system\", \"content\": string}".into(),
        )
    })?;
    let transcript = conversation.transcript();
    if transcript.is_empty() {
        return Err(ApiError::Unprocessable(
            "`conversation_history` must not be empty".into(),
        ));
    }
    let chars = transcript.chars().count();
    if chars > MAX_CONVERSATION_CHARS {
        return Err(ApiError::Unprocessable(format!(
            "`conversation_history` has {chars} characters, at most {MAX_CONVERSATION_CHARS} are allowed"
        )));
    }
    Ok(conversation)
}

/// Query of `GET /task-results`; kept as text so bad values get our own error.
#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
}

async fn task_results(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::BadRequest(err.body_text()))?;
    let status = query
        .status
        .as_deref()
        .map(str::parse::<TaskStatus>)
        .transpose()
        .map_err(|err| ApiError::BadRequest(err.to_string()))?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}"
                )));
            }
        },
    };
    let results = state.view.list(status, limit);
    Ok(Json(json!({"count": results.len(), "results": results})))
}

async fn task_result(
    State(state): State<AppState>,
    Path(task_id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    let id = Uuid::parse_str(&task_id)
        .map_err(|_| ApiError::BadRequest(format!("task_id {task_id:?} is not a UUID")))?;
    state
        .view
        .get(id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no task with id {id}")))
}
