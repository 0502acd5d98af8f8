//! `agent-runtime`: what every langgraph-kafka service shares.
//!
//! # Layout
//!
//! - [`config`]: layered [`Settings`](config::Settings) — defaults, then an optional TOML
//!   file (`CONFIG_FILE`), then environment variables — sorted into typed sections, each
//!   owned by the module that reads it ([`KafkaSettings`](kafka::KafkaSettings),
//!   [`LlmSettings`](llm::LlmSettings), [`HttpSettings`](http::HttpSettings),
//!   [`SolverSettings`](config::SolverSettings), [`CommsSettings`](config::CommsSettings));
//!   secrets as `SecretString`.
//! - [`telemetry`]: the tracing subscriber (human or JSON, `LOG_FORMAT`) and W3C
//!   [`TraceContext`](telemetry::TraceContext) for Kafka headers.
//! - [`kafka`]: topic names, the [`Producer`](kafka::Producer), the at-least-once
//!   consumer loop, CloudEvents headers, topic creation, the dead-letter topic and the
//!   broker watch behind `/health`.
//! - [`llm`]: the [`LlmClient`](llm::LlmClient) over async-openai — chat, structured
//!   output under a JSON Schema, timeouts, retries and token usage.
//! - [`http`]: the server every service runs, [`serve`](http::serve) under
//!   [`HttpLimits`](http::HttpLimits) (header-read, keep-alive and body-read timeouts, a
//!   connection limit, graceful shutdown); [`ApiError`](http::ApiError) with JSON bodies
//!   for every error the HTTP layer answers; the `Json`, `Path` and `Query` extractors,
//!   health routes and the tower layers every service uses.
//! - [`checkpoint`]: the graph engine's durable checkpointers,
//!   [`SqliteSaver`](checkpoint::SqliteSaver) in an SQLite file and
//!   [`PostgresSaver`](checkpoint::PostgresSaver) in PostgreSQL (sqlx, migrations in
//!   `migrations/sqlite` and `migrations/postgres`, state stored as content-addressed
//!   blobs so unchanged fields are not copied at every superstep).
//! - [`agents`]: the agent runtime over Kafka — [`AgentRuntime`](agents::AgentRuntime)
//!   with `register`, `subscribe`, `send_message` (request/reply on a shared reply topic,
//!   a partition per caller), `publish_message` and `scatter_gather`.
//! - [`redact`]: removes every configured secret (and any URL's userinfo) from text
//!   before it reaches a log line, an HTTP answer, a result or the dead-letter topic.
//! - [`shutdown`]: one `CancellationToken` fired by SIGTERM or Ctrl-C.
//! - `error`: the crate's [`Error`] and [`Result`].

pub mod agents;
pub mod checkpoint;
pub mod config;
mod error;
pub mod http;
pub mod kafka;
pub mod llm;
pub mod redact;
pub mod shutdown;
pub mod telemetry;

pub use error::{Error, Result};
