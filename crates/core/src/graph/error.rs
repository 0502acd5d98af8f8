//! [`GraphError`]: why a graph failed to compile or to run.

use super::{CheckpointError, Interrupt, NodeError};

/// Why a graph failed to compile or a run failed.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// Two nodes share a name, or a node uses a reserved or empty name.
    #[error("invalid node name {name:?}: {reason}")]
    InvalidNodeName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An edge names a node that was never added.
    #[error("unknown node {name:?} in {context}")]
    UnknownNode {
        /// The unknown name.
        name: String,
        /// Where it was used, e.g. `edge plan -> solve`.
        context: String,
    },
    /// No edge leaves `START`.
    #[error("the graph has no entry point: add an edge from START")]
    NoEntryPoint,
    /// A node can never reach `END` (it has no outgoing edges, or loops among nodes that
    /// have none to `END`).
    #[error("node {node:?} has no path to END")]
    NoPathToEnd {
        /// The node.
        node: String,
    },
    /// A router or command named a route key or node nobody declared.
    #[error("router of node {node:?} returned {route:?}, which is not one of its targets")]
    UnknownRoute {
        /// The node whose edge or command routed.
        node: String,
        /// What it returned.
        route: String,
    },
    /// The run took more supersteps than the recursion limit allows.
    #[error("recursion limit of {limit} supersteps reached without hitting END; path: {}", path.join(" -> "))]
    RecursionLimit {
        /// The limit in force.
        limit: usize,
        /// The nodes run, step by step (nodes of one step joined by `|`).
        path: Vec<String>,
    },
    /// A node failed (after its retries).
    #[error("node {node:?} failed: {error}")]
    Node {
        /// The node.
        node: String,
        /// Its error.
        error: NodeError,
    },
    /// Several nodes wrote a field without a reducer in one superstep (LangGraph's
    /// `INVALID_CONCURRENT_GRAPH_UPDATE`).
    #[error(
        "field `{field}` received {writes} writes in one superstep but keeps one value: give it a reducer (Append, MergeMap, custom…) or write it from one node per step"
    )]
    ConcurrentUpdate {
        /// The field.
        field: &'static str,
        /// How many writes it got.
        writes: usize,
    },
    /// The state refused an update.
    #[error("invalid update from node {node:?}: {reason}")]
    InvalidUpdate {
        /// The node whose update was refused (empty when the state did not say).
        node: String,
        /// Why.
        reason: String,
    },
    /// The run stopped at interrupts (from [`invoke`](super::CompiledGraph::invoke);
    /// [`run`](super::CompiledGraph::run) returns them as an outcome).
    #[error("run interrupted at {}", interrupts.iter().map(|i| i.id.as_str()).collect::<Vec<_>>().join(", "))]
    Interrupted {
        /// What the nodes asked.
        interrupts: Vec<Interrupt>,
    },
    /// Nothing to resume: no checkpointer, no thread, no checkpoint, or resume values
    /// that match no pending interrupt.
    #[error("cannot resume: {0}")]
    NothingToResume(String),
    /// Saving or loading a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A node of this graph, run as a subgraph, sent a command to its parent graph.
    #[error("a command for the parent graph was sent from a graph run on its own")]
    ParentCommand(NodeError),
}
