//! The HTTP routes of task-generator (the Python system's, same paths and fields).
//!
//! - `POST /generate-task` `{"conversation_history": "User: …"}` (or a list of
//!   `{role, content}`) → 200 `{"task_id", "task", "status": "pending", "topic",
//!   "partition", "offset"}` ([`Accepted`]), once the broker acknowledged the task. 4xx
//!   for bad input, 502 when the model fails, 503 when the broker does not acknowledge
//!   in time. With `Accept: text/event-stream`, the generation and then the task's
//!   events on one connection, the first event carrying the task id (see
//!   `generate_task_stream`).
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
//! - `POST /task-result/{task_id}/resume` `{"interrupt_id"?: "…", "resume": {"approved":
//!   true} | {"approved": false, "feedback"?: "…"} | {"plan": "…"}}` → 202
//!   `{"task_id", "interrupt_id", "status": "resuming"}` ([`Resuming`]) once the broker
//!   acknowledged the [`ResumeRequest`] on the events topic (see [`crate::resume`]). 422
//!   for a bad body, 400 / 404 / 503 `catching_up` as above, 409 `conflict` when the task
//!   is not `interrupted` or `interrupt_id` is not its current pause, 503 when the broker
//!   does not acknowledge in time.

pub mod openapi;

use std::{sync::Arc, time::Duration};

use agent_core::{
    graph::CompiledGraph,
    task::{NodePhase, ResumeRequest, TaskStatus},
};
use agent_runtime::{
    http::{self, ApiError, Health, Json, Path, Query, health_routes},
    kafka::Producer,
};
use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response, sse::Event},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    generation::{self, Accepted, Conversation, Generated, GenerationError, GenerationState},
    reader::CatchUp,
    resume::{self, ResumeBody, Resuming},
    store::{Batch, Cursor, ListQuery, StoreError, TaskView, ViewRecord, ViewStore},
    streams::{
        self, CLOCK_SKEW, ErrorBody, ErrorData, LastEventId, MetadataData, NodeData, STREAM_BUFFER,
        Start, Streams,
    },
};

/// How long `POST /task-result/{task_id}/resume` waits for a `pending` task to show its
/// pause before answering 409.
pub const PAUSE_GRACE: Duration = Duration::from_secs(2);

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
    /// The producer of resumes (the generation graph's own).
    pub producer: Producer,
    /// The events topic, where resumes go.
    pub events_topic: String,
    /// The results view's store.
    pub store: Arc<dyn ViewStore>,
    /// Whether the view has caught up with the topics.
    pub catch_up: CatchUp,
    /// The accepted API keys (`API_KEYS`); `None` leaves the routes open.
    pub api_keys: Option<http::ApiKeys>,
    /// The per-client limit on the POST routes; `None`: unlimited.
    pub rate_limit: Option<http::RateLimit>,
    /// The browser origins that may call the routes (`CORS_ALLOW_ORIGINS`); `None`: no
    /// CORS headers.
    pub cors: Option<http::Cors>,
    /// The live task streams.
    pub streams: Arc<Streams>,
    /// The deployment's `CHECKPOINTER` (the services share it): `human_review` needs a
    /// durable one.
    pub checkpointer: agent_runtime::config::CheckpointerKind,
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
        .route("/task-result/{task_id}/resume", post(resume_task))
        .with_state(state.clone());
    let api = Router::new()
        .route("/task-results", get(task_results))
        .route("/task-result/{task_id}", get(task_result))
        .route("/task-result/{task_id}/stream", get(task_stream))
        .with_state(state.clone())
        .merge(http::rate_limited(posts, state.rate_limit));
    let api = http::require_api_key(api, api_keys, crate::SERVICE);
    let open = health_routes(health).merge(http::openapi::routes(openapi::document()));
    http::with_common_layers(api.merge(open), request_timeout, cors)
}

