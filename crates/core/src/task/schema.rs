//! JSON Schemas of the task records.

use serde_json::{Value, json};

use super::{MAX_NAME_CHARS, Task, TaskResult};

/// The JSON Schema (draft 2020-12) of [`Task`], as written to `docs/schemas/task.json`.
pub fn task_schema() -> Value {
    schemars::schema_for!(Task).to_value()
}

/// The JSON Schema (draft 2020-12) of [`TaskResult`], as written to
/// `docs/schemas/task-result.json`.
pub fn task_result_schema() -> Value {
    schemars::schema_for!(TaskResult).to_value()
}

/// The schema an LLM fills to propose a task: `task_name`, `task_description` and
/// `context`, all strings, all required, nothing else — the subset OpenAI's structured
/// outputs accept in strict mode (`additionalProperties: false`, every key required).
///
/// Key order is kept (serde_json `preserve_order`) so small models fill the fields in the
/// order a person would.
pub fn llm_task_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "task_name": {
                "type": "string",
                "description": format!("A short title for the task, at most {MAX_NAME_CHARS} characters."),
            },
            "task_description": {
                "type": "string",
                "description": "What has to be done, in one or a few sentences.",
            },
            "context": {
                "type": "string",
                "description": "Background from the conversation that the solver needs.",
            },
        },
        "required": ["task_name", "task_description", "context"],
        "additionalProperties": false,
    })
}
