//! The HTTP routes of task-generator (the Python system's, same paths and fields).
//!
//! - `POST /generate-task` `{"conversation_history": "User: …"}` (or a list of
//!   `{role, content}`) → 200 `{"task_id", "task", "status": "pending", "topic",
//!   "partition", "offset"}`, once the broker acknowledged the task. 4xx for bad input,
//!   502 when the model fails, 503 when the broker does not acknowledge in time.
//! - `GET /task-results?status=&limit=&cursor=` → `{"count", "results": [TaskView…],
//!   "next"}`, newest first by `(created_at, task_id)` (default limit 50, at most 1000);
//!   `next` is the cursor of the following page (`null` on the last): pass it as
//!   `?cursor=` to continue. 400 for a cursor this view did not give.
//! - `GET /task-result/{task_id}` → a [`TaskView`]: `pending`, then `completed` or
//!   `failed` with the result; 400 for a malformed id, 404 for an unknown one — or 503
//!   `catching_up` (with `Retry-After`) while the view is still reading what was written
//!   before it started, when it cannot yet say that a task does not exist.
//! - `GET /task-result/{task_id}/stream` → `text/event-stream` of the task's `status`,
//!   `node`, `token`, `custom` and `result` events (see [`crate::streams`]), resumable
//!   with `Last-Event-ID` (or `?last_event_id=`) on any replica; 204 once the stream
//!   ended; 404 / 503 `catching_up` as above before the stream starts.

use std::{sync::Arc, time::Duration};

