//! The HTTP routes of agent-comms (the Python system's, same paths and fields).
//!
//! - `POST /send_event` `{"payload": <any JSON>, "topic"?: name, "key"?: string}` → 200
//!   `{"topic", "partition", "offset"}` once the broker acknowledged; the default topic is
//!   the events topic; 403 for a topic outside `COMMS_PUBLISH_TOPICS` (see
//!   [`TopicPolicy`]); 422 for a missing payload or a bad topic name; 413 when the key,
//!   payload (as JSON) and headers add up to more than
//!   [`Producer::MAX_RECORD_BYTES`] (the message names the limit); 503 when the broker
//!   does not acknowledge in time.
//! - `GET /last_message?topic=` → the newest message of the topic (default the results
//!   topic) as a [`LastMessage`], from memory
//!   ([`LastMessages`]); 403 for a topic outside `COMMS_READ_TOPICS`; 404 before there
//!   is any or when the topic does not exist; 400
//!   for a bad topic name; 503 when the topic is not loaded within 5 s (broker
//!   unreachable) or the view already follows its 64 topics and this is not one.
//! - `POST /request` and `GET /agents`: agents over HTTP, see [`agents`].

pub mod agents;
pub mod openapi;

use std::time::Duration;

use agent_runtime::{
    http::{self, ApiError, Health, Json, Query, health_routes},
    kafka::{CloudEvent, Delivery, Producer, Topics, headers::EVENT_PUBLISHED, valid_topic_name},
};
use axum::{
    Router,
    extract::State,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    SERVICE,
    last_message::{LastMessage, LastMessages, ReadError},
    policy::TopicPolicy,
};

/// Longest accepted key, in characters (so at most 4 KiB of UTF-8). Counted in
/// characters, as JSON Schema's `maxLength` counts, so the OpenAPI document can say it.
pub const MAX_KEY_CHARS: usize = 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The producer.
    pub producer: Producer,
    /// The topic names.
    pub topics: Topics,
    /// The view of each readable topic's newest record.
    pub last_messages: LastMessages,
    /// Which topics clients may publish to and read, and which agent types they may ask.
    pub policy: TopicPolicy,
    /// The agent runtime of `POST /request` and `GET /agents`.
    pub agents: agents::Agents,
    /// The accepted API keys (`API_KEYS`); `None` leaves the routes open.
    pub api_keys: Option<http::ApiKeys>,
    /// The per-client limit on `POST /send_event`; `None`: unlimited.
    pub rate_limit: Option<http::RateLimit>,
    /// The browser origins that may call the routes (`CORS_ALLOW_ORIGINS`); `None`: no
    /// CORS headers.
    pub cors: Option<http::Cors>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The router with every route and the common layers; every route but the health ones
/// needs a key of [`AppState::api_keys`] when there are keys.
pub fn router(state: AppState, health: Health) -> Router {
    let api_keys = state.api_keys.clone();
    let cors = state.cors.clone();
    let posts = Router::new()
        .route("/send_event", post(send_event))
        .route("/request", post(agents::request))
        // Each listing is a broadcast every instance answers: limited like a POST.
        .route("/agents", get(agents::agents))
        .with_state(state.clone());
    let api = Router::new()
        .route("/last_message", get(last_message))
        .with_state(state.clone())
        .merge(http::rate_limited(posts, state.rate_limit));
    let api = http::require_api_key(api, api_keys, SERVICE);
    let open = health_routes(health).merge(http::openapi::routes(openapi::document()));
    // Above the longest wait of `POST /request`.
    let timeout = Duration::from_millis(agents::MAX_REQUEST_TIMEOUT_MS) + Duration::from_secs(5);
    http::with_common_layers(api.merge(open), timeout, cors)
}

/// The body of `POST /send_event`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"payload": {"task_name": "Summarize notes", "task_description": "Summarize the meeting notes.", "context": "…"}, "key": "notes-1"}))]
pub(crate) struct SendEvent {
    /// The record's value: any JSON but `null`.
    #[schema(schema_with = openapi::any_but_null, required = true)]
    payload: Option<Value>,
    /// The topic (default: the events topic); a valid Kafka topic name in
    /// `COMMS_PUBLISH_TOPICS`, else 403.
    #[schema(
        nullable,
        pattern = r"^(?!\.\.?$)[a-zA-Z0-9._-]{1,249}$",
        example = "dev-langgraph-agent-events"
    )]
    topic: Option<String>,
    /// The record's key, at most 1024 characters.
    #[schema(nullable, max_length = 1024)]
    key: Option<String>,
}

