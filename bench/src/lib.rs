//! The project's end-to-end pipeline benchmark (`make bench-pipeline`): an OpenAI
//! stand-in for the services to call, and a closed-loop load generator that times each
//! task from its send to its result record on the results topic.
//!
//! Latency of a task = the result record's Kafka timestamp (`CreateTime`, ms) − the moment
//! its task was sent (ms since the epoch), read straight from the results topic, so the
//! HTTP API is never polled. `scripts/bench-pipeline.sh` wires these binaries to a Tansu
//! broker and the release builds of task-generator and task-solver.
//!
//! # Layout
//!
//! - [`agents`]: the agent-runtime benchmark (`make bench-agents`, binary `agent-bench`):
//!   request/reply round trips of `send_message` between two processes over the broker.
//! - [`schema_fill`]: a JSON document that satisfies a JSON Schema, the way the stand-in
//!   answers a structured-output request (`response_format: json_schema`).
//! - [`stand_in`]: the OpenAI-compatible `POST /v1/chat/completions` server with a fixed
//!   delay, an optional limit of requests in flight (`429` + `Retry-After` past it) and
//!   `GET /stats`; binary `openai-stand-in`.
//! - [`results`]: a Kafka consumer positioned at the end of every partition of the
//!   results topic, keeping the first record timestamp seen per task id.
//! - [`load`]: what the load generator sends: [`load::post`] (`POST /generate-task` from C
//!   clients) or [`load::topic`] (tasks produced straight onto the events topic), both
//!   recording send times in a [`load::Sent`].
//! - [`report`]: the one-line JSON summary (throughput, percentiles, lost tasks); binary
//!   `loadgen` prints it.
//! - [`streams`]: the live-streams benchmark (`make bench-streams`, binary
//!   `stream-bench`): time to first token after POST, and what many open streams cost a
//!   task-generator replica next to clients polling.
//! - [`view`]: the results-view benchmark (`make bench-view`, binary `view-bench`): time
//!   to ready, memory and lookup latency of task-generator with many tasks on the topics.

pub mod agents;
pub mod load;
pub mod report;
pub mod results;
pub mod schema_fill;
pub mod stand_in;
pub mod streams;
pub mod view;

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, with sub-millisecond precision; the clock Kafka
/// `CreateTime` timestamps use.
pub fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}
