//! `agent-core`: the task schema and the graph-workflow engine of langgraph-kafka.
//!
//! This crate is pure: no Kafka, no HTTP, no OpenAI. It builds and tests in seconds, and
//! every service (and users' own agents) builds on it.
//!
//! # Layout
//!
//! One line per module; `graph` is split as LangGraph's `langgraph` package is.
//!
//! - [`task`]: the task schema — [`Task`](task::Task), [`TaskStatus`](task::TaskStatus),
//!   the legacy plain-JSON [`TaskDraft`](task::TaskDraft) of the Python system, validation.
//!   - `task/result.rs`: [`TaskResult`](task::TaskResult), [`TokenUsage`](task::TokenUsage).
//!   - `task/schema.rs`: the JSON Schemas of both records.
//!   - `task/tests.rs`: the schema's unit tests.
//! - [`graph`]: the LangGraph-style engine; [`State`](graph::State), `START`, `END`.
//!   - `graph/builder.rs`: [`StateGraph`](graph::StateGraph) — nodes, edges, `compile`.
//!   - [`graph/reducer.rs`](graph::reducer): per-field reducers and the [`state!`] macro.
//!   - `graph/command.rs`: [`Command`](graph::Command), [`Send`](graph::Send),
//!     [`Goto`](graph::Goto), resume values.
//!   - `graph/node.rs`: what a node is — [`RunContext`](graph::RunContext),
//!     [`NodeError`](graph::NodeError), [`Interrupt`](graph::Interrupt).
//!   - `graph/retry.rs`: [`RetryPolicy`](graph::RetryPolicy) and per-node timeouts.
//!   - `graph/message.rs`: chat [`Message`](graph::Message)s and `add_messages`.
//!   - `graph/pregel/`: how a compiled graph runs, in supersteps (LangGraph's `pregel`):
//!     - `compiled.rs`: [`CompiledGraph`](graph::CompiledGraph) and its methods,
//!       [`RunConfig`](graph::RunConfig), [`Input`](graph::Input),
//!       [`RunOutcome`](graph::RunOutcome) (`pregel/main.py`).
//!     - `spec.rs`: the frozen graph — nodes by index, edges by source, fan-in joins.
//!     - `validate.rs`: compile-time checks (`_validate.py`).
//!     - `superstep.rs`: the superstep loop, one function per step (`_loop.py`).
//!     - `algo.rs`: the next step's tasks; writes merged through the reducers (`_algo.py`).
//!     - `runner.rs`: a step's tasks run concurrently, with retries and timeouts
//!       (`_runner.py`, `_retry.py`).
//!     - `checkpoint_codec.rs`: the loop's state to a checkpoint and back
//!       (`_checkpoint.py`).
//!   - [`graph/checkpoint/`](graph::checkpoint): the [`Checkpointer`](graph::Checkpointer)
//!     trait and the checkpoint formats; `memory.rs`:
//!     [`InMemorySaver`](graph::InMemorySaver).
//!   - `graph/stream.rs`: [`CompiledGraph::stream`](graph::CompiledGraph::stream) and its
//!     modes.
//!   - `graph/mermaid.rs`: [`CompiledGraph::draw_mermaid`](graph::CompiledGraph::draw_mermaid).
//!   - `graph/error.rs`: [`GraphError`](graph::GraphError).
//!   - `graph/tests.rs`: the engine's unit tests (its integration tests: `tests/engine.rs`).
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