/// Publish any JSON to a topic and answer where the broker stored it.
#[utoipa::path(
    post,
    path = "/send_event",
    tag = "agent-comms",
    operation_id = "send_event",
    security(("api_key" = [])),
    request_body(content = SendEvent, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored: the record's topic, partition and offset", body = Delivery),
        (status = 400, description = "The body is not JSON", body = http::openapi::ErrorBody),
        (status = 403, description = "A topic outside `COMMS_PUBLISH_TOPICS` (or an internal or dead-letter topic)", body = http::openapi::ErrorBody),
        (status = 413, description = "The body is over 1 MiB, or the record (key, payload as JSON, headers) over the producer's 998,976 bytes", body = http::openapi::ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = http::openapi::ErrorBody),
        (status = 422, description = "No `payload`, a bad topic name, a key over 1024 characters or another field", body = http::openapi::ErrorBody),
        (status = 429, description = "Over the client's rate limit; see `Retry-After`", body = http::openapi::ErrorBody,
         headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The broker did not acknowledge within `KAFKA_PRODUCE_TIMEOUT_MS`", body = http::openapi::ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(topic))]
pub(crate) async fn send_event(
    State(state): State<AppState>,
    Json(body): Json<SendEvent>,
) -> Result<Json<Delivery>, ApiError> {
    let payload = match body.payload {
        None | Some(Value::Null) => {
            return Err(ApiError::Unprocessable("missing field `payload`".into()));
        }
        Some(payload) => payload,
    };
    let topic = body.topic.unwrap_or_else(|| state.topics.events.clone());
    if !valid_topic_name(&topic) {
        return Err(ApiError::Unprocessable(format!(
            "topic {topic:?} is not a valid Kafka topic name (1 to 249 of a-z, A-Z, 0-9, '.', '_', '-')"
        )));
    }
    state.policy.check_publish(&topic)?;
    if body
        .key
        .as_ref()
        .is_some_and(|k| k.chars().count() > MAX_KEY_CHARS)
    {
        return Err(ApiError::Unprocessable(format!(
            "key is longer than {MAX_KEY_CHARS} characters"
        )));
    }
    tracing::Span::current().record("topic", topic.as_str());
    let event = CloudEvent::new(SERVICE, EVENT_PUBLISHED, None);
    let bytes = serde_json::to_vec(&payload).map_err(|err| ApiError::Internal(err.to_string()))?;
    let delivery = state
        .producer
        .send_bytes(&topic, body.key.as_deref(), &bytes, event.to_headers())
        .await
        .map_err(|err| match err {
            // A client error, not an outage: the same event would be refused again.
            agent_runtime::Error::RecordTooLarge { .. } => {
                ApiError::TooLarge(format!("the event cannot be published: {err}"))
            }
            err => ApiError::Unavailable(format!("the broker did not store the event: {err}")),
        })?;
    tracing::info!(
        partition = delivery.partition,
        offset = delivery.offset,
        "event published"
    );
    Ok(Json(delivery))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LastQuery {
    /// The topic (default: the results topic); in `COMMS_READ_TOPICS`, else 403.
    #[param(
        pattern = r"^(?!\.\.?$)[a-zA-Z0-9._-]{1,249}$",
        example = "dev-langgraph-task-results"
    )]
    topic: Option<String>,
}

/// The newest message of a topic (by timestamp, across partitions), with its key,
/// headers and payload; answered from memory.
#[utoipa::path(
    get,
    path = "/last_message",
    tag = "agent-comms",
    operation_id = "last_message",
    security(("api_key" = [])),
    params(LastQuery),
    responses(
        (status = 200, description = "The newest message", body = LastMessage),
        (status = 400, description = "Not a valid Kafka topic name", body = http::openapi::ErrorBody),
        (status = 403, description = "A topic outside `COMMS_READ_TOPICS`", body = http::openapi::ErrorBody),
        (status = 404, description = "No message on the topic yet, or no such topic", body = http::openapi::ErrorBody),
        (status = 503, description = "The topic was not loaded within 5 s (broker unreachable), or 64 topics are followed already", body = http::openapi::ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(topic))]
pub(crate) async fn last_message(
    State(state): State<AppState>,
    Query(query): Query<LastQuery>,
) -> Result<Response, ApiError> {
    let topic = query.topic.unwrap_or_else(|| state.topics.results.clone());
    if !valid_topic_name(&topic) {
        return Err(ApiError::BadRequest(format!(
            "topic {topic:?} is not a valid Kafka topic name"
        )));
    }
    state.policy.check_read(&topic)?;
    tracing::Span::current().record("topic", topic.as_str());
    match state.last_messages.newest(&topic).await {
        Ok(Some(newest)) => Ok(newest.as_ref().into_response()),
        Ok(None) => Err(ApiError::NotFound(format!(
            "no message on topic {topic} yet"
        ))),
        Err(err @ ReadError::NotReadable { .. }) => Err(ApiError::NotFound(err.to_string())),
        Err(err) => Err(ApiError::Unavailable(err.to_string())),
    }
}
