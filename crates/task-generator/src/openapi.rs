//! The OpenAPI 3.1 document of task-generator ([`document`]), served as
//! `GET /openapi.json` with Swagger UI at `GET /docs`, and kept in
//! `docs/openapi/task-generator.json` (a test fails when the two differ; regenerate with
//! `UPDATE_OPENAPI=1 cargo test -p task-generator openapi`).
//!
//! The operations are described where they are handled ([`crate::routes`]); the request
//! bodies, which the handlers check by hand for their messages, are described here
//! ([`GenerateTask`], [`ResumeTask`]) with the same rules.

use agent_runtime::{http::openapi as shared, llm::ChatMessage};
use serde_json::json;
use utoipa::{
    OpenApi, PartialSchema, ToSchema,
    openapi::{
        self, ArrayBuilder, ObjectBuilder, OneOfBuilder, RefOr, Schema, Type,
        extensions::Extensions, schema::AdditionalProperties,
    },
};

use crate::routes::{
    __path_generate_task, __path_resume_task, __path_task_result, __path_task_results,
    __path_task_stream, MAX_CONVERSATION_CHARS,
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn the_committed_openapi_document_is_the_code_s() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/openapi")
            .join(format!("{}.json", crate::SERVICE));
        shared::check_committed(&path, &document(), "task-generator");
    }
}
