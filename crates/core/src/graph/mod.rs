//! A LangGraph-style graph-workflow engine, typed and async.
//!
//! A [`StateGraph<S>`] holds named nodes over a state `S`. A node is an async function
//! `(S, RunContext) -> Result<S::Update, NodeError>` (or returning a [`Command`]): it reads
//! a snapshot of the state and returns an *update*; the state merges the updates of a
//! superstep through its per-field [reducers](reducer) ([`State::apply_step`]). Nodes
//! never mutate the state themselves. Edges are fixed ([`StateGraph::add_edge`]),
//! conditional ([`StateGraph::add_conditional_edges`]: a router picks one or several next
//! nodes, or fans out with [`Send`]) or fan-in ([`StateGraph::add_join_edge`]). [`START`]
//! and [`END`] are the virtual entry and exit.
//!
//! [`StateGraph::compile`] validates the graph (unknown node names, no entry point, nodes
//! with no path to `END`) and yields a [`CompiledGraph`] that runs in *supersteps*, as
//! LangGraph's Pregel runtime does: the tasks of one step run concurrently, their updates
//! are merged in task order, then edges, commands and sends pick the next step's tasks. A
//! run stops when no task is left, or fails with [`GraphError::RecursionLimit`] (carrying
//! the path taken) after [`RunConfig::recursion_limit`] steps (default 25, as LangGraph).
//!
//! Compiled with a [`Checkpointer`], a run with a thread id saves a [`Checkpoint`] after
//! every superstep: it can be inspected ([`CompiledGraph::get_state`],
//! [`CompiledGraph::get_state_history`]), edited ([`CompiledGraph::update_state`]),
//! resumed after a crash or an [interrupt](RunContext::interrupt), or replayed from any
//! earlier checkpoint. Nodes can retry with backoff ([`RetryPolicy`]), time out, and
//! [stream](CompiledGraph::stream) their own events.
//!
//! # Layout
//!
//! - `builder.rs`: [`StateGraph`] — nodes, edges, [`compile`](StateGraph::compile).
//! - [`reducer`]: per-field reducers and the [`state!`](crate::state) macro.
//! - `command.rs`: [`Command`], [`Send`], [`Goto`], [`Resume`].
//! - `node.rs`: what a node is — [`RunContext`], [`NodeError`], [`Interrupt`].
//! - `retry.rs`: [`RetryPolicy`] and per-node timeouts ([`NodeOptions`]).
//! - `message.rs`: chat [`Message`]s and [`add_messages`].
//! - `pregel/`: the runtime, split as LangGraph's `pregel` package:
//!   - `compiled.rs`: [`CompiledGraph`] and its methods, [`RunConfig`], [`Input`],
//!     [`RunOutcome`] (`main.py`).
//!   - `spec.rs`: the frozen graph — nodes by index, edges by source, fan-in joins.
//!   - `validate.rs`: compile-time checks (`_validate.py`).
//!   - `superstep.rs`: the superstep loop, one function per step (`_loop.py`).
//!   - `algo.rs`: the next step's tasks; writes merged through the reducers (`_algo.py`).
//!   - `runner.rs`: a step's tasks run concurrently, with retries and timeouts
//!     (`_runner.py`, `_retry.py`).
//!   - `checkpoint_codec.rs`: the loop's state to a [`Checkpoint`] and back
//!     (`_checkpoint.py`).
//! - [`checkpoint`]: the [`Checkpointer`] trait and the checkpoint formats; `memory.rs`:
//!   [`InMemorySaver`].
//! - `stream.rs`: [`CompiledGraph::stream`], [`StreamMode`]s and [`StreamEvent`]s.
//! - `mermaid.rs`: [`CompiledGraph::draw_mermaid`].
//! - `error.rs`: [`GraphError`].
//! - `tests.rs`: the engine's unit tests (its integration tests: `tests/engine.rs`).
//!
//! ```
//! use agent_core::graph::{END, GraphError, NodeError, RunContext, START, StateGraph, reducer::{Append, Overwrite}};
//!
//! agent_core::state! {
//!     /// A counter with a log.
//!     pub struct Counter / CounterUpdate {
//!         /// How far we counted.
//!         pub count: u32 => Overwrite,
//!         /// One line per step.
//!         pub log: Vec<String> => Append,
//!     }
//! }
//!
//! async fn bump(s: Counter, ctx: RunContext) -> Result<CounterUpdate, NodeError> {
//!     Ok(CounterUpdate::default()
//!         .count(s.count + 1)
//!         .log(vec![format!("{} saw {}", ctx.node(), s.count)]))
//! }
//!
//! # futures::executor::block_on(async {
//! let mut graph = StateGraph::new();
//! graph
//!     .add_node("bump", bump)
//!     .add_edge(START, "bump")
//!     .add_conditional_edges("bump", |s: &Counter| if s.count < 3 { "again" } else { "done" },
//!         [("again", "bump"), ("done", END)]);
//! let app = graph.compile()?;
//! let out = app.invoke(Counter::default()).await?;
//! assert_eq!(out.count, 3);
//! assert_eq!(out.log[2], "bump saw 2");
//! # Ok::<(), GraphError>(())
//! # }).unwrap();
//! ```

mod builder;
pub mod checkpoint;
mod command;
mod error;
mod mermaid;
mod message;
mod node;
mod pregel;
pub mod reducer;
mod retry;
mod stream;

pub use builder::{Route, StateGraph};
pub use checkpoint::{
    Checkpoint, CheckpointError, CheckpointSource, CheckpointTuple, Checkpointer, Durability,
    InMemorySaver, PendingWrite, StateSnapshot,
};
pub use command::{Command, CommandGraph, Goto, Resume, Send};
pub use error::GraphError;
pub use message::{Message, add_messages};
pub use node::{ErrorKind, Interrupt, NodeError, RunContext};
pub use pregel::{CompiledGraph, Input, RunConfig, RunOutcome};
pub use retry::{NodeOptions, RetryPolicy};
pub use stream::{DebugEvent, StreamEvent, StreamMode};

/// Name of the virtual entry node: `add_edge(START, "first")` sets the entry point.
pub const START: &str = "__start__";
/// Name of the virtual exit node: a run ends when every active branch reaches it.
pub const END: &str = "__end__";

/// A graph's state: a snapshot handed to nodes, and the merge of their updates.
///
/// Declare one with the [`state!`](crate::state) macro (per-field reducers, concurrent
/// writes checked), or implement it by hand: `apply` folds one node's update into the
/// state; `apply_step` merges all updates of one superstep, in task order (by default one
/// `apply` after the other).
pub trait State: Clone + std::marker::Send + Sync + 'static {
    /// What a node returns: usually a struct of optional fields, or an enum.
    type Update: std::marker::Send + 'static;

    /// Merges one update into the state.
    ///
    /// # Errors
    /// [`GraphError::InvalidUpdate`] (or any other) to abort the run, e.g. when an update
    /// breaks an invariant of the state.
    fn apply(&mut self, update: Self::Update) -> Result<(), GraphError>;

    /// Merges the updates of one superstep, in task order.
    ///
    /// # Errors
    /// As [`State::apply`]; [`GraphError::ConcurrentUpdate`] for a field without a
    /// reducer written twice.
    fn apply_step(&mut self, updates: Vec<Self::Update>) -> Result<(), GraphError> {
        for update in updates {
            self.apply(update)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
