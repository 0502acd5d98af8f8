//! [`CompiledGraph`]: the superstep executor.

use std::{collections::HashMap, sync::Arc};

use futures::future::join_all;
use tracing::Instrument;

use super::{GraphError, RunContext, State, node::NodeFn};

/// Where an edge leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Node by index.
    Node(usize),
    /// The virtual exit.
    End,
}

impl Target {
    pub(crate) fn reaches(self, reaches_end: &[bool]) -> bool {
        match self {
            Target::End => true,
            Target::Node(i) => reaches_end[i],
        }
    }
}

pub(crate) type Router<S> = Arc<dyn Fn(&S) -> Vec<String> + Send + Sync>;

pub(crate) enum Edge<S> {
    Fixed(Target),
    Conditional {
        router: Router<S>,
        /// Route key → target; empty when keys are node names.
        map: HashMap<String, Target>,
    },
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Most supersteps a run may take before [`GraphError::RecursionLimit`]; default 25.
    pub recursion_limit: usize,
    /// The conversation thread this run belongs to (LangGraph's `thread_id`), passed to
    /// nodes in their [`RunContext`].
    pub thread_id: Option<String>,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            recursion_limit: 25,
            thread_id: None,
        }
    }
}

impl RunConfig {
    /// The default config with `thread_id` set.
    pub fn thread(thread_id: impl Into<String>) -> Self {
        Self {
            thread_id: Some(thread_id.into()),
            ..Self::default()
        }
    }
}

/// A validated graph, ready to run any number of times, concurrently. Cheap to clone.
pub struct CompiledGraph<S: State> {
    inner: Arc<Inner<S>>,
}

impl<S: State> Clone for CompiledGraph<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<S: State> {
    names: Vec<Arc<str>>,
    nodes: Vec<NodeFn<S, S::Update>>,
    /// Slot 0: edges from START; slot i + 1: edges from node i.
    edges: Vec<Vec<Edge<S>>>,
    index: HashMap<String, usize>,
}

impl<S: State> CompiledGraph<S> {
    pub(crate) fn new(
        names: Vec<Arc<str>>,
        nodes: Vec<NodeFn<S, S::Update>>,
        edges: Vec<Vec<Edge<S>>>,
        index: HashMap<String, usize>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                names,
                nodes,
                edges,
                index,
            }),
        }
    }

    /// The node names, in the order they were added.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.inner.names.iter().map(|n| n.as_ref())
    }

    /// Runs the graph from `input` to the end with the default [`RunConfig`] and returns
    /// the final state.
    ///
    /// # Errors
    /// See [`CompiledGraph::invoke_with`].
    pub async fn invoke(&self, input: S) -> Result<S, GraphError> {
        self.invoke_with(input, RunConfig::default()).await
    }

    /// Runs the graph from `input` in supersteps until no node is triggered.
    ///
    /// # Errors
    /// [`GraphError::Node`] for the first failing node of a step (in node order),
    /// [`GraphError::UnknownRoute`] when a router returns a key it did not declare,
    /// [`GraphError::RecursionLimit`] past `config.recursion_limit` supersteps, and
    /// whatever [`State::apply`] returns.
    pub async fn invoke_with(&self, input: S, config: RunConfig) -> Result<S, GraphError> {
        let inner = &*self.inner;
        let thread_id: Option<Arc<str>> = config.thread_id.as_deref().map(Arc::from);
        let mut state = input;
        let mut active = Vec::new();
        self.route(0, &state, &mut active)?;
        let mut path: Vec<String> = Vec::new();
        let mut step = 0;
        while !active.is_empty() {
            path.push(
                active
                    .iter()
                    .map(|&i| inner.names[i].as_ref())
                    .collect::<Vec<_>>()
                    .join("|"),
            );
            if step >= config.recursion_limit {
                return Err(GraphError::RecursionLimit {
                    limit: config.recursion_limit,
                    path,
                });
            }
            let runs = active.iter().map(|&i| {
                let ctx = RunContext {
                    node: Arc::clone(&inner.names[i]),
                    step,
                    thread_id: thread_id.clone(),
                };
                let span = tracing::debug_span!("graph.node", node = %inner.names[i], step);
                (inner.nodes[i])(state.clone(), ctx).instrument(span)
            });
            let outputs = join_all(runs).await;
            // `active` is sorted, so updates apply in node order.
            for (&i, output) in active.iter().zip(outputs) {
                let update = output.map_err(|error| GraphError::Node {
                    node: inner.names[i].to_string(),
                    error,
                })?;
                state.apply(update).map_err(|err| match err {
                    GraphError::InvalidUpdate { node, reason } if node.is_empty() => {
                        GraphError::InvalidUpdate {
                            node: inner.names[i].to_string(),
                            reason,
                        }
                    }
                    other => other,
                })?;
            }
            let mut next = Vec::with_capacity(active.len());
            for &i in &active {
                self.route(i + 1, &state, &mut next)?;
            }
            active = next;
            step += 1;
        }
        Ok(state)
    }

    /// Adds the nodes the edges of `slot` lead to from `state` to `out`, keeping it
    /// sorted and free of duplicates; `END` adds nothing.
    fn route(&self, slot: usize, state: &S, out: &mut Vec<usize>) -> Result<(), GraphError> {
        let inner = &*self.inner;
        for edge in &inner.edges[slot] {
            match edge {
                Edge::Fixed(Target::Node(i)) => out.push(*i),
                Edge::Fixed(Target::End) => {}
                Edge::Conditional { router, map } => {
                    for key in router(state) {
                        let target = if map.is_empty() {
                            match key.as_str() {
                                super::END => Some(Target::End),
                                name => inner.index.get(name).map(|&i| Target::Node(i)),
                            }
                        } else {
                            map.get(&key).copied()
                        };
                        match target {
                            Some(Target::Node(i)) => out.push(i),
                            Some(Target::End) => {}
                            None => {
                                return Err(GraphError::UnknownRoute {
                                    node: match slot {
                                        0 => super::START.to_owned(),
                                        s => inner.names[s - 1].to_string(),
                                    },
                                    route: key,
                                });
                            }
                        }
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(())
    }
}