/// Turn a conversation into a task and publish it.
///
/// Answers once the broker acknowledged the task. With `Accept: text/event-stream`, the
/// answer is a stream instead: `metadata` `{"task_id"}`, a `generation` event as each node
/// of the generation graph starts and finishes, `task` (the JSON answer below) once the
/// broker stored the task, then the task's own events as
/// `GET /task-result/{task_id}/stream` sends them, up to `result`; a failed generation
/// ends it with `error` `{"status", "error": {"code", "message"}}`.
#[utoipa::path(
    post,
    path = "/generate-task",
    tag = "task-generator",
    operation_id = "generate_task",
    security(("api_key" = [])),
    request_body(
        content = openapi::GenerateTask,
        content_type = "application/json",
        example = json!({"conversation_history": "User: I need help with my project"})
    ),
    responses(
        (status = 200, description = "The task, stored on the events topic",
         content(
            (Accepted = "application/json"),
            (openapi::GenerationEvent = "text/event-stream")
         )),
        (status = 400, description = "The body is not JSON", body = http::openapi::ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = http::openapi::ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = http::openapi::ErrorBody),
        (status = 422, description = "`conversation_history` missing, empty, of the wrong type or over 100,000 characters; `human_review` not a boolean, or true without a durable checkpointer", body = http::openapi::ErrorBody),
        (status = 429, description = "Over the client's rate limit; see `Retry-After`", body = http::openapi::ErrorBody,
         headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 502, description = "The model failed, or proposed no valid task", body = http::openapi::ErrorBody),
        (status = 503, description = "The broker did not acknowledge within `KAFKA_PRODUCE_TIMEOUT_MS`", body = http::openapi::ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(task_id))]
pub(crate) async fn generate_task(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let conversation = conversation_of(&body)?;
    let human_review = human_review_of(&body)?;
    if human_review && !state.checkpointer.is_durable() {
        return Err(ApiError::Unprocessable(format!(
            "`human_review` needs a durable checkpointer (CHECKPOINTER=sqlite or postgres); \
             this deployment's is {}: a paused task could never be resumed",
            state.checkpointer.as_str()
        )));
    }
    if wants_event_stream(&headers) {
        return generate_task_stream(state, conversation, human_review).await;
    }
    let generated = generation::generate(&state.graph, conversation.transcript(), human_review)
        .await
        .map_err(generation_error)?;
    tracing::Span::current().record("task_id", tracing::field::display(generated.task.task_id));
    record_new_task(&state, &generated).await;
    Ok(Json(Accepted::of(&generated)).into_response())
}

/// Whether the client asked for `text/event-stream` (`Accept`, any of its types).
fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|media| {
            let mut parts = media.split(';').map(str::trim);
            let is_sse = parts
                .next()
                .is_some_and(|t| t.eq_ignore_ascii_case("text/event-stream"));
            // `q=0` means "not this one".
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            is_sse && !refused
        })
}

/// A failed generation as an answer.
fn generation_error(err: GenerationError) -> ApiError {
    match err {
        GenerationError::Publish(_) => ApiError::Unavailable(err.to_string()),
        GenerationError::Llm(_) | GenerationError::InvalidTask(_) => {
            ApiError::BadGateway(err.to_string())
        }
        GenerationError::Graph(_) => ApiError::Internal(err.to_string()),
    }
}

/// Records a just-published task in the view. The reader will apply it from the topic
/// too; recording it now lets the client read it back at once. A store that fails here
/// only delays that.
async fn record_new_task(state: &AppState, generated: &Generated) {
    let batch = Batch {
        records: vec![ViewRecord::Task(generated.task.clone())],
        offsets: vec![],
    };
    if let Err(err) = state.store.apply(batch).await {
        tracing::warn!(error = %err, "results store: the new task shows once read back from the topic");
    }
}

