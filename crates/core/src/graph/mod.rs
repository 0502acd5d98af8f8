//! A LangGraph-style graph-workflow engine, typed and async.
//!
//! A [`StateGraph<S>`] holds named nodes over a state `S`. A node is an async function
//! `(S, RunContext) -> Result<S::Update, NodeError>`: it reads a snapshot of the state and
//! returns an *update*, which the state merges ([`State::apply`]); nodes never mutate the
//! state themselves. Edges are fixed ([`StateGraph::add_edge`]) or conditional
//! ([`StateGraph::add_conditional_edges`]: a router picks one or several next nodes).
//! [`START`] and [`END`] are the virtual entry and exit.
//!
//! [`StateGraph::compile`] validates the graph (unknown node names, no entry point, nodes
//! with no path to `END`) and yields a [`CompiledGraph`] that runs in *supersteps*, as
//! LangGraph's Pregel runtime does: the nodes triggered in one step run concurrently, their
//! updates are merged in the order the nodes were added, then the edges of those nodes pick
//! the next step's nodes. A run stops when no node is triggered, or fails with
//! [`GraphError::RecursionLimit`] (carrying the path taken) after
//! [`RunConfig::recursion_limit`] steps (default 25, as LangGraph).
//!
//! ```
//! use agent_core::graph::{END, NodeError, RunContext, START, State, StateGraph, GraphError};
//!
//! #[derive(Clone, Default)]
//! struct Counter { count: u32, log: Vec<String> }
//!
//! impl State for Counter {
//!     type Update = (u32, String);
//!     fn apply(&mut self, (add, line): Self::Update) -> Result<(), GraphError> {
//!         self.count += add;
//!         self.log.push(line);
//!         Ok(())
//!     }
//! }
//!
//! async fn bump(s: Counter, ctx: RunContext) -> Result<(u32, String), NodeError> {
//!     Ok((1, format!("{} saw {}", ctx.node(), s.count)))
//! }
//!
//! # tokio_test_block_on(async {
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
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     futures::executor::block_on(f)
//! # }
//! ```

mod builder;
mod compiled;
mod error;
mod node;

pub use builder::{Route, StateGraph};
pub use compiled::{CompiledGraph, RunConfig};
pub use error::GraphError;
pub use node::{NodeError, RunContext};

/// Name of the virtual entry node: `add_edge(START, "first")` sets the entry point.
pub const START: &str = "__start__";
/// Name of the virtual exit node: a run ends when every active branch reaches it.
pub const END: &str = "__end__";

/// A graph's state: a snapshot handed to nodes, and the merge of their updates.
///
/// `apply` is the state's reducer: it folds one node's update into the state (overwrite a
/// field, append to a list, …). Within a superstep, updates are applied in the order the
/// nodes were added to the graph, so a run is deterministic whatever order nodes finish in.
pub trait State: Clone + Send + Sync + 'static {
    /// What a node returns: usually a struct of optional fields, or an enum.
    type Update: Send + 'static;

    /// Merges one update into the state.
    ///
    /// # Errors
    /// [`GraphError::InvalidUpdate`] (or any other) to abort the run, e.g. when an update
    /// breaks an invariant of the state.
    fn apply(&mut self, update: Self::Update) -> Result<(), GraphError>;
}

#[cfg(test)]
mod tests;
