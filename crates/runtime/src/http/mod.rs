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
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(record_response)
                .on_failure(log_failure),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// The span of one request: `method`, `path` and `request_id` for the logs; for an
/// exported span (see [`crate::telemetry`]) OpenTelemetry's HTTP server attributes
/// (`http.request.method`, `http.route`, `url.path`, `http.response.status_code`), named
/// `{method} {route}` (`{method}` alone when no route matched), and the child of the span a `traceparent` header names, if any.
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(axum::extract::MatchedPath::as_str);
    let method = request.method().as_str();
    let span = tracing::info_span!(
        "http",
        method,
        path = %request.uri().path(),
        request_id = header(REQUEST_ID.as_str()).unwrap_or(""),
        otel.name = %route.map_or_else(|| method.to_owned(), |route| format!("{method} {route}")),
        otel.kind = "server",
    );
    if crate::telemetry::exporting() {
        crate::telemetry::follow(
            &span,
            header("traceparent").and_then(crate::telemetry::TraceContext::parse),
        );
    }
    crate::telemetry::annotate(&span, || {
        [
            ("http.request.method", method.to_owned().into()),
            ("http.route", route.unwrap_or_default().to_owned().into()),
            ("url.path", request.uri().path().to_owned().into()),
        ]
    });
    span
}

/// Records the answer's status on the request's exported span, and logs it at DEBUG.
fn record_response<B>(response: &axum::http::Response<B>, latency: Duration, span: &tracing::Span) {
    let status = response.status().as_u16();
    crate::telemetry::annotate(span, || {
        [("http.response.status_code", i64::from(status).into())]
    });
    tracing::debug!(status, latency_ms = latency.as_millis() as u64, "answered");
}

/// What the trace layer logs of a failed request: a 503 (not ready, catching up,
/// broker down: the answer says so, and the service logs the cause when it changes) at
/// DEBUG, so a readiness probe polling a starting service does not log an error each
/// time; any other 5xx, or an error with no answer, at ERROR.
fn log_failure(
    failure: tower_http::classify::ServerErrorsFailureClass,
    latency: Duration,
    _span: &tracing::Span,
) {
    use tower_http::classify::ServerErrorsFailureClass;
    let latency_ms = latency.as_millis() as u64;
    match failure {
        ServerErrorsFailureClass::StatusCode(status) if status.as_u16() == 503 => {
            tracing::debug!(status = status.as_u16(), latency_ms, "answered 503");
        }
        ServerErrorsFailureClass::StatusCode(status) => {
            tracing::error!(status = status.as_u16(), latency_ms, "request failed");
        }
        ServerErrorsFailureClass::Error(error) => {
            tracing::error!(error = %error, latency_ms, "request failed");
        }
    }
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::{body::Body, http::Request, routing::get};
    use tower::ServiceExt;

    use super::*;

    /// A log sink for one test's subscriber.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_503_is_logged_at_debug_and_a_500_at_error() {
        let lines = Lines::default();
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let app = with_common_layers(
            Router::new()
                .route(
                    "/ready",
                    get(|| async { axum::http::StatusCode::SERVICE_UNAVAILABLE }),
                )
                .route(
                    "/broken",
                    get(|| async { axum::http::StatusCode::INTERNAL_SERVER_ERROR }),
                ),
            Duration::from_secs(5),
            None,
        );
        for uri in ["/ready", "/broken"] {
            let request = Request::get(uri).body(Body::empty()).expect("request");
            app.clone().oneshot(request).await.expect("answer");
        }
        let text = String::from_utf8(lines.0.lock().expect("lock").clone()).expect("UTF-8");
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no line with {needle:?} in\n{text}"))
                .to_owned()
        };
        let ready = line("answered 503");
        assert!(
            ready.contains("DEBUG") && ready.contains("/ready"),
            "{ready}"
        );
        let broken = line("request failed");
        assert!(
            broken.contains("ERROR") && broken.contains("/broken"),
            "{broken}"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.contains("ERROR") && l.contains("/ready")),
            "{text}"
        );
    }
}
