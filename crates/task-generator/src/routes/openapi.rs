//! The OpenAPI 3.1 document of task-generator ([`document`]), served as
//! `GET /openapi.json` with Swagger UI at `GET /docs`, and kept in
//! `docs/openapi/task-generator.json` (a test fails when the two differ; regenerate with
//! `UPDATE_OPENAPI=1 cargo test -p task-generator openapi`).
//!
//! The operations are described where they are handled ([`crate::routes`]); the request
//! bodies, which the handlers check by hand for their messages, are described here
//! ([`GenerateTask`], [`ResumeTask`]) with the same rules, and so are the events of the
//! two `text/event-stream` answers ([`TaskEvent`], [`GenerationEvent`]).

use agent_runtime::{http::openapi as shared, llm::ChatMessage};
use serde_json::json;
use utoipa::{
    OpenApi, PartialSchema, ToSchema,
    openapi::{
        self, ArrayBuilder, ObjectBuilder, OneOfBuilder, RefOr, Schema, Type,
        extensions::Extensions, schema::AdditionalProperties,
    },
};

use crate::{
    generation::Accepted,
    routes::{
        __path_generate_task, __path_resume_task, __path_task_result, __path_task_results,
        __path_task_stream, MAX_CONVERSATION_CHARS,
    },
    streams::{
        CustomData, ErrorData, InterruptData, MetadataData, NodeData, ResultData, StatusData,
        TokenData,
    },
};

/// The routes of task-generator, without what [`shared::document`] adds.
#[derive(OpenApi)]
#[openapi(paths(generate_task, task_results, task_result, task_stream, resume_task))]
struct Routes;

/// The document: task-generator's routes, `/health`, `/ready`, `/metrics`, the error
/// shape and the API-key scheme.
pub fn document() -> openapi::OpenApi {
    shared::document(
        crate::SERVICE,
        "Turns a conversation into a task with an LLM graph, publishes it on Kafka \
         (`{prefix}-langgraph-agent-events`, keyed by `task_id`) and serves the results view: \
         each task's status and result as the solvers publish them, live streams of their runs, \
         and human review of paused tasks. Every error is `{\"error\": {\"code\", \"message\"}}`.",
        Routes::openapi(),
    )
}

/// A string holding at least one character that is not white space (the rule of the
/// handlers, which trim what they are sent), at most `max` characters.
fn text(max: usize, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"\S"))
        .max_length(Some(max))
        .description(Some(description))
}

/// `additionalProperties: false`: no field but those named.
fn closed() -> AdditionalProperties<Schema> {
    AdditionalProperties::FreeForm(false)
}

/// The body of `POST /generate-task`: `conversation_history` (a transcript, or a list of
/// messages of which at least one says something; at most 100,000 characters in all, as a
/// transcript of `Role: content` lines) and optionally `human_review`. Other fields are
/// ignored.
#[derive(Debug)]
pub struct GenerateTask;

impl PartialSchema for GenerateTask {
    fn schema() -> RefOr<Schema> {
        let transcript = text(
            MAX_CONVERSATION_CHARS,
            "The conversation as one transcript, e.g. `User: …\\nAssistant: …`",
        );
        let says_something = ObjectBuilder::new()
            .property("content", ObjectBuilder::new().pattern(Some(r"\S")))
            .required("content")
            .build();
        let messages = ArrayBuilder::new()
            .items(openapi::Ref::from_schema_name(ChatMessage::name()))
            .min_items(Some(1))
            .description(Some(
                "Messages, oldest first; at least one has a `content` that is not blank",
            ))
            .extensions(Some(Extensions::from_iter([(
                "contains",
                serde_json::to_value(says_something).unwrap_or_default(),
            )])));
        ObjectBuilder::new()
            .property(
                "conversation_history",
                OneOfBuilder::new().item(transcript).item(messages),
            )
            .required("conversation_history")
            .property(
                "human_review",
                ObjectBuilder::new()
                    .schema_type(openapi::schema::SchemaType::from_iter([
                        Type::Boolean,
                        Type::Null,
                    ]))
                    .description(Some(
                        "Pause after the plan until a person resumes the task \
                         (`POST /task-result/{task_id}/resume`); needs a durable \
                         checkpointer (`CHECKPOINTER=sqlite` or `postgres`). Absent or \
                         `null`: false.",
                    )),
            )
            .examples([json!({"conversation_history": "User: I need help with my project"})])
            .into()
    }
}