/// `POST /generate-task` with `Accept: text/event-stream`: one connection carries
/// `metadata` `{"task_id"}` first, a `generation` event as each node of the generation
/// graph starts and finishes, `task` (the [`Accepted`] answer) once the broker stored
/// the task, then the task's own events as `GET /task-result/{task_id}/stream` sends
/// them, up to `result`. A failed generation ends the stream with `error`
/// `{"status", "error": {"code", "message"}}` (the status and body the JSON answer
/// would have had). Only the task's events have an `id:`: a client that loses the
/// connection resumes with `GET /task-result/{task_id}/stream` and `Last-Event-ID`
/// (from the start when it saw none).
async fn generate_task_stream(
    state: AppState,
    conversation: Conversation,
    human_review: bool,
) -> Result<Response, ApiError> {
    let task_id = Uuid::new_v4();
    tracing::Span::current().record("task_id", tracing::field::display(task_id));
    // Taken before the task exists: every one of its events arrives live.
    let subscription = state
        .streams
        .subscribe(task_id)
        .await
        .map_err(|err| ApiError::Unavailable(err.to_string()))?;
    let (out, events) = mpsc::channel(STREAM_BUFFER);
    let run = async move {
        // The first events are few and fit the buffer; a client that is not reading
        // them misses them, the task is generated all the same.
        let _ = out.try_send(event_of("metadata", &MetadataData { task_id }));
        let generated = generation::generate_streamed(
            &state.graph,
            conversation.transcript(),
            human_review,
            task_id,
            |step| {
                let data = NodeData {
                    task_id,
                    node: step.node,
                    superstep: step.superstep,
                    phase: if step.finished_after.is_some() {
                        NodePhase::Finished
                    } else {
                        NodePhase::Started
                    },
                    duration_ms: step
                        .finished_after
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                };
                let _ = out.try_send(event_of("generation", &data));
            },
        )
        .await;
        match generated {
            Ok(generated) => {
                record_new_task(&state, &generated).await;
                let _ = out.try_send(event_of("task", &Accepted::of(&generated)));
                let begin = subscription.from();
                Arc::clone(&state.streams)
                    .follow(subscription, begin, out, Arc::clone(&state.store))
                    .await;
            }
            Err(err) => {
                let err = generation_error(err);
                if let ApiError::Internal(cause) = &err {
                    tracing::error!(cause = %cause, "internal error");
                }
                let data = ErrorData {
                    status: err.status().as_u16(),
                    error: serde_json::from_value(err.body()["error"].clone()).unwrap_or_else(
                        |_| ErrorBody {
                            code: err.code().to_owned(),
                            message: String::new(),
                        },
                    ),
                };
                let _ = out.try_send(event_of("error", &data));
            }
        }
    };
    tokio::spawn(run.instrument(tracing::Span::current()));
    Ok(streams::sse(events).into_response())
}

/// An SSE event without an `id:`.
fn event_of(name: &str, data: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_else(|_| "{}".into()))
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

/// `human_review` of a `POST /generate-task` body: `false` when absent, else a boolean.
fn human_review_of(body: &Value) -> Result<bool, ApiError> {
    match body.get("human_review") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(review)) => Ok(*review),
        Some(_) => Err(ApiError::Unprocessable(
            "`human_review` must be true or false".into(),
        )),
    }
}

/// Query of `GET /task-results`; kept as text so bad values get our own error.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// Only tasks in this status.
    #[param(value_type = Option<TaskStatus>)]
    status: Option<String>,
    /// Tasks per page, 1 to 1000 (default 50).
    #[param(value_type = Option<u16>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Where to continue: the `next` of the previous page.
    #[param(
        pattern = r"^(?:[0-9]{1,18}|[0-8][0-9]{18})\.[0-9a-fA-F]{32}$",
        example = "1795267222430000000.0d6f5b8e8a434c1e9a553f1f4e2b7c10"
    )]
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ResultsPage {
    /// How many tasks this page holds.
    count: usize,
    /// The tasks, newest first by `(created_at, task_id)`.
    results: Vec<TaskView>,
    /// The cursor of the following page; `null` on the last.
    next: Option<String>,
}

