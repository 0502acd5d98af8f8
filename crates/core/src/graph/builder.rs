//! [`StateGraph`]: the builder.

use std::{collections::HashMap, future::Future, sync::Arc};

use super::{
    END, GraphError, NodeError, RunContext, START, State,
    compiled::{CompiledGraph, Edge, Router, Target},
    node::{NodeFn, node_fn},
};

/// What a router returns: one route key or several (several run in parallel in the next
/// superstep). Implemented for `&str`, `String` and vectors of them.
pub trait Route {
    /// The route keys.
    fn into_keys(self) -> Vec<String>;
}

impl Route for &str {
    fn into_keys(self) -> Vec<String> {
        vec![self.to_owned()]
    }
}

impl Route for String {
    fn into_keys(self) -> Vec<String> {
        vec![self]
    }
}

impl<R: Route> Route for Vec<R> {
    fn into_keys(self) -> Vec<String> {
        self.into_iter().flat_map(Route::into_keys).collect()
    }
}

/// Builds a graph of named async nodes over a state `S` (LangGraph's `StateGraph`).
///
/// Methods chain; mistakes (duplicate names, unknown nodes) are reported by
/// [`StateGraph::compile`], which checks the whole graph at once.
pub struct StateGraph<S: State> {
    nodes: Vec<(String, NodeFn<S, S::Update>)>,
    edges: Vec<(String, EdgeSpec<S>)>,
}

enum EdgeSpec<S> {
    Fixed(String),
    Conditional {
        router: Router<S>,
        path_map: Vec<(String, String)>,
    },
}

impl<S: State> Default for StateGraph<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: State> StateGraph<S> {
    /// An empty graph.
    pub fn new() -> Self {
        Self {
            nodes: Vec::new(),
            edges: Vec::new(),
        }
    }

    /// Adds a node: an async function of a state snapshot and the [`RunContext`] that
    /// returns an update. Nodes added earlier have their updates applied first when
    /// several run in one superstep.
    pub fn add_node<F, Fut>(&mut self, name: impl Into<String>, node: F) -> &mut Self
    where
        F: Fn(S, RunContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S::Update, NodeError>> + Send + 'static,
    {
        self.nodes.push((name.into(), node_fn(node)));
        self
    }

    /// Adds a fixed edge: after `from` runs, `to` runs in the next superstep. `from` may
    /// be [`START`] (the entry point), `to` may be [`END`].
    pub fn add_edge(&mut self, from: impl Into<String>, to: impl Into<String>) -> &mut Self {
        self.edges.push((from.into(), EdgeSpec::Fixed(to.into())));
        self
    }

    /// Adds a conditional edge: after `from` runs, `router` reads the merged state and
    /// returns one or several route keys; `path_map` maps each key to a node (or
    /// [`END`]). With an empty `path_map` the keys are node names themselves (and, as
    /// compile cannot know where the router goes, it is assumed to reach `END`).
    pub fn add_conditional_edges<R, F, K, V>(
        &mut self,
        from: impl Into<String>,
        router: F,
        path_map: impl IntoIterator<Item = (K, V)>,
    ) -> &mut Self
    where
        F: Fn(&S) -> R + Send + Sync + 'static,
        R: Route,
        K: Into<String>,
        V: Into<String>,
    {
        let router: Router<S> = Arc::new(move |state: &S| router(state).into_keys());
        let path_map = path_map
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.edges
            .push((from.into(), EdgeSpec::Conditional { router, path_map }));
        self
    }

    /// Validates the graph and freezes it for running.
    ///
    /// # Errors
    /// [`GraphError::InvalidNodeName`] for an empty, reserved or duplicate name,
    /// [`GraphError::UnknownNode`] for an edge naming a node never added,
    /// [`GraphError::NoEntryPoint`] when no edge leaves `START`, and
    /// [`GraphError::NoPathToEnd`] for a node from which `END` cannot be reached.
    pub fn compile(self) -> Result<CompiledGraph<S>, GraphError> {
        let mut index: HashMap<String, usize> = HashMap::new();
        for (i, (name, _)) in self.nodes.iter().enumerate() {
            let reason = if name.is_empty() {
                Some("names must not be empty")
            } else if name == START || name == END {
                Some("START and END are reserved")
            } else if index.contains_key(name) {
                Some("a node of this name was already added")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(GraphError::InvalidNodeName {
                    name: name.clone(),
                    reason,
                });
            }
            index.insert(name.clone(), i);
        }
        let resolve = |name: &str, context: &dyn Fn() -> String| -> Result<Target, GraphError> {
            if name == END {
                Ok(Target::End)
            } else {
                index
                    .get(name)
                    .map(|&i| Target::Node(i))
                    .ok_or_else(|| GraphError::UnknownNode {
                        name: name.to_owned(),
                        context: context(),
                    })
            }
        };

        // Edges indexed by source: slot 0 is START, node i is slot i + 1.
        let mut edges: Vec<Vec<Edge<S>>> = (0..=self.nodes.len()).map(|_| Vec::new()).collect();
        for (from, spec) in self.edges {
            let slot = if from == START {
                0
            } else if from == END {
                return Err(GraphError::InvalidNodeName {
                    name: from,
                    reason: "no edge may leave END",
                });
            } else {
                index
                    .get(&from)
                    .map(|&i| i + 1)
                    .ok_or_else(|| GraphError::UnknownNode {
                        name: from.clone(),
                        context: format!("edge from {from}"),
                    })?
            };
            let edge = match spec {
                EdgeSpec::Fixed(to) => {
                    Edge::Fixed(resolve(&to, &|| format!("edge {from} -> {to}"))?)
                }
                EdgeSpec::Conditional { router, path_map } => {
                    let mut map = HashMap::new();
                    for (key, to) in path_map {
                        let target = resolve(&to, &|| format!("path map of {from}"))?;
                        map.insert(key, target);
                    }
                    Edge::Conditional { router, map }
                }
            };
            edges[slot].push(edge);
        }
        if edges[0].is_empty() {
            return Err(GraphError::NoEntryPoint);
        }

        let names: Vec<Arc<str>> = self
            .nodes
            .iter()
            .map(|(n, _)| Arc::from(n.as_str()))
            .collect();
        check_paths_to_end(&names, &edges)?;
        Ok(CompiledGraph::new(
            names,
            self.nodes.into_iter().map(|(_, f)| f).collect(),
            edges,
            index,
        ))
    }
}

/// Every node must reach `END`: walk the edges backwards from `END`.
fn check_paths_to_end<S>(names: &[Arc<str>], edges: &[Vec<Edge<S>>]) -> Result<(), GraphError> {
    let n = names.len();
    // reaches[i]: node i reaches END.
    let mut reaches = vec![false; n];
    let mut changed = true;
    while changed {
        changed = false;
        for i in 0..n {
            if reaches[i] {
                continue;
            }
            let hit = edges[i + 1].iter().any(|edge| match edge {
                Edge::Fixed(t) => t.reaches(&reaches),
                // An unmapped router may go anywhere, END included.
                Edge::Conditional { map, .. } if map.is_empty() => true,
                Edge::Conditional { map, .. } => map.values().any(|t| t.reaches(&reaches)),
            });
            if hit {
                reaches[i] = true;
                changed = true;
            }
        }
    }
    match reaches.iter().position(|r| !r) {
        Some(i) => Err(GraphError::NoPathToEnd {
            node: names[i].to_string(),
        }),
        None => Ok(()),
    }
}
