//! Agents over HTTP: `POST /request` asks one agent and waits for its reply; `GET /agents`
//! lists the agent instances that answer a `describe` broadcast. Both go through
//! agent-comms' own [`AgentRuntime`] (started with the broker, see [`Agents`]).
//!
//! - `POST /request` `{"agent": type, "payload": <any JSON but null>, "timeout_ms"?: 1 to
//!   300000 (default 30000)}` → 200 `{"reply", "agent_id", "agent_type"}`; 502
//!   `agent_error` with the agent's own `{code, message}` under `error.agent`; 504
//!   `gateway_timeout` when no reply came within `timeout_ms`; 403 for an agent type
//!   outside `COMMS_REQUEST_AGENTS`; 422 for a bad type, payload or timeout; 413 for a
//!   payload over the record limit; 503 before the runtime started, or when it refuses
//!   more waiting requests.
//! - `GET /agents?timeout_ms=` (1 to 5000, default 500) → 200 `{"agents": [...],
//!   "timed_out"}`: the [`AgentDescription`]s gathered within `timeout_ms`.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use agent_runtime::{
    agents::{AgentDescription, AgentRuntime, SendError},
    http::{self, ApiError, Json, Query},
};
use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AppState, openapi};

/// `timeout_ms` of `POST /request` when the body gives none.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// The longest `timeout_ms` of `POST /request` (5 minutes; the route's own time limit is
/// above it).
pub const MAX_REQUEST_TIMEOUT_MS: u64 = 300_000;
/// `timeout_ms` of `GET /agents` when the query gives none.
pub const DEFAULT_DISCOVERY_TIMEOUT_MS: u64 = 500;
/// The longest `timeout_ms` of `GET /agents`.
pub const MAX_DISCOVERY_TIMEOUT_MS: u64 = 5_000;

/// agent-comms' agent runtime, set once it started (it starts with the broker; until
/// then the agent routes answer 503).
#[derive(Debug, Clone, Default)]
pub struct Agents(Arc<OnceLock<AgentRuntime>>);

impl Agents {
    /// Makes `runtime` the one the routes use (the first set stays).
    pub fn set(&self, runtime: AgentRuntime) {
        let _ = self.0.set(runtime);
    }

    /// The runtime, if started.
    pub fn get(&self) -> Option<&AgentRuntime> {
        self.0.get()
    }

    fn started(&self) -> Result<&AgentRuntime, ApiError> {
        self.get().ok_or_else(|| {
            ApiError::Unavailable(
                "the agent runtime has not started yet: the broker has not answered".into(),
            )
        })
    }
}

/// The body of `POST /request`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"agent": "task-solver", "payload": {"task_name": "Summarize notes", "task_description": "Summarize the meeting notes.", "context": "…"}, "timeout_ms": 30000}))]
pub(crate) struct AgentRequest {
    /// The agent type to ask: one in `COMMS_REQUEST_AGENTS`, else 403.
    #[schema(pattern = r"^[a-zA-Z0-9._-]{1,100}$", example = "task-solver")]
    agent: String,
    /// The request's value: any JSON but `null` (for `task-solver`, a task).
    #[schema(schema_with = openapi::any_but_null, required = true)]
    payload: Option<Value>,
    /// How long to wait for the reply, in ms: 1 to 300000; default 30000. A number with
    /// no fraction (`30000.0` too, as JSON Schema's `integer`).
    #[schema(value_type = Option<u64>, nullable, minimum = 1, maximum = 300000, example = 30000)]
    timeout_ms: Option<serde_json::Number>,
}

/// The answer of `POST /request`: the agent's reply.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AgentReply {
    /// The reply, as the agent gave it (for `task-solver`, the task's result).
    #[schema(value_type = Object)]
    reply: Value,
    /// The instance that answered.
    agent_id: String,
    /// The agent type that answered.
    agent_type: String,
}

/// The `error` of a 502 from `POST /request`: the agent failed and said why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AgentErrorBody {
    /// `{"code": "agent_error", "message", "agent": {...}}`.
    error: AgentErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AgentErrorDetail {
    /// Always `agent_error`.
    #[schema(example = "agent_error")]
    code: &'static str,
    /// For people: which agent failed, and its message.
    message: String,
    /// The agent's own error.
    agent: AgentFailure,
}