/// Tasks, newest first by `(created_at, task_id)`, a page at a time.
#[utoipa::path(
    get,
    path = "/task-results",
    tag = "task-generator",
    operation_id = "task_results",
    security(("api_key" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "One page; pass `next` as `cursor` for the following one", body = ResultsPage),
        (status = 400, description = "A `status`, `limit` or `cursor` that does not parse", body = http::openapi::ErrorBody),
        (status = 503, description = "The results store is unavailable", body = http::openapi::ErrorBody),
    )
)]
pub(crate) async fn task_results(
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

/// One task: `pending` until its result arrives, then `completed` or `failed`, or
/// `interrupted` while it waits for human review.
#[utoipa::path(
    get,
    path = "/task-result/{task_id}",
    tag = "task-generator",
    operation_id = "task_result",
    security(("api_key" = [])),
    params(("task_id" = uuid::Uuid, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task and its result, if any", body = TaskView),
        (status = 400, description = "`task_id` is not a UUID", body = http::openapi::ErrorBody),
        (status = 404, description = "No such task", body = http::openapi::ErrorBody),
        (status = 503, description = "`catching_up`: the view is still reading what was written before it started (with `Retry-After: 1`); or the store is unavailable", body = http::openapi::ErrorBody,
         headers(("Retry-After" = u64, description = "Seconds to wait (`catching_up` only)"))),
    )
)]
pub(crate) async fn task_result(
    State(state): State<AppState>,
    Path(task_id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    let id = task_id_of(&task_id)?;
    Ok(Json(view_of(&state, id).await?))
}

/// A `Last-Event-ID` (header or query) as the stream reads it: `None` when absent or
/// empty; 400 when it is not an id this service gives.
fn last_event_id_of(text: Option<&str>) -> Result<Option<LastEventId>, ApiError> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(text) => LastEventId::parse(text).map(Some).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Last-Event-ID {:?} is not an id of this stream: pass the id of the last \
                 event received",
                text.chars().take(64).collect::<String>()
            ))
        }),
    }
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

/// Answer a task paused for review: approve its plan, reject it with feedback, or
/// give a plan of your own.
///
/// Checks the body, then that the task waits at the pause answered (a `pending` task
/// is given up to 2 s to show its pause), then publishes the resume on the events
/// topic keyed by the task id and answers 202 once the broker stored it.
#[utoipa::path(
    post,
    path = "/task-result/{task_id}/resume",
    tag = "task-generator",
    operation_id = "resume_task",
    security(("api_key" = [])),
    params(("task_id" = uuid::Uuid, Path, description = "The task's id")),
    request_body(
        content = openapi::ResumeTask,
        content_type = "application/json",
        example = json!({"interrupt_id": "1:review:0#0", "resume": {"approved": false, "feedback": "Add a step to write tests first."}})
    ),
    responses(
        (status = 202, description = "The resume is stored on the events topic; the task's solver carries it out", body = Resuming),
        (status = 400, description = "`task_id` is not a UUID, or the body is not JSON", body = http::openapi::ErrorBody),
        (status = 404, description = "No such task", body = http::openapi::ErrorBody),
        (status = 409, description = "The task is not waiting for review, or `interrupt_id` is not its current pause", body = http::openapi::ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = http::openapi::ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = http::openapi::ErrorBody),
        (status = 422, description = "A body of another shape: the message says what is wrong", body = http::openapi::ErrorBody),
        (status = 429, description = "Over the client's rate limit; see `Retry-After`", body = http::openapi::ErrorBody,
         headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "`catching_up` (with `Retry-After: 1`), or the broker did not acknowledge in time", body = http::openapi::ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(task_id))]
