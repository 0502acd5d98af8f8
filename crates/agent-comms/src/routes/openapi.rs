//! The OpenAPI 3.1 document of agent-comms ([`document`]), served as `GET /openapi.json`
//! with Swagger UI at `GET /docs`, and kept in `docs/openapi/agent-comms.json` (a test
//! fails when the two differ; regenerate with
//! `UPDATE_OPENAPI=1 cargo test -p agent-comms openapi`).

use agent_runtime::http::openapi as shared;
use utoipa::{
    OpenApi,
    openapi::{self, ObjectBuilder, RefOr, Schema, Type, schema::SchemaType},
};

use super::{
    __path_last_message, __path_send_event,
    agents::{__path_agents, __path_request},
};

/// The routes of agent-comms, without what [`shared::document`] adds.
#[derive(OpenApi)]
#[openapi(paths(send_event, last_message, request, agents))]
struct Routes;

/// The document: agent-comms' routes, `/health`, `/ready`, `/metrics`, the error shape
/// and the API-key scheme.
pub fn document() -> openapi::OpenApi {
    shared::document(
        crate::SERVICE,
        "The HTTP⇄Kafka bridge: publishes any JSON to the topics its policy allows \
         (`COMMS_PUBLISH_TOPICS`) and shows the newest message of the topics it may read \
         (`COMMS_READ_TOPICS`); asks an agent over Kafka and answers its reply \
         (`POST /request`, agent types in `COMMS_REQUEST_AGENTS`) and lists the agent \
         instances running (`GET /agents`). Every error is `{\"error\": {\"code\", \"message\"}}`.",
        Routes::openapi(),
    )
}

/// The schema of a JSON value that is anything but `null` (`payload` of
/// `POST /send_event`).
pub(crate) fn any_but_null() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([
            Type::Object,
            Type::Array,
            Type::String,
            Type::Number,
            Type::Integer,
            Type::Boolean,
        ]))
        .description(Some("Any JSON but `null`: the record's value"))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_openapi_document_is_the_code_s() {
        shared::check_committed(crate::SERVICE, &document());
    }

    #[test]
    fn topics_are_documented_with_kafka_s_rule_the_routes_check_by() {
        let doc = serde_json::to_value(document()).expect("JSON");
        let query = doc["paths"]["/last_message"]["get"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "topic")
            .map(|p| p["schema"]["pattern"].clone());
        let body =
            doc["components"]["schemas"]["SendEvent"]["properties"]["topic"]["pattern"].clone();
        for pattern in [query.unwrap_or_default(), body] {
            assert_eq!(pattern, agent_runtime::kafka::TOPIC_NAME_PATTERN);
        }
    }
}