/// An agent's error, as it replied it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AgentFailure {
    /// The agent's code, e.g. `invalid_task`, `handler_timeout`.
    #[schema(example = "invalid_task")]
    code: String,
    /// The agent's message (secrets removed, at most 4096 bytes).
    message: String,
    /// The agent type that answered.
    agent_type: String,
    /// The instance that answered.
    agent_id: String,
}

/// Why `POST /request` gave no reply.
pub(crate) enum RequestError {
    /// Ours: the request was refused or never answered.
    Api(ApiError),
    /// The agent's: 502 with its error.
    Agent(AgentErrorBody),
}

impl From<ApiError> for RequestError {
    fn from(err: ApiError) -> Self {
        Self::Api(err)
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        match self {
            Self::Api(err) => err.into_response(),
            Self::Agent(body) => (StatusCode::BAD_GATEWAY, Json(body)).into_response(),
        }
    }
}

/// Asks one instance of an agent type and answers its reply: the request goes over
/// Kafka to the type's request topic; the reply comes back on agent-comms' partition of
/// the reply topic.
#[utoipa::path(
    post,
    path = "/request",
    tag = "agent-comms",
    operation_id = "request",
    security(("api_key" = [])),
    request_body(content = AgentRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The agent's reply", body = AgentReply),
        (status = 400, description = "The body is not JSON", body = http::openapi::ErrorBody),
        (status = 403, description = "An agent type outside `COMMS_REQUEST_AGENTS`", body = http::openapi::ErrorBody),
        (status = 413, description = "The body is over 1 MiB, or the request record over the producer's 998,976 bytes", body = http::openapi::ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = http::openapi::ErrorBody),
        (status = 422, description = "No `payload`, a bad agent type, a `timeout_ms` out of range or another field", body = http::openapi::ErrorBody),
        (status = 429, description = "Over the client's rate limit; see `Retry-After`", body = http::openapi::ErrorBody,
         headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 502, description = "The agent failed: its error under `error.agent`", body = AgentErrorBody),
        (status = 503, description = "The agent runtime has not started (broker unreachable), too many requests wait, or the broker refused the request", body = http::openapi::ErrorBody),
        (status = 504, description = "No reply within `timeout_ms`", body = http::openapi::ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(agent))]
pub(crate) async fn request(
    State(state): State<AppState>,
    Json(body): Json<AgentRequest>,
) -> Result<Json<AgentReply>, RequestError> {
    let payload = match body.payload {
        None | Some(Value::Null) => {
            return Err(ApiError::Unprocessable("missing field `payload`".into()).into());
        }
        Some(payload) => payload,
    };
    let timeout_ms = match &body.timeout_ms {
        None => Some(DEFAULT_REQUEST_TIMEOUT_MS),
        Some(number) => whole(number),
    };
    let Some(timeout_ms) = timeout_ms.filter(|ms| (1..=MAX_REQUEST_TIMEOUT_MS).contains(ms)) else {
        return Err(ApiError::Unprocessable(format!(
            "timeout_ms must be a whole number from 1 to {MAX_REQUEST_TIMEOUT_MS}"
        ))
        .into());
    };
    let runtime = state.agents.started()?;
    if !agent_runtime::agents::topics::valid_agent_type(&body.agent) {
        return Err(ApiError::Unprocessable(
            "agent must be 1 to 100 characters of a-z, A-Z, 0-9, '.', '_' or '-'".into(),
        )
        .into());
    }
    state.policy.check_request(&body.agent)?;
    tracing::Span::current().record("agent", body.agent.as_str());
    let timeout = Duration::from_millis(timeout_ms);
    match runtime.send_message(&body.agent, &payload, timeout).await {
        Ok(reply) => Ok(Json(AgentReply {
            reply: reply.value,
            agent_id: reply.agent_id,
            agent_type: reply.agent_type,
        })),
        Err(SendError::Agent {
            code,
            message,
            agent_type,
            agent_id,
        }) => Err(RequestError::Agent(AgentErrorBody {
            error: AgentErrorDetail {
                code: "agent_error",
                message: agent_runtime::redact::redact(&format!(
                    "agent {agent_type} ({agent_id}) failed: {code}: {message}"
                ))
                .into_owned(),
                agent: AgentFailure {
                    code,
                    message,
                    agent_type,
                    agent_id,
                },
            },
        })),
        Err(err) => Err(api_error(err).into()),
    }
}

