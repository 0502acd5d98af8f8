//! task-generator: turns a conversation into a task, publishes it to Kafka, and serves the
//! results view.
//!
//! # Layout
//!
//! - [`startup`]: [`App::build`](startup::App::build) wires settings, Kafka, the LLM and
//!   the routes, binds the port (0 in tests) and runs until the shutdown signal.
//! - [`routes`]: `POST /generate-task`, `GET /task-results`, `GET /task-result/{task_id}`,
//!   `GET /task-result/{task_id}/stream`, `POST /task-result/{task_id}/resume`, plus
//!   `/health` and `/ready`.
//! - [`routes::openapi`]: the service's OpenAPI 3.1 document (`GET /openapi.json`, Swagger UI
//!   at `GET /docs`) and the schemas of the request bodies.
//! - [`resume`]: resuming a task paused for review — the body, the check that the task
//!   waits at the pause answered, the resume published on the events topic.
//! - [`deadline`]: `REVIEW_TIMEOUT_SECS` — a review that waited too long is timed out,
//!   and its task fails.
//! - [`generation`]: the generation graph — normalize the conversation, ask the LLM for a
//!   task under the task schema, validate (re-asking on an invalid answer), publish keyed
//!   by `task_id`.
//! - [`store`]: the results view — every task's latest state — behind the
//!   [`ViewStore`](store::ViewStore) trait: SQLite (default), PostgreSQL, in-memory.
//! - [`reader`]: [`ViewReader`](reader::ViewReader) keeps the store up to date from the
//!   events and results topics, resuming where the store stopped, and knows when it has
//!   caught up.
//! - [`streams`]: live task streams over SSE from the progress topic, one shared reader
//!   per partition, resumable by `Last-Event-ID` on any replica.

pub mod deadline;
pub mod generation;
pub mod reader;
pub mod resume;
pub mod routes;
pub mod startup;
pub mod store;
pub mod streams;

/// The service's name in logs, health and CloudEvents `source`.
pub const SERVICE: &str = "task-generator";
/// The default HTTP port (the Python system's).
pub const DEFAULT_PORT: u16 = 8001;
