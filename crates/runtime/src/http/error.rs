//! [`ApiError`]: every HTTP error answer.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

/// An error answered to an HTTP client, as `{"error": {"code", "message"}}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `bad_request`: the body is not JSON, or a parameter is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 401 `unauthorized`: no API key, or not a valid one (see [`ApiKeys`](super::ApiKeys)).
    #[error("{0}")]
    Unauthorized(String),
    /// 403 `forbidden`: the caller may not do this (a topic outside the topic policy).
    #[error("{0}")]
    Forbidden(String),
    /// 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 405 `method_not_allowed`.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// 408 `request_timeout`: the request head, its body or its answer did not come in
    /// time (the header-read, body-read or request timeout).
    #[error("{0}")]
    RequestTimeout(String),
    /// 409 `conflict`: the request does not fit the state of what it names (a resume of
    /// a task that is not waiting for review, or of a pause that is no longer current).
    #[error("{0}")]
    Conflict(String),
    /// 413 `payload_too_large`: over [`super::MAX_BODY_BYTES`].
    #[error("request body is larger than {} bytes", super::MAX_BODY_BYTES)]
    PayloadTooLarge,
    /// 413 `payload_too_large`, with a message naming the limit: the body fits
    /// [`super::MAX_BODY_BYTES`] but what it carries does not fit a smaller limit (a
    /// Kafka record over [`crate::kafka::Producer::MAX_RECORD_BYTES`]).
    #[error("{0}")]
    TooLarge(String),
    /// 414 `uri_too_long`: the request target is over [`super::MAX_URI_BYTES`].
    #[error("{0}")]
    UriTooLong(String),
    /// 415 `unsupported_media_type`: not `Content-Type: application/json`.
    #[error("expected a request with `Content-Type: application/json`")]
    UnsupportedMediaType,
    /// 422 `validation_failed`: JSON of the wrong shape, or a value out of bounds.
    #[error("{0}")]
    Unprocessable(String),
    /// 431 `headers_too_large`: over [`super::MAX_HEADERS`] header fields or
    /// [`super::MAX_HEADER_BYTES`] bytes of them.
    #[error("{0}")]
    HeadersTooLarge(String),
    /// 429 `too_many_requests`: over the rate limit; the answer says when to retry.
    #[error("{0}")]
    TooManyRequests(String),
    /// 502 `bad_gateway`: an upstream (the LLM) failed or answered nonsense.
    #[error("{0}")]
    BadGateway(String),
    /// 503 `unavailable`: the broker did not acknowledge in time, or is unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// 504 `gateway_timeout`: the agent asked gave no reply within the caller's timeout.
    #[error("{0}")]
    GatewayTimeout(String),
    /// 503 `catching_up`: a view is still reading what was written before it started,
    /// so it cannot yet say that something does not exist; answered with
    /// `Retry-After: 1`.
    #[error("{0}")]
    CatchingUp(String),
    /// 500 `internal`: logged with its cause, answered without it.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge | Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) | Self::CatchingUp(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable `code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout(_) => "request_timeout",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge | Self::TooLarge(_) => "payload_too_large",
            Self::UriTooLong(_) => "uri_too_long",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Unprocessable(_) => "validation_failed",
            Self::HeadersTooLarge(_) => "headers_too_large",
            Self::TooManyRequests(_) => "too_many_requests",
            Self::BadGateway(_) => "bad_gateway",
            Self::Unavailable(_) => "unavailable",
            Self::GatewayTimeout(_) => "gateway_timeout",
            Self::CatchingUp(_) => "catching_up",
            Self::Internal(_) => "internal",
        }
    }

    /// The JSON body: `{"error": {"code": ..., "message": ...}}`, every registered
    /// secret removed from the message ([`crate::redact`]): a message may quote an
    /// upstream error.
    pub fn body(&self) -> serde_json::Value {
        let message = crate::redact::redact(&self.to_string()).into_owned();
        json!({"error": {"code": self.code(), "message": message}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(cause = %cause, "internal error");
        }
        if let Self::CatchingUp(_) = &self {
            let retry = [(axum::http::header::RETRY_AFTER, "1")];
            return (self.status(), retry, Json(self.body())).into_response();
        }
        (self.status(), Json(self.body())).into_response()
    }
}

impl From<agent_core::Error> for ApiError {
    fn from(err: agent_core::Error) -> Self {
        match err {
            agent_core::Error::Invalid { .. } => Self::Unprocessable(err.to_string()),
            agent_core::Error::Json(_) => Self::BadRequest(err.to_string()),
            agent_core::Error::Graph(_) => Self::Internal(err.to_string()),
        }
    }
}

/// The answer to a panic in a handler: logged, then a bare 500.
pub(crate) fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    ApiError::Internal(format!("handler panicked: {detail}")).into_response()
}