impl ToSchema for GenerateTask {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ChatMessage::name().into_owned(), ChatMessage::schema()));
        <ChatMessage as ToSchema>::schemas(schemas);
    }
}

/// The body of `POST /task-result/{task_id}/resume`: `resume`, one of three decisions,
/// and optionally `interrupt_id`, the pause answered. Nothing else.
#[derive(Debug)]
pub struct ResumeTask;

impl PartialSchema for ResumeTask {
    fn schema() -> RefOr<Schema> {
        let null_or = |schema: ObjectBuilder| {
            OneOfBuilder::new()
                .item(schema)
                .item(ObjectBuilder::new().schema_type(Type::Null))
        };
        let approve = ObjectBuilder::new()
            .title(Some("approve"))
            .description(Some("Carry the plan out"))
            .property(
                "approved",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .enum_values(Some([true])),
            )
            .required("approved")
            .additional_properties(Some(closed()));
        let reject = ObjectBuilder::new()
            .title(Some("reject"))
            .description(Some("Plan again, told why (`feedback` may be left out)"))
            .property(
                "approved",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .enum_values(Some([false])),
            )
            .required("approved")
            .property(
                "feedback",
                null_or(text(
                    agent_core::task::MAX_FEEDBACK_CHARS,
                    "Why, for the planner",
                )),
            )
            .additional_properties(Some(closed()));
        let edit = ObjectBuilder::new()
            .title(Some("edit"))
            .description(Some("Carry out this plan instead"))
            .property(
                "plan",
                text(agent_core::task::MAX_PLAN_CHARS, "The plan to carry out"),
            )
            .required("plan")
            .additional_properties(Some(closed()));
        ObjectBuilder::new()
            .property(
                "interrupt_id",
                null_or(text(
                    agent_core::task::MAX_TAG_CHARS,
                    "The pause answered (`result.interrupt.id`); when given, it must be the \
                     task's current one",
                )),
            )
            .property(
                "resume",
                OneOfBuilder::new().item(approve).item(reject).item(edit),
            )
            .required("resume")
            .additional_properties(Some(closed()))
            .examples([json!({"interrupt_id": "1:review:0#0", "resume": {"approved": true}})])
            .into()
    }
}

impl ToSchema for ResumeTask {}

/// The JSON Schema of `T` (its `schemars` derive, the one `docs/schemas/task-stream.json`
/// holds), every subschema inlined so that it stands alone inside the document.
fn json_schema_of<T: schemars::JsonSchema>() -> serde_json::Value {
    schemars::generate::SchemaSettings::draft2020_12()
        .with(|settings| {
            settings.inline_subschemas = true;
            settings.meta_schema = None;
        })
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// One SSE event named `name` whose `data:` is a JSON text of the shape `data`.
///
/// An event is `{"event", "data", "id"?}`, as the event-stream parsers of the WHATWG
/// HTML standard (and schemathesis) read one: `data` a string holding JSON
/// (`contentMediaType: application/json`) of the shape `contentSchema`.
fn sse_event(name: &str, data: serde_json::Value) -> ObjectBuilder {
    let title = data["title"].as_str().unwrap_or(name).to_owned();
    ObjectBuilder::new()
        .title(Some(format!("{name} ({title})")))
        .property(
            "event",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([name])),
        )
        .required("event")
        .property(
            "data",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/json")
                .extensions(Some(Extensions::from_iter([("contentSchema", data)]))),
        )
        .required("data")
        .property(
            "id",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "Where the stream stands: send it back as `Last-Event-ID` to resume \
                     after this event",
                )),
        )
}

/// The events of a task's run, in the order a run sends them: `status` (`running`), then
/// per node `node` (`started`), its `token`s and `custom` values, `node` (`finished`);
/// `interrupt` when it pauses for review; `result` last.
fn run_events() -> Vec<ObjectBuilder> {
    vec![
        sse_event("status", json_schema_of::<StatusData>()),
        sse_event("node", json_schema_of::<NodeData>()),
        sse_event("token", json_schema_of::<TokenData>()),
        sse_event("custom", json_schema_of::<CustomData>()),
        sse_event("interrupt", json_schema_of::<InterruptData>()),
        sse_event("result", json_schema_of::<ResultData>()),
    ]
}

