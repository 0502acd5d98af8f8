//! [`Spec`]: a compiled graph's frozen shape — nodes by index, edges by source, fan-in
//! joins, command destinations, the checkpointer (LangGraph's compiled `Pregel` fields:
//! `nodes`, `channels`, `checkpointer`).
//!
//! Built and validated once by [`StateGraph::compile`](crate::graph::StateGraph::compile);
//! every run reads it through an `Arc`, never writes it.

use std::{collections::HashMap, sync::Arc};

use super::checkpoint_codec::Codec;
use crate::graph::{
    Goto, START, State, checkpoint::Checkpointer, node::NodeFn, retry::NodeOptions,
};

/// Where an edge leaves from: the virtual entry, or a node by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// [`START`]: the edges read when a run begins.
    Start,
    /// Node by index.
    Node(usize),
}

/// Where an edge leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Node by index.
    Node(usize),
    /// The virtual exit.
    End,
}

/// A conditional edge's function: the merged state → route keys, node names or `Send`s.
pub(crate) type Router<S> = Arc<dyn Fn(&S) -> Vec<Goto<S>> + Send + Sync>;

/// An edge out of a [`Source`].
pub(crate) enum Edge<S> {
    /// Always to `Target`.
    Fixed(Target),
    /// Wherever the router says.
    Conditional {
        router: Router<S>,
        /// Route key → target; empty when keys are node names.
        map: Vec<(String, Target)>,
    },
}

/// A fan-in edge: `target` runs once all `sources` finished.
pub(crate) struct Join {
    /// Node indices, sorted and distinct.
    pub(crate) sources: Vec<usize>,
    pub(crate) target: Target,
}

/// Everything a compiled graph is made of. Vectors indexed by node hold one entry per
/// node, in the order nodes were added.
pub(crate) struct Spec<S: State> {
    pub(crate) names: Vec<Arc<str>>,
    /// Name → node index.
    pub(crate) index: HashMap<String, usize>,
    pub(crate) nodes: Vec<NodeFn<S>>,
    pub(crate) options: Vec<NodeOptions>,
    /// Edges leaving [`START`] (the entry point).
    pub(crate) start_edges: Vec<Edge<S>>,
    /// Edges leaving each node.
    pub(crate) edges: Vec<Vec<Edge<S>>>,
    pub(crate) joins: Vec<Join>,
    /// Declared command destinations per node.
    pub(crate) destinations: Vec<Vec<Target>>,
    pub(crate) checkpointer: Option<Arc<dyn Checkpointer>>,
    /// Set with the checkpointer: the state's serde, captured where its bounds hold.
    pub(crate) codec: Option<Codec<S>>,
}

impl<S: State> Spec<S> {
    /// The edges leaving `source`.
    pub(crate) fn edges_from(&self, source: Source) -> &[Edge<S>] {
        match source {
            Source::Start => &self.start_edges,
            Source::Node(i) => &self.edges[i],
        }
    }

    /// `source`'s name: a node's, or [`START`].
    pub(crate) fn name_of(&self, source: Source) -> &str {
        match source {
            Source::Start => START,
            Source::Node(i) => &self.names[i],
        }
    }

    /// The label of one superstep in a step path: its nodes' names joined by `|`
    /// (`"a|b"`), as [`GraphError::RecursionLimit`](crate::graph::GraphError) shows them.
    pub(crate) fn step_label(&self, nodes: impl IntoIterator<Item = usize>) -> String {
        nodes
            .into_iter()
            .map(|i| self.names[i].as_ref())
            .collect::<Vec<_>>()
            .join("|")
    }
}
