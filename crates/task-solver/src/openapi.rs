//! The OpenAPI 3.1 document of task-solver ([`document`]): only `/health`, `/ready` and
//! `/metrics`, since the solver takes its work from Kafka. Served as `GET /openapi.json`
//! with Swagger UI at `GET /docs`, and kept in `docs/openapi/task-solver.json` (a test
//! fails when the two differ; regenerate with
//! `UPDATE_OPENAPI=1 cargo test -p task-solver openapi`).

use agent_runtime::http::openapi as shared;
use utoipa::openapi;

/// The document: `/health`, `/ready`, `/metrics` and the error shape.
pub fn document() -> openapi::OpenApi {
    shared::document(
        crate::SERVICE,
        "Consumes tasks from `{prefix}-langgraph-agent-events` in consumer group \
         `task-solver`, solves them with an LLM agent graph and publishes results on \
         `{prefix}-langgraph-task-results`. Over HTTP it answers only the probes and metrics \
         below. Every error is `{\"error\": {\"code\", \"message\"}}`.",
        openapi::OpenApi::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_openapi_document_is_the_code_s() {
        shared::check_committed(crate::SERVICE, &document());
    }
}
