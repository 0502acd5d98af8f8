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
use agent_runtime::http::{self, ApiError, Health, Json, Path, Query, health_routes};
use axum::{
    Router,
    extract::State,
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
    /// The accepted API keys (`API_KEYS`); `None` leaves the routes open.
    pub api_keys: Option<http::ApiKeys>,
    /// The per-client limit on `POST /generate-task`; `None`: unlimited.
    pub rate_limit: Option<http::RateLimit>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The router with every route and the common layers; every route but the health ones
/// needs a key of [`AppState::api_keys`] when there are keys.
pub fn router(state: AppState, health: Health, request_timeout: Duration) -> Router {
    let api_keys = state.api_keys.clone();
    let posts = Router::new()
        .route("/generate-task", post(generate_task))
        .with_state(state.clone());
    let api = Router::new()
        .route("/task-results", get(task_results))
        .route("/task-result/{task_id}", get(task_result))
        .with_state(state.clone())
        .merge(http::rate_limited(posts, state.rate_limit));
    let api = http::require_api_key(api, api_keys, crate::SERVICE);
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
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
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

#[cfg(test)]
mod tests {
    use agent_core::task::{Task, TaskResult, TokenUsage};
    use agent_runtime::{
        config::Settings,
        kafka::{BrokerWatch, Producer},
        llm::LlmClient,
    };
    use axum::{body::Body, http::Request};
    use http_body_util::BodyExt;
    use tokio_util::sync::CancellationToken;
    use tower::ServiceExt;

    use super::*;
    use crate::generation::{self, Deps};

    /// The router over a view, with a broker and a model that are never reached.
    fn app(view: ResultsView) -> Router {
        let settings = Settings::from_vars([
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:1/v1"),
            ("OPENAI_API_KEY", "sk-secret-123"),
        ])
        .expect("settings");
        let producer = Producer::new(&settings.kafka, "test").expect("producer");
        let llm = LlmClient::new(&settings.llm).expect("llm");
        let graph = generation::graph(Deps {
            llm,
            producer: producer.clone(),
            events_topic: "events".into(),
        })
        .expect("graph");
        let watch = BrokerWatch::spawn(producer, Duration::from_secs(60), CancellationToken::new());
        let health = Health::new(
            "task-generator",
            watch,
            settings.kafka.topics.clone(),
            json!({"model": settings.llm.model, "llm_endpoint": settings.llm.base_url}),
        );
        router(
            AppState {
                graph,
                view,
                api_keys: None,
                rate_limit: None,
            },
            health,
            Duration::from_secs(5),
        )
    }

    async fn get(app: Router, uri: &str) -> (u16, Value) {
        let response = app
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, serde_json::from_slice(&bytes).expect("JSON body"))
    }

    #[tokio::test]
    async fn a_known_task_is_pending_then_completed() {
        let view = ResultsView::new();
        let task = Task::new("Write docs", "Document the API", "").expect("task");
        view.record_task(&task);
        let uri = format!("/task-result/{}", task.task_id);
        let (status, body) = get(app(view.clone()), &uri).await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "pending");
        assert_eq!(body["task"]["task_name"], "Write docs");
        assert!(body.get("result").is_none());

        let result = TaskResult::completed(
            &task,
            "Done.",
            "solver-1",
            chrono::Utc::now(),
            TokenUsage::default(),
        );
        view.record_result(
            result,
            crate::view::LogPosition {
                partition: 0,
                offset: 0,
            },
        );
        let (status, body) = get(app(view), &uri).await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "completed");
        assert_eq!(body["result"]["result"], "Done.");
        assert_eq!(body["result"]["solver_id"], "solver-1");
    }

    #[tokio::test]
    async fn task_results_filters_by_status_and_limits() {
        let view = ResultsView::new();
        for i in 0..3 {
            let task = Task::new(format!("t{i}"), "d", "").expect("task");
            view.record_task(&task);
            if i == 0 {
                view.record_result(
                    TaskResult::failed(&task, "no", "s", chrono::Utc::now(), TokenUsage::default()),
                    crate::view::LogPosition {
                        partition: 0,
                        offset: 0,
                    },
                );
            }
        }
        let (status, body) = get(app(view.clone()), "/task-results?status=pending&limit=1").await;
        assert_eq!(status, 200);
        assert_eq!(body["count"], 1);
        assert_eq!(body["results"][0]["status"], "pending");
        let (_, body) = get(app(view), "/task-results?status=failed").await;
        assert_eq!(body["count"], 1);
        assert_eq!(body["results"][0]["result"]["error"], "no");
    }

    #[tokio::test]
    async fn health_never_shows_the_api_key() {
        let (status, body) = get(app(ResultsView::new()), "/health").await;
        assert_eq!(status, 200);
        assert_eq!(body["service"], "task-generator");
        assert!(body["topics"]["events"].is_string());
        assert!(!body.to_string().contains("sk-secret-123"), "{body}");
    }
}