/// `number` when it is a whole number of `u64`'s range (`30000` or `30000.0`).
fn whole(number: &serde_json::Number) -> Option<u64> {
    number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=9.0e15).contains(f))
            .map(|f| f as u64)
    })
}

/// A [`SendError`] other than an agent's as an HTTP error.
fn api_error(err: SendError) -> ApiError {
    match err {
        SendError::Timeout { .. } => ApiError::GatewayTimeout(err.to_string()),
        SendError::InvalidReply(_) => ApiError::BadGateway(err.to_string()),
        SendError::Invalid(_) => ApiError::Unprocessable(err.to_string()),
        SendError::Runtime(agent_runtime::Error::RecordTooLarge { .. }) => {
            ApiError::TooLarge(format!("the request cannot be sent: {err}"))
        }
        SendError::Busy { .. } | SendError::Closed | SendError::Runtime(_) => {
            ApiError::Unavailable(err.to_string())
        }
        SendError::Agent { .. } => ApiError::BadGateway(err.to_string()),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AgentsQuery {
    /// How long to gather answers, in ms: 1 to 5000; default 500.
    #[param(minimum = 1, maximum = 5000, example = 500)]
    timeout_ms: Option<u64>,
}

/// The answer of `GET /agents`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AgentList {
    /// One per instance that answered within `timeout_ms`, in order of arrival.
    agents: Vec<AgentDescription>,
    /// Whether the time ran out (it does unless 1024 instances answered first).
    timed_out: bool,
}

/// The agent instances running now: a `describe` broadcast over Kafka, and every answer
/// that arrives within `timeout_ms`.
#[utoipa::path(
    get,
    path = "/agents",
    tag = "agent-comms",
    operation_id = "agents",
    security(("api_key" = [])),
    params(AgentsQuery),
    responses(
        (status = 200, description = "The instances that answered", body = AgentList),
        (status = 400, description = "`timeout_ms` is not a number", body = http::openapi::ErrorBody),
        (status = 422, description = "`timeout_ms` out of range", body = http::openapi::ErrorBody),
        (status = 429, description = "Over the client's rate limit; see `Retry-After`", body = http::openapi::ErrorBody,
         headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The agent runtime has not started (broker unreachable), or the broker refused the broadcast", body = http::openapi::ErrorBody),
    )
)]
pub(crate) async fn agents(
    State(state): State<AppState>,
    Query(query): Query<AgentsQuery>,
) -> Result<Json<AgentList>, ApiError> {
    let timeout_ms = query.timeout_ms.unwrap_or(DEFAULT_DISCOVERY_TIMEOUT_MS);
    if !(1..=MAX_DISCOVERY_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(ApiError::Unprocessable(format!(
            "timeout_ms must be 1 to {MAX_DISCOVERY_TIMEOUT_MS}"
        )));
    }
    let runtime = state.agents.started()?;
    let found = runtime
        .discover(Duration::from_millis(timeout_ms))
        .await
        .map_err(api_error)?;
    Ok(Json(AgentList {
        agents: found.agents,
        timed_out: found.timed_out,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_errors_map_to_their_statuses() {
        let timeout = SendError::Timeout {
            target: "task-solver".into(),
            timeout: Duration::from_millis(300),
        };
        let err = api_error(timeout);
        assert_eq!(err.status(), 504);
        assert!(err.to_string().contains("300 ms"), "{err}");
        assert_eq!(api_error(SendError::Closed).status(), 503);
        assert_eq!(api_error(SendError::Busy { limit: 1 }).status(), 503);
        assert_eq!(api_error(SendError::InvalidReply("x".into())).status(), 502);
        let too_large = SendError::Runtime(agent_runtime::Error::RecordTooLarge {
            bytes: 2_000_000,
            limit: 998_976,
        });
        assert_eq!(api_error(too_large).status(), 413);
    }

    #[test]
    fn a_timeout_is_a_whole_number_written_either_way() {
        let number = |json: &str| serde_json::from_str::<serde_json::Number>(json).expect("number");
        assert_eq!(whole(&number("30000")), Some(30_000));
        assert_eq!(whole(&number("30000.0")), Some(30_000));
        assert_eq!(whole(&number("1.5")), None);
        assert_eq!(whole(&number("-1")), None);
        assert_eq!(whole(&number("1e300")), None);
    }
}
