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
//!   [`state!`] states with per-field reducers, [`CompiledGraph`](graph::CompiledGraph)
//!   executor running in supersteps, conditional and fan-in edges, `Send`, `Command`,
//!   subgraphs, checkpointers, interrupts, retry policies, streaming and Mermaid output.
//! - [`error`]: the crate's [`Error`] enum and [`Result`] alias.

// Lets `state!` name this crate as `::agent_core` inside the crate too.
extern crate self as agent_core;

pub mod error;
pub mod graph;
pub mod task;

pub use error::{Error, Result};

#[doc(hidden)]
pub mod __private {
    pub use serde;
}
