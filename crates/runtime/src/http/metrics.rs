//! Prometheus metrics: the process's recorder (the `metrics` facade with
//! `metrics-exporter-prometheus`), `GET /metrics` in the text exposition format, and the
//! HTTP metrics every route records (`track`, a layer of
//! [`with_common_layers`](super::with_common_layers)):
//!
//! - `http_requests_total{method, route, status}`: requests answered;
//! - `http_request_duration_seconds{method, route, status}`: a histogram of the time to
//!   the answer's head, in seconds.
//!
//! `route` is the matched route template (`/task-result/{task_id}`), never the path a
//! client sent, so the label set stays small whatever the clients send; requests that
//! match no route count under `unmatched`.

use std::{sync::OnceLock, time::Instant};

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Upper bounds of the `http_request_duration_seconds` buckets, in seconds.
const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Upper bounds of the buckets of the slow histograms, in seconds: a model's answer
/// (`llm_request_duration_seconds`), a task from creation to result
/// (`task_latency_seconds`) and an agent request's round trip
/// (`agent_request_duration_seconds`), from 10 ms to 10 minutes.
const LONG_BUCKETS: [f64; 15] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// The histograms with [`LONG_BUCKETS`]. Every histogram needs buckets set here: the
/// exporter renders one without as a summary.
const LONG_HISTOGRAMS: [&str; 3] = [
    "llm_request_duration_seconds",
    "task_latency_seconds",
    "agent_request_duration_seconds",
];

/// The process's Prometheus recorder, installed on first use; `None` when another
/// recorder was installed first (nothing is then rendered). A service calls it before
/// it records anything (a value recorded before is lost).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".into()),
                    &DURATION_BUCKETS,
                )
                .ok()?;
            for name in LONG_HISTOGRAMS {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full(name.into()), &LONG_BUCKETS)
                    .ok()?;
            }
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(err) => {
                    tracing::warn!(error = %err, "no Prometheus recorder: /metrics stays empty");
                    None
                }
            }
        })
        .as_ref()
}

/// `GET /metrics`: every metric of the process, in Prometheus' text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    operation_id = "metrics",
    description = "Every metric of the process in Prometheus' text exposition format 0.0.4: \
        `http_requests_total{method, route, status}` and the histogram \
        `http_request_duration_seconds{method, route, status}` (seconds to the answer's head); \
        `route` is the route's template, `unmatched` for no route.",
    responses((
        status = 200,
        description = "The metrics",
        content_type = "text/plain; version=0.0.4; charset=utf-8",
        body = String,
        example = "http_requests_total{method=\"POST\",route=\"/generate-task\",status=\"200\"} 12\n"
    ))
)]
pub(crate) async fn render() -> Response {
    let body = prometheus()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// Records `http_requests_total` and `http_request_duration_seconds` for one request.
pub(crate) async fn track(request: Request, next: Next) -> Response {
    // Installed before the first request is counted.
    let _ = prometheus();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::{Router, body::Body, http::Request, routing::get};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn requests_are_counted_and_timed_by_route_template_and_status() {
        let app = super::super::with_common_layers(
            Router::new()
                .route("/metrics-test/{id}", get(|| async { "ok" }))
                .route("/metrics", get(render)),
            Duration::from_secs(5),
            None,
        );
        let call = |uri: &str| {
            let request = Request::get(uri).body(Body::empty()).expect("request");
            app.clone().oneshot(request)
        };
        for id in ["a", "b"] {
            let response = call(&format!("/metrics-test/{id}")).await.expect("answer");
            assert_eq!(response.status(), 200);
        }
        let response = call("/metrics-test/a/b/c").await.expect("answer");
        assert_eq!(response.status(), 404);
        let response = call("/metrics").await.expect("answer");
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"text/plain; version=0.0.4; charset=utf-8"[..])
        );
        let text = String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes()
                .to_vec(),
        )
        .expect("UTF-8");
        // The template, not the two paths: one series of 2.
        assert!(
            text.contains(
                r#"http_requests_total{method="GET",route="/metrics-test/{id}",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"http_requests_total{method="GET",route="unmatched",status="404"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#"http_request_duration_seconds_bucket{method="GET",route="/metrics-test/{id}",status="200",le="0.001"}"#),
            "{text}"
        );
        assert!(
            !text.contains("/metrics-test/a"),
            "no raw path as a label: {text}"
        );
    }
}