/// One event of `GET /task-result/{task_id}/stream`: `status`, `node`, `token`, `custom`,
/// `interrupt` or `result` (the last), each with an `id` to resume after it.
#[derive(Debug)]
pub struct TaskEvent;

impl PartialSchema for TaskEvent {
    fn schema() -> RefOr<Schema> {
        run_events()
            .into_iter()
            .fold(OneOfBuilder::new(), OneOfBuilder::item)
            .description(Some(
                "One event of a task's stream (the stream is a sequence of them; OpenAPI 3.1 \
                 has no word for that, so this schema describes each event, as OpenAPI \
                 3.2's `itemSchema` does). On the wire: `event: <name>`, `id: <id>`, \
                 `data: <JSON>`.",
            ))
            .into()
    }
}

impl ToSchema for TaskEvent {}

/// One event of `POST /generate-task` with `Accept: text/event-stream`: `metadata`
/// first, `generation` per node of the generating graph, then `task` (the stored task)
/// and the task's run ([`TaskEvent`]) — or `error` last, when the task could not be
/// generated or stored.
#[derive(Debug)]
pub struct GenerationEvent;

impl PartialSchema for GenerationEvent {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(sse_event("metadata", json_schema_of::<MetadataData>()))
            .item(sse_event("generation", json_schema_of::<NodeData>()))
            .item(sse_event("task", json_schema_of::<Accepted>()))
            .item(sse_event("error", json_schema_of::<ErrorData>()))
            .item(openapi::Ref::from_schema_name(TaskEvent::name()))
            .description(Some(
                "One event of the stream of a task being generated, then run: `metadata`, \
                 `generation`s, `task` (these three without an `id`), then the events of \
                 `GET /task-result/{task_id}/stream` ([TaskEvent]); or `error` (without an \
                 `id`) last.",
            ))
            .into()
    }
}

impl ToSchema for GenerationEvent {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((TaskEvent::name().into_owned(), TaskEvent::schema()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_openapi_document_is_the_code_s() {
        shared::check_committed(crate::SERVICE, &document());
    }

    #[test]
    fn the_cursor_is_documented_with_the_pattern_the_view_parses_by() {
        let doc = serde_json::to_value(document()).expect("JSON");
        let cursor = doc["paths"]["/task-results"]["get"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "cursor")
            .expect("a cursor parameter");
        assert_eq!(
            cursor["schema"]["pattern"],
            crate::store::CURSOR_PATTERN,
            "{cursor}"
        );
        let example = cursor["example"].as_str().expect("an example");
        assert!(example.parse::<crate::store::Cursor>().is_ok(), "{example}");
    }

    #[test]
    fn the_last_event_id_is_documented_with_the_pattern_the_stream_parses_by() {
        let doc = serde_json::to_value(document()).expect("JSON");
        let parameters = doc["paths"]["/task-result/{task_id}/stream"]["get"]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for name in ["last_event_id", "Last-Event-ID"] {
            let parameter = parameters
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("no parameter {name}: {parameters:?}"));
            assert_eq!(
                parameter["schema"]["pattern"],
                crate::streams::LAST_EVENT_ID_PATTERN,
                "{parameter}"
            );
        }
    }

    #[test]
    fn each_stream_event_has_a_data_schema_that_stands_alone() {
        for (name, schema) in [
            ("TaskEvent", TaskEvent::schema()),
            ("GenerationEvent", GenerationEvent::schema()),
        ] {
            let schema = serde_json::to_value(schema).expect("JSON");
            let events = schema["oneOf"].as_array().expect("oneOf");
            assert!(events.len() >= 5, "{name}: {schema}");
            for event in events.iter().filter(|e| e.get("$ref").is_none()) {
                let data = &event["properties"]["data"];
                assert_eq!(data["contentMediaType"], "application/json", "{event}");
                assert_eq!(data["contentSchema"]["type"], "object", "{event}");
                assert!(!data.to_string().contains("$ref"), "{name}: {data}");
            }
        }
    }
}
