//! [`GraphError`]: why a graph failed to compile or to run.

use super::NodeError;

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
    /// A router returned a key missing from its path map, or an unknown node.
    #[error("router of node {node:?} returned {route:?}, which is not one of its targets")]
    UnknownRoute {
        /// The node whose conditional edge routed.
        node: String,
        /// What the router returned.
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
    /// A node failed.
    #[error("node {node:?} failed: {error}")]
    Node {
        /// The node.
        node: String,
        /// Its error.
        error: NodeError,
    },
    /// The state refused an update.
    #[error("invalid update from node {node:?}: {reason}")]
    InvalidUpdate {
        /// The node whose update was refused (empty when the state did not say).
        node: String,
        /// Why.
        reason: String,
    },
}
