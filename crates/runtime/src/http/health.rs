//! `GET /health` (liveness: always 200, says `ok` or `degraded`) and `GET /ready`
//! (readiness: 503 while degraded), for people and Kubernetes probes.

use std::sync::Arc;

use axum::{Router, extract::State, http::StatusCode, routing::get};
use serde::Serialize;
use serde_json::Value;

use super::Json;
use crate::kafka::{BrokerStatus, BrokerWatch, Topics};

/// Facts read afresh at each report (a JSON object), e.g. the LLM concurrency limit now.
type LiveDetails = Arc<dyn Fn() -> Value + Send + Sync>;
type Check = (&'static str, Arc<dyn Fn() -> Option<Value> + Send + Sync>);

/// What a service reports about itself. Never holds a secret.
#[derive(Clone)]
pub struct Health {
    service: &'static str,
    broker: BrokerWatch,
    topics: Topics,
    details: Arc<Value>,
    live: Option<LiveDetails>,
    checks: Vec<Check>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").finish_non_exhaustive()
    }
}

/// The body of `/health` and `/ready`: the fields below, then each service's own
/// (`model`, `llm_endpoint`, `llm_concurrency`, `stalled_partitions`, …).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "status": "ok", "service": "task-generator", "version": "0.1.0",
    "broker": {"reachable": true},
    "topics": {"events": "dev-langgraph-agent-events", "results": "dev-langgraph-task-results",
               "dead_letter": "dev-langgraph-dead-letter", "progress": "dev-langgraph-task-progress"},
    "model": "smollm2", "llm_endpoint": "http://127.0.0.1:8080/v1"
}))]
pub struct HealthReport {
    /// `ok`, or `degraded` when the broker is unreachable or a readiness check fails
    /// (see [`Health::with_check`]).
    #[schema(value_type = String, pattern = "^(ok|degraded)$")]
    pub status: &'static str,
    /// The service name.
    #[schema(value_type = String)]
    pub service: &'static str,
    /// The crate version.
    #[schema(value_type = String)]
    pub version: &'static str,
    /// The broker's last check.
    pub broker: BrokerStatus,
    /// Topic names in force.
    pub topics: Topics,
    /// Service-specific facts (model name, consumer group, …).
    #[serde(flatten)]
    #[schema(ignore)]
    pub details: Value,
}

impl Health {
    /// A health source for `service` (e.g. `task-generator`), with extra `details` (a
    /// JSON object merged into the report; keep secrets out).
    pub fn new(service: &'static str, broker: BrokerWatch, topics: Topics, details: Value) -> Self {
        Self {
            service,
            broker,
            topics,
            details: Arc::new(details),
            live: None,
            checks: Vec::new(),
        }
    }

    /// Adds facts read at each report: `live` returns a JSON object whose fields are
    /// merged into the report (over the static details of the same name).
    #[must_use]
    pub fn with_live(mut self, live: impl Fn() -> Value + Send + Sync + 'static) -> Self {
        self.live = Some(Arc::new(live));
        self
    }

    /// Adds a readiness check: while `check` returns `Some(why)`, the report's status is
    /// `degraded` (so `/ready` answers 503) and its `name` field holds `why` — e.g. the
    /// solver's `stalled_partitions`.
    #[must_use]
    pub fn with_check(
        mut self,
        name: &'static str,
        check: impl Fn() -> Option<Value> + Send + Sync + 'static,
    ) -> Self {
        self.checks.push((name, Arc::new(check)));
        self
    }

    /// The report now.
    pub fn report(&self) -> HealthReport {
        let broker = self.broker.status();
        let mut details = (*self.details).clone();
        if let (Some(live), Value::Object(fields)) = (&self.live, &mut details)
            && let Value::Object(now) = live()
        {
            fields.extend(now);
        }
        let mut failing = false;
        for (name, check) in &self.checks {
            if let Some(why) = check() {
                failing = true;
                if let Value::Object(fields) = &mut details {
                    fields.insert((*name).to_owned(), why);
                }
            }
        }
        HealthReport {
            status: if broker.reachable && !failing {
                "ok"
            } else {
                "degraded"
            },
            service: self.service,
            version: env!("CARGO_PKG_VERSION"),
            broker,
            topics: self.topics.clone(),
            details,
        }
    }
}

/// `GET /health` and `GET /ready` on their own router, to merge into a service's.
pub fn health_routes(health: Health) -> Router {
    Router::new()
        .route("/health", get(liveness))
        .route("/ready", get(readiness))
        .route("/metrics", get(super::metrics::render))
        .with_state(health)
}

/// The document of `GET /health`, `GET /ready` and `GET /metrics`, merged into each
/// service's ([`super::openapi::document`]).
#[derive(utoipa::OpenApi)]
#[openapi(paths(liveness, readiness, super::metrics::render))]
pub(super) struct HealthApi;

/// Liveness: always 200, `ok` or `degraded`.
///
/// `degraded` when the broker is unreachable or a readiness check fails; never a
/// secret.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    operation_id = "health",
    responses((status = 200, description = "The service's report", body = HealthReport))
)]
async fn liveness(State(health): State<Health>) -> Json<HealthReport> {
    Json(health.report())
}

/// Readiness: the same report, 503 while `degraded`.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "health",
    operation_id = "ready",
    responses(
        (status = 200, description = "Ready: `status` is `ok`", body = HealthReport),
        (status = 503, description = "Not ready: `status` is `degraded`, with why", body = HealthReport),
    )
)]
async fn readiness(State(health): State<Health>) -> (StatusCode, Json<HealthReport>) {
    let report = health.report();
    let status = if report.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report))
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        },
        time::Duration,
    };

    use axum::{body::Body, http::Request};
    use rdkafka::mocking::MockCluster;
    use serde_json::{Value, json};
    use tokio_util::sync::CancellationToken;
    use tower::ServiceExt;

    use super::*;
    use crate::kafka::{KafkaSettings, Producer};

    async fn ready(router: &Router) -> (StatusCode, Value) {
        let answer = router
            .clone()
            .oneshot(Request::get("/ready").body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        let status = answer.status();
        let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).expect("JSON"))
    }

    #[tokio::test]
    async fn a_failing_check_makes_ready_fail_and_health_say_why() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        let settings = KafkaSettings::for_brokers(&cluster.bootstrap_servers());
        let stop = CancellationToken::new();
        let producer = Producer::new(&settings, "test").expect("producer");
        let watch = BrokerWatch::spawn(producer, Duration::from_millis(100), stop.clone());
        let stalled = Arc::new(AtomicBool::new(false));
        let health = Health::new("test", watch, settings.topics.clone(), json!({})).with_check(
            "stalled_partitions",
            {
                let stalled = stalled.clone();
                move || {
                    stalled
                        .load(Ordering::SeqCst)
                        .then(|| json!([{"topic": "events", "partition": 1}]))
                }
            },
        );
        let router = health_routes(health.clone());
        for _ in 0..100 {
            if health.report().broker.reachable {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let (status, body) = ready(&router).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.get("stalled_partitions").is_none(), "{body}");

        stalled.store(true, Ordering::SeqCst);
        let (status, body) = ready(&router).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["stalled_partitions"][0]["partition"], 1, "{body}");
        stop.cancel();
    }
}
