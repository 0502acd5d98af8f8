//! HTTP pieces every service shares: the server ([`serve`] under [`HttpLimits`]),
//! [`ApiError`], the [`Json`], [`Path`] and [`Query`] extractors, health routes and the
//! tower layers.
//!
//! Every error answer is JSON `{"error": {"code": "...", "message": "..."}}` with the right
//! status — also those of the HTTP layer: 404 and 405 of the router, 408 of the request,
//! body-read and header-read timeouts, 413 of the body limit, 400 of a path or query that
//! does not parse, 414 and 431 of the head limits, and hyper's own 400, 414 and 431 for a
//! request it cannot parse. An unexpected error or a panic is logged and answered with a
//! bare 500 — never a stack trace, never a secret.
//!
//! # Layout
//!
//! - [`serve`] and [`HttpLimits`] (`server`): connections, their timers and limits,
//!   eviction at the connection limit, graceful shutdown; the transport that rewrites
//!   hyper's own error answers as JSON.
//! - `limits`: the request-head limits ([`MAX_URI_BYTES`], [`MAX_HEADERS`],
//!   [`MAX_HEADER_BYTES`]).
//! - `timeout`: the request timeout and the body-read timeout, answered 408.
//! - `auth`: [`ApiKeys`] and [`require_api_key`] — `API_KEYS`, `Authorization: Bearer`.
//! - `rate_limit`: [`RateLimit`] and [`rate_limited`] — per-client limits on the POST
//!   routes, a JSON 429 with `Retry-After`.
//! - `cors`: [`Cors`] — `CORS_ALLOW_ORIGINS`, which browser pages on other origins may
//!   call the routes.
//! - [`HttpSettings`] (`settings`): the section of the settings the HTTP layer reads.
//! - [`ApiError`] (`error`), the extractors (`extract`), health routes (`health`).
//! - [`openapi`]: the service's OpenAPI 3.1 document (`GET /openapi.json`) and Swagger UI
//!   (`GET /docs`), with the parts every service shares.

mod auth;
mod cors;
mod error;
mod extract;
mod health;
mod limits;
pub mod metrics;
pub mod openapi;
mod rate_limit;
mod server;
mod settings;
mod timeout;

pub use auth::{ApiKeys, require_api_key};
pub use cors::{Cors, PREFLIGHT_MAX_AGE};
pub use error::ApiError;
pub use extract::{Json, Path, Query};
pub use health::{Health, HealthReport, health_routes};
pub use limits::{MAX_HEADER_BYTES, MAX_HEADERS, MAX_URI_BYTES};
pub use rate_limit::{RateLimit, rate_limited};
pub use server::{HttpLimits, serve};
pub use settings::{HttpSettings, RateLimitSettings};

use std::time::Duration;

use axum::{Router, extract::DefaultBodyLimit, http::HeaderName};
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

/// Largest request body accepted, in bytes (1 MiB); larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Adds what every service's router needs: JSON 404 and 405 answers, a 1 MiB body limit,
/// a request timeout (`request_timeout`, answered with a JSON 408), an `x-request-id` on every
/// request (generated when absent, echoed in the answer, recorded on the request's
/// span), a trace span per request, panics turned into a bare JSON 500, and each
/// request counted and timed by route and status ([`metrics`]).
///
/// With `cors` ([`Cors::from_settings`]), the CORS headers of its origins on every answer
/// (the error answers of the layers inside it included) and preflight requests answered
/// before any route's own layers (API keys, rate limit); with `None`, no CORS header.
pub fn with_common_layers(router: Router, request_timeout: Duration, cors: Option<Cors>) -> Router {
    let router = router
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(axum::middleware::from_fn(move |request, next| {
            timeout::request_timeout(request_timeout, request, next)
        }))
        .layer(axum::middleware::from_fn(metrics::track));
    let router = match cors {
        Some(cors) => router.layer(cors.layer()),
        None => router,
    };
    router
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                let request_id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!(
                    "http",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id,
                )
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// Binds `address:port` (port 0 picks a free one).
///
/// # Errors
/// [`crate::Error::Io`] naming the address when the port is taken or not allowed.
pub async fn bind(address: &str, port: u16) -> crate::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind((address, port))
        .await
        .map_err(|err| {
            crate::Error::Io(std::io::Error::new(
                err.kind(),
                format!("cannot listen on {address}:{port}: {err}"),
            ))
        })
}