use agent_core::{graph::CompiledGraph, task::TaskStatus};
use agent_runtime::http::{self, ApiError, Health, Json, Path, Query, health_routes};
use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    generation::{self, Conversation, GenerationError, GenerationState},
    reader::CatchUp,
    store::{Batch, Cursor, ListQuery, StoreError, TaskView, ViewRecord, ViewStore},
    streams::{CLOCK_SKEW, LastEventId, Start, Streams},
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
    /// The results view's store.
    pub store: Arc<dyn ViewStore>,
    /// Whether the view has caught up with the topics.
    pub catch_up: CatchUp,
    /// The accepted API keys (`API_KEYS`); `None` leaves the routes open.
    pub api_keys: Option<http::ApiKeys>,
    /// The per-client limit on `POST /generate-task`; `None`: unlimited.
    pub rate_limit: Option<http::RateLimit>,
    /// The browser origins that may call the routes (`CORS_ALLOW_ORIGINS`); `None`: no
    /// CORS headers.
    pub cors: Option<http::Cors>,
    /// The live task streams.
    pub streams: Arc<Streams>,
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
    let cors = state.cors.clone();
    let posts = Router::new()
        .route("/generate-task", post(generate_task))
        .with_state(state.clone());
    let api = Router::new()
        .route("/task-results", get(task_results))
        .route("/task-result/{task_id}", get(task_result))
        .route("/task-result/{task_id}/stream", get(task_stream))
        .with_state(state.clone())
        .merge(http::rate_limited(posts, state.rate_limit));
    let api = http::require_api_key(api, api_keys, crate::SERVICE);
    http::with_common_layers(api.merge(health_routes(health)), request_timeout, cors)
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
    // The reader will apply the task from the topic too; recording it now lets the
    // client read it back at once. A store that fails here only delays that.
    let batch = Batch {
        records: vec![ViewRecord::Task(generated.task.clone())],
        offsets: vec![],
    };
    if let Err(err) = state.store.apply(batch).await {
        tracing::warn!(error = %err, "results store: the new task shows once read back from the topic");
    }
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
struct ListParams {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// A store failure as an answer: 400 for a bad cursor, else 503 (the cause logged, not
/// answered).
fn store_error(err: StoreError) -> ApiError {
    match err {
        StoreError::BadCursor => ApiError::BadRequest(err.to_string()),
        err => {
            tracing::error!(error = %err, "results store failed");
            ApiError::Unavailable("the results store is unavailable; retry shortly".into())
        }
    }
}

/// The body of `GET /task-results`, written straight from the page (through no
/// `serde_json::Value`, which would parse each task's stored JSON again).
#[derive(Debug, Serialize)]
struct ResultsPage {
    count: usize,
    results: Vec<TaskView>,
    next: Option<String>,
}

async fn task_results(
    State(state): State<AppState>,
    Query(query): Query<ListParams>,
) -> Result<Json<ResultsPage>, ApiError> {
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
    let after = query
        .cursor
        .as_deref()
        .map(str::parse::<Cursor>)
        .transpose()
        .map_err(store_error)?;
    let page = state
        .store
        .list(ListQuery {
            status,
            limit,
            after,
        })
        .await
        .map_err(store_error)?;
    Ok(Json(ResultsPage {
        count: page.results.len(),
        results: page.results,
        next: page.next.map(|next| next.to_string()),
    }))
}

async fn task_result(
    State(state): State<AppState>,
    Path(task_id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    let id = task_id_of(&task_id)?;
    Ok(Json(view_of(&state, id).await?))
}

fn task_id_of(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text)
        .map_err(|_| ApiError::BadRequest(format!("task_id {text:?} is not a UUID")))
}

/// The view of task `id`: 404 when unknown, 503 `catching_up` while the view cannot
/// yet say.
async fn view_of(state: &AppState, id: Uuid) -> Result<TaskView, ApiError> {
    match state.store.get(id).await.map_err(store_error)? {
        Some(view) => Ok(view),
        None if !state.catch_up.is_caught_up() => Err(ApiError::CatchingUp(format!(
            "no task with id {id} yet: the results view is catching up ({} records behind)",
            state.catch_up.behind().max(0)
        ))),
        None => Err(ApiError::NotFound(format!("no task with id {id}"))),
    }
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    /// For clients that cannot set `Last-Event-ID`.
    last_event_id: Option<String>,
}

async fn task_stream(
    State(state): State<AppState>,
    Path(task_id): Path<String>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = task_id_of(&task_id)?;
    let last = headers
        .get("last-event-id")
        .map(|value| {
            value
                .to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::BadRequest("Last-Event-ID is not text".into()))
        })
        .transpose()?
        .or(query.last_event_id);
    let resume = match last.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(text) => match LastEventId::parse(text) {
            // The stream already ended with its result: 204 tells EventSource to stop.
            Some(LastEventId::Ended) => return Ok(StatusCode::NO_CONTENT.into_response()),
            Some(LastEventId::After(offset)) => Some(offset),
            None => {
                return Err(ApiError::BadRequest(format!(
                    "Last-Event-ID {:?} is not an id of this stream: pass the id of the last event received",
                    text.chars().take(64).collect::<String>()
                )));
            }
        },
    };
    let view = view_of(&state, id).await?;
    let start = match resume {
        Some(offset) => Start::After(offset),
        None => {
            let since =
                view.created_at - chrono::Duration::from_std(CLOCK_SKEW).unwrap_or_default();
            Start::Since(since.timestamp_millis())
        }
    };
    let sse = state
        .streams
        .open(id, start, Arc::clone(&state.store))
        .await
        .map_err(|err| ApiError::Unavailable(err.to_string()))?;
    Ok(sse.into_response())
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
    use crate::{
        generation::{self, Deps},
        store::{LogPosition, MemoryStore},
    };

    /// The router over a store (caught up or not), with a broker and a model that are
    /// never reached.
    fn app_with(store: &MemoryStore, catch_up: CatchUp) -> Router {
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
                store: Arc::new(store.clone()),
                catch_up,
                api_keys: None,
                rate_limit: None,
                cors: None,
                streams: Arc::new(
                    Streams::new(
                        &agent_runtime::kafka::KafkaSettings::for_brokers("127.0.0.1:1"),
                        CancellationToken::new(),
                    )
                    .expect("streams"),
                ),
            },
            health,
            Duration::from_secs(5),
        )
    }

    /// The router over a store that has caught up.
    fn app(store: &MemoryStore) -> Router {
        let catch_up = CatchUp::default();
        catch_up.set_behind(0);
        app_with(store, catch_up)
    }

    async fn apply(store: &MemoryStore, record: ViewRecord) {
        store
            .apply(Batch {
                records: vec![record],
                offsets: vec![],
            })
            .await
            .expect("applied");
    }

    fn at(offset: i64) -> LogPosition {
        LogPosition {
            partition: 0,
            offset,
        }
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
        let store = MemoryStore::new();
        let task = Task::new("Write docs", "Document the API", "").expect("task");
        apply(&store, ViewRecord::Task(task.clone())).await;
        let uri = format!("/task-result/{}", task.task_id);
        let (status, body) = get(app(&store), &uri).await;
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
        apply(&store, ViewRecord::Result(result, at(0))).await;
        let (status, body) = get(app(&store), &uri).await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "completed");
        assert_eq!(body["result"]["result"], "Done.");
        assert_eq!(body["result"]["solver_id"], "solver-1");
    }

    #[tokio::test]
    async fn task_results_filters_by_status_and_limits() {
        let store = MemoryStore::new();
        for i in 0..3 {
            let task = Task::new(format!("t{i}"), "d", "").expect("task");
            apply(&store, ViewRecord::Task(task.clone())).await;
            if i == 0 {
                let failed =
                    TaskResult::failed(&task, "no", "s", chrono::Utc::now(), TokenUsage::default());
                apply(&store, ViewRecord::Result(failed, at(0))).await;
            }
        }
        let (status, body) = get(app(&store), "/task-results?status=pending&limit=1").await;
        assert_eq!(status, 200);
        assert_eq!(body["count"], 1);
        assert_eq!(body["results"][0]["status"], "pending");
        let cursor = body["next"].as_str().expect("a next page").to_owned();
        let (status, body) = get(
            app(&store),
            &format!("/task-results?status=pending&limit=1&cursor={cursor}"),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["count"], 1);
        assert!(body["next"].is_null(), "the last page: {body}");
        let (_, body) = get(app(&store), "/task-results?status=failed").await;
        assert_eq!(body["count"], 1);
        assert_eq!(body["results"][0]["result"]["error"], "no");
        let (status, body) = get(app(&store), "/task-results?cursor=not-a-cursor").await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "bad_request");
    }

    #[tokio::test]
    async fn an_unknown_task_is_503_catching_up_until_the_view_has_caught_up_then_404() {
        let store = MemoryStore::new();
        let catch_up = CatchUp::default();
        catch_up.set_behind(12);
        let uri = format!("/task-result/{}", uuid::Uuid::new_v4());
        let (status, body) = get(app_with(&store, catch_up.clone()), &uri).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "catching_up");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("12 records behind")),
            "{body}"
        );
        catch_up.set_behind(0);
        let (status, body) = get(app_with(&store, catch_up), &uri).await;
        assert_eq!(status, 404, "{body}");
    }

    #[tokio::test]
    async fn health_never_shows_the_api_key() {
        let (status, body) = get(app(&MemoryStore::new()), "/health").await;
        assert_eq!(status, 200);
        assert_eq!(body["service"], "task-generator");
        assert!(body["topics"]["events"].is_string());
        assert!(!body.to_string().contains("sk-secret-123"), "{body}");
    }
}
