//! `agent-core`: the task schema and the graph-workflow engine of langgraph-kafka.
//!
//! This crate is pure: no Kafka, no HTTP, no OpenAI. It builds and tests in seconds, and
//! every service (and users' own agents) builds on it.
//!
//! # Layout
//!
//! - [`task`]: [`Task`](task::Task), [`TaskResult`](task::TaskResult),
//!   [`TaskStatus`](task::TaskStatus), the legacy plain-JSON task of the Python system
//!   ([`TaskDraft`](task::TaskDraft)), validation and the JSON Schemas of both records.
//! - [`graph`]: a LangGraph-style engine — [`StateGraph`](graph::StateGraph) builder,
//!   [`CompiledGraph`](graph::CompiledGraph) executor running in supersteps, conditional
//!   edges, `START`/`END` and a recursion limit.
//! - [`error`]: the crate's [`Error`] enum and [`Result`] alias.

pub mod error;
pub mod graph;
pub mod task;

pub use error::{Error, Result};