pub(crate) async fn resume_task(
    State(state): State<AppState>,
    Path(task_id): Path<String>,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Resuming>), ApiError> {
    let id = task_id_of(&task_id)?;
    tracing::Span::current().record("task_id", tracing::field::display(id));
    let body = ResumeBody::parse(body)?;
    let mut view = view_of(&state, id).await?;
    // A client that saw the pause on the task's live stream may ask before this view
    // has read the pause from the results topic (the solver stores it there before it
    // tells the stream): a task still `pending` is given a moment to show it.
    let deadline = tokio::time::Instant::now() + PAUSE_GRACE;
    while view.status == TaskStatus::Pending && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        view = view_of(&state, id).await?;
    }
    let interrupt_id = resume::current_pause(&view, body.interrupt_id.as_deref())?;
    let request = ResumeRequest {
        task_id: id,
        interrupt_id: Some(interrupt_id.clone()),
        resume: body.resume,
        requested_at: chrono::Utc::now(),
    };
    resume::publish(&state.producer, &state.events_topic, &request).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Resuming {
            task_id: id,
            interrupt_id,
            status: "resuming",
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamQuery {
    /// For clients that cannot set `Last-Event-ID`: the id of the last event received.
    #[param(pattern = r"^(?:[0-9]{1,18}(?:\.end)?|view\.end)?$", example = "1042")]
    last_event_id: Option<String>,
}

/// The task's run as it happens, as Server-Sent Events.
///
/// Events `status`, `node`, `token`, `custom`, `interrupt` and `result` (the last);
/// each `id` is the event's offset in its partition, the same on every replica:
/// reconnect with `Last-Event-ID` to get the events after it.
#[utoipa::path(
    get,
    path = "/task-result/{task_id}/stream",
    tag = "task-generator",
    operation_id = "task_stream",
    security(("api_key" = [])),
    params(
        ("task_id" = uuid::Uuid, Path, description = "The task's id"),
        StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received (empty: none)", nullable = false,
         pattern = r"^(?:[0-9]{1,18}(?:\.end)?|view\.end)?$"),
    ),
    responses(
        (status = 200, description = "The stream, up to the `result` event",
         content_type = "text/event-stream", body = openapi::TaskEvent),
        (status = 204, description = "The stream already ended with its result (`Last-Event-ID` of the `result` event)"),
        (status = 400, description = "`task_id` is not a UUID, or a `Last-Event-ID` this service did not give", body = http::openapi::ErrorBody),
        (status = 404, description = "No such task", body = http::openapi::ErrorBody),
        (status = 503, description = "`catching_up` (with `Retry-After: 1`), or the broker does not answer", body = http::openapi::ErrorBody),
    )
)]
pub(crate) async fn task_stream(
    State(state): State<AppState>,
    Path(task_id): Path<String>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = task_id_of(&task_id)?;
    let header = headers
        .get("last-event-id")
        .map(|value| {
            value
                .to_str()
                .map_err(|_| ApiError::BadRequest("Last-Event-ID is not text".into()))
        })
        .transpose()?;
    // Both are checked; the header, which EventSource sets, wins.
    let from_header = last_event_id_of(header)?;
    let from_query = last_event_id_of(query.last_event_id.as_deref())?;
    let resume = match from_header.or(from_query) {
        None => None,
        // The stream already ended with its result: 204 tells EventSource to stop.
        Some(LastEventId::Ended) => return Ok(StatusCode::NO_CONTENT.into_response()),
        Some(LastEventId::After(offset)) => Some(offset),
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
    use agent_core::task::{Task, TaskInterrupt, TaskResult, TokenUsage};
    use agent_runtime::{
        config::Settings,
        kafka::{BrokerWatch, Producer},
        llm::LlmClient,
    };
    use axum::{body::Body, http::Request};
    use http_body_util::BodyExt;
    use serde_json::json;
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
        let watch = BrokerWatch::spawn(
            producer.clone(),
            Duration::from_secs(60),
            CancellationToken::new(),
        );
        let health = Health::new(
            "task-generator",
            watch,
            settings.kafka.topics.clone(),
            json!({"model": settings.llm.model, "llm_endpoint": settings.llm.base_url}),
        );
        router(
            AppState {
                graph,
                producer,
                events_topic: "events".into(),
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
                checkpointer: agent_runtime::config::CheckpointerKind::Memory,
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

    async fn post(app: Router, uri: &str, body: &Value) -> (u16, Value) {
        let request = Request::post(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let response = app.oneshot(request).await.expect("response");
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, serde_json::from_slice(&bytes).expect("JSON body"))
    }

    /// A task in `store` that paused for review at interrupt `id`.
    async fn paused_task(store: &MemoryStore, id: &str) -> Task {
        let task = Task::new("Review me", "A plan to review", "").expect("task");
        apply(store, ViewRecord::Task(task.clone())).await;
        let interrupt = TaskInterrupt {
            id: id.into(),
            node: "review".into(),
            value: json!({"plan": "1. Do it."}),
        };
        let paused = TaskResult::interrupted(
            &task,
            interrupt,
            "solver-1",
            chrono::Utc::now(),
            TokenUsage::default(),
        );
        apply(store, ViewRecord::Result(paused, at(0))).await;
        task
    }

    fn says(body: &Value, code: &str, words: &[&str]) -> bool {
        let message = body["error"]["message"].as_str().unwrap_or_default();
        body["error"]["code"] == code && words.iter().all(|w| message.contains(w))
    }

    #[tokio::test]
    async fn a_resume_of_an_unknown_or_malformed_task_id_is_404_or_400() {
        let store = MemoryStore::new();
        let approve = json!({"resume": {"approved": true}});
        let uri = format!("/task-result/{}/resume", Uuid::new_v4());
        let (status, body) = post(app(&store), &uri, &approve).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "not_found");
        let (status, body) = post(app(&store), "/task-result/nope/resume", &approve).await;
        assert_eq!(status, 400, "{body}");
        assert!(says(&body, "bad_request", &["not a UUID"]), "{body}");
    }

    #[tokio::test]
    async fn a_resume_of_a_task_not_waiting_for_review_is_409_naming_its_status() {
        let store = MemoryStore::new();
        let task = Task::new("Write docs", "Document the API", "").expect("task");
        apply(&store, ViewRecord::Task(task.clone())).await;
        let uri = format!("/task-result/{}/resume", task.task_id);
        let approve = json!({"resume": {"approved": true}});
        let (status, body) = post(app(&store), &uri, &approve).await;
        assert_eq!(status, 409, "{body}");
        assert!(
            says(&body, "conflict", &["is pending, not waiting for review"]),
            "{body}"
        );
        let done = TaskResult::completed(
            &task,
            "Done.",
            "solver-1",
            chrono::Utc::now(),
            TokenUsage::default(),
        );
        apply(&store, ViewRecord::Result(done, at(1))).await;
        let (status, body) = post(app(&store), &uri, &approve).await;
        assert_eq!(status, 409, "{body}");
        assert!(
            says(&body, "conflict", &["is completed, not waiting for review"]),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_resume_of_an_earlier_pause_is_409_naming_both_pauses() {
        let store = MemoryStore::new();
        let task = paused_task(&store, "b#0").await;
        let uri = format!("/task-result/{}/resume", task.task_id);
        let stale = json!({"interrupt_id": "a#0", "resume": {"approved": true}});
        let (status, body) = post(app(&store), &uri, &stale).await;
        assert_eq!(status, 409, "{body}");
        assert!(says(&body, "conflict", &["\"b#0\"", "\"a#0\""]), "{body}");
    }

    #[tokio::test]
    async fn a_resume_with_a_bad_body_is_422_saying_why() {
        let store = MemoryStore::new();
        let task = paused_task(&store, "review#0").await;
        let uri = format!("/task-result/{}/resume", task.task_id);
        for (body, words) in [
            (
                json!({"resume": {"approved": true}, "by": "me"}),
                &["unknown field `by`"][..],
            ),
            (
                json!({"resume": {"approved": "yes"}}),
                &["resume", "true or false"][..],
            ),
            (
                json!({"interrupt_id": "review#0"}),
                &["missing field `resume`"][..],
            ),
            (
                json!({"interrupt_id": "", "resume": {"approved": true}}),
                &["`interrupt_id` must not be empty"][..],
            ),
            (
                json!({"interrupt_id": "x".repeat(201), "resume": {"approved": true}}),
                &["`interrupt_id` has 201 characters"][..],
            ),
        ] {
            let (status, answer) = post(app(&store), &uri, &body).await;
            assert_eq!(status, 422, "{body}: {answer}");
            assert!(
                says(&answer, "validation_failed", words),
                "{body}: {answer}"
            );
        }
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
    async fn human_review_without_a_durable_checkpointer_is_422_before_anything_is_asked() {
        let app = app(&MemoryStore::new());
        let request = Request::post("/generate-task")
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"conversation_history": "User: hi", "human_review": true}"#,
            ))
            .expect("request");
        let response = app.oneshot(request).await.expect("response");
        assert_eq!(response.status().as_u16(), 422);
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body: Value = serde_json::from_slice(&bytes).expect("JSON");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("durable checkpointer") && message.contains("memory"),
            "{body}"
        );
    }

    #[test]
    fn an_event_stream_is_what_accept_asks_for_unless_refused_with_q_0() {
        let accept = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("accept", value.parse().expect("a header value"));
            wants_event_stream(&headers)
        };
        assert!(accept("text/event-stream"));
        assert!(accept("application/json, Text/Event-Stream;q=0.5"));
        assert!(!accept("application/json"));
        assert!(!accept("*/*"));
        assert!(!accept("text/event-stream;q=0"));
        assert!(!wants_event_stream(&HeaderMap::new()));
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
