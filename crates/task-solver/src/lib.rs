//! task-solver: consumes tasks, solves them with an LLM agent graph, publishes results.
//!
//! # Layout
//!
//! - [`startup`]: [`App::build`](startup::App::build) — health server on port 8002 and the
//!   consumer loop in group `task-solver`, until the shutdown signal.
//! - [`agent`]: the solver as an agent over Kafka — type `task-solver` solves a
//!   requested task and replies with its result; `describe` says who it is.
//! - [`openapi`]: the service's OpenAPI 3.1 document (`GET /openapi.json`, Swagger UI
//!   at `GET /docs`): its health routes.
//! - [`worker`]: [`process`](worker::process), one message's work: parse the task (or send
//!   it to the dead-letter topic), solve it, publish the result and only then let the
//!   loop store the offset.
//! - [`solver`]: the solver graph — plan → (review) → solve → format.
//! - [`review`]: human review — a task paused after `plan` resumed by a person's
//!   decision from the events topic, on whichever replica owns it.
//! - [`progress`]: [`RunProgress`](progress::RunProgress) — a run's `status`, `node`,
//!   `token`, `custom` and `result` events on the progress topic, never holding up the
//!   task.
//! - [`seen`]: [`SeenTasks`](seen::SeenTasks) — one task id names one task; a second,
//!   different body under a known id is dead-lettered.

pub mod agent;
pub mod openapi;
pub mod progress;
pub mod review;
pub mod seen;
pub mod solver;
pub mod startup;
pub mod worker;

/// The service's name in logs, health and CloudEvents `source`.
pub const SERVICE: &str = "task-solver";
/// The default HTTP port (health and readiness).
pub const DEFAULT_PORT: u16 = 8002;
/// The consumer group every solver replica joins.
pub const CONSUMER_GROUP: &str = "task-solver";
/// The file of the checkpoints under `DATA_DIR` with `CHECKPOINTER=sqlite`.
pub const CHECKPOINTS_FILE: &str = "checkpoints.sqlite";
