//! [`StateGraph`]: the builder.

use std::{future::Future, sync::Arc, time::Duration};

use serde::{Serialize, de::DeserializeOwned};

use super::{
    Command, CompiledGraph, END, Goto, GraphError, NodeError, RetryPolicy, RunConfig, RunContext,
    START, Send, State,
    checkpoint::Checkpointer,
    node::{NodeFn, command_node, update_node},
    pregel::{Codec, Edge, Join, Router, Source, Spec, Target, node_index, validate_graph},
    retry::NodeOptions,
};

/// What a router returns: one or several route keys or node names, or [`Send`]s (each a
/// task of its own in the next superstep). Implemented for `&str`, `String`, [`Send`],
/// [`Goto`] and vectors of them.
pub trait Route<S> {
    /// The destinations.
    fn into_gotos(self) -> Vec<Goto<S>>;
}

impl<S> Route<S> for &str {
    fn into_gotos(self) -> Vec<Goto<S>> {
        vec![Goto::Node(self.to_owned())]
    }
}

impl<S> Route<S> for String {
    fn into_gotos(self) -> Vec<Goto<S>> {
        vec![Goto::Node(self)]
    }
}

impl<S> Route<S> for Send<S> {
    fn into_gotos(self) -> Vec<Goto<S>> {
        vec![Goto::Send(self)]
    }
}

impl<S> Route<S> for Goto<S> {
    fn into_gotos(self) -> Vec<Goto<S>> {
        vec![self]
    }
}

impl<S, R: Route<S>> Route<S> for Vec<R> {
    fn into_gotos(self) -> Vec<Goto<S>> {
        self.into_iter().flat_map(Route::into_gotos).collect()
    }
}

/// Builds a graph of named async nodes over a state `S` (LangGraph's `StateGraph`).
///
/// Methods chain; mistakes (duplicate names, unknown nodes) are reported by
/// [`StateGraph::compile`], which checks the whole graph at once.
pub struct StateGraph<S: State> {
    nodes: Vec<(String, NodeFn<S>, Vec<String>)>,
    edges: Vec<(String, EdgeSpec<S>)>,
    joins: Vec<(Vec<String>, String)>,
    options: Vec<(String, NodeOptions)>,
}

impl<S: State> std::fmt::Debug for StateGraph<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateGraph").finish_non_exhaustive()
    }
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
            joins: Vec::new(),
            options: Vec::new(),
        }
    }

    /// Adds a node: an async function of a state snapshot and the [`RunContext`] that
    /// returns an update. Nodes added earlier have their updates applied first when
    /// several run in one superstep.
    pub fn add_node<F, Fut>(&mut self, name: impl Into<String>, node: F) -> &mut Self
    where
        F: Fn(S, RunContext) -> Fut + std::marker::Send + Sync + 'static,
        Fut: Future<Output = Result<S::Update, NodeError>> + std::marker::Send + 'static,
    {
        self.nodes
            .push((name.into(), update_node(node), Vec::new()));
        self
    }

    /// Adds a node that returns a [`Command`]: an update and where to go next (LangGraph's
    /// `Command(update=…, goto=…)`). `destinations` names where its commands may go (for
    /// [`compile`](Self::compile)'s checks and [`CompiledGraph::draw_mermaid`]); a goto
    /// elsewhere is an error at run time.
    pub fn add_command_node<F, Fut>(
        &mut self,
        name: impl Into<String>,
        destinations: &[&str],
        node: F,
    ) -> &mut Self
    where
        F: Fn(S, RunContext) -> Fut + std::marker::Send + Sync + 'static,
        Fut: Future<Output = Result<Command<S>, NodeError>> + std::marker::Send + 'static,
    {
        let destinations = destinations.iter().map(|d| (*d).to_owned()).collect();
        self.nodes
            .push((name.into(), command_node(node), destinations));
        self
    }

    /// Adds a compiled graph over the same state as a node (a subgraph with shared
    /// keys). It runs to its end on a snapshot of the state; `into_update(before, after)`
    /// turns its final state into this node's update. A command with
    /// [`Command::to_parent`] inside it stops the subgraph and applies here, as this node's
    /// command.
    ///
    /// ```
    /// use agent_core::graph::{END, START, StateGraph, reducer::{Append, Overwrite}};
    /// agent_core::state! {
    ///     /// Example state.
    ///     pub struct S / U {
    ///         /// A counter.
    ///         pub x: u32 => Overwrite,
    ///         /// Outputs, appended.
    ///         pub out: Vec<String> => Append,
    ///     }
    /// }
    /// # futures::executor::block_on(async {
    /// let mut inner = StateGraph::new();
    /// inner.add_node("step", |s: S, _| async move { Ok(U::default().x(s.x + 1)) })
    ///     .add_edge(START, "step")
    ///     .add_edge("step", END);
    /// let mut outer = StateGraph::new();
    /// outer.add_subgraph("inner", inner.compile()?, |_before: &S, after: S| U::default().x(after.x))
    ///     .add_edge(START, "inner")
    ///     .add_edge("inner", END);
    /// let out = outer.compile()?.invoke(S { x: 41, ..S::default() }).await?;
    /// assert_eq!(out.x, 42);
    /// # Ok::<(), agent_core::graph::GraphError>(())
    /// # }).unwrap();
    /// ```
    pub fn add_subgraph<F>(
        &mut self,
        name: impl Into<String>,
        graph: CompiledGraph<S>,
        into_update: F,
    ) -> &mut Self
    where
        F: Fn(&S, S) -> S::Update + std::marker::Send + Sync + 'static,
    {
        let into_update = Arc::new(into_update);
        let node = move |state: S, ctx: RunContext| {
            let graph = graph.clone();
            let into_update = Arc::clone(&into_update);
            async move {
                let before = state.clone();
                let config = RunConfig {
                    thread_id: None,
                    ..RunConfig::default()
                };
                match graph.run_detached(state, config, ctx.emitter.clone()).await {
                    Ok(after) => Ok(Command::update(into_update(&before, after))),
                    Err(GraphError::ParentCommand(signal)) => Err(signal),
                    Err(err) => Err(NodeError::msg(err)),
                }
            }
        };
        self.nodes
            .push((name.into(), command_node(node), Vec::new()));
        self
    }

    /// Adds a fixed edge: after `from` runs, `to` runs in the next superstep. `from` may
    /// be [`START`] (the entry point), `to` may be [`END`].
    pub fn add_edge(&mut self, from: impl Into<String>, to: impl Into<String>) -> &mut Self {
        self.edges.push((from.into(), EdgeSpec::Fixed(to.into())));
        self
    }

    /// Adds a fan-in edge: `to` runs once every node of `from` has finished since its last
    /// run — in the same superstep or not (LangGraph's `add_edge([a, b], c)`).
    ///
    /// ```
    /// use agent_core::graph::{END, START, StateGraph, reducer::{Append, Overwrite}};
    /// agent_core::state! {
    ///     /// Example state.
    ///     pub struct S / U {
    ///         /// A counter.
    ///         pub x: u32 => Overwrite,
    ///         /// Outputs, appended.
    ///         pub out: Vec<String> => Append,
    ///     }
    /// }
    /// # futures::executor::block_on(async {
    /// let mut g = StateGraph::new();
    /// g.add_node("quick", |_: S, _| async { Ok(U::default().out(vec!["quick".to_owned()])) })
    ///     .add_node("slow1", |_: S, _| async { Ok(U::default().out(vec!["slow1".to_owned()])) })
    ///     .add_node("slow2", |_: S, _| async { Ok(U::default().out(vec!["slow2".to_owned()])) })
    ///     .add_node("merge", |s: S, _| async move { Ok(U::default().out(vec![format!("merge saw {}", s.out.len())])) })
    ///     .add_edge(START, "quick")
    ///     .add_edge(START, "slow1")
    ///     .add_edge("slow1", "slow2")
    ///     .add_join_edge(&["quick", "slow2"], "merge")
    ///     .add_edge("merge", END);
    /// let out = g.compile()?.invoke(S::default()).await?;
    /// assert_eq!(out.out.last().map(String::as_str), Some("merge saw 3"));
    /// # Ok::<(), agent_core::graph::GraphError>(())
    /// # }).unwrap();
    /// ```
    pub fn add_join_edge(&mut self, from: &[&str], to: impl Into<String>) -> &mut Self {
        self.joins
            .push((from.iter().map(|s| (*s).to_owned()).collect(), to.into()));
        self
    }

    /// Adds a conditional edge: after `from` runs, `router` reads the merged state and
    /// returns route keys, node names or [`Send`]s. `path_map` maps each key to a node (or
    /// [`END`]); with an empty `path_map` keys are node names (and, as compile cannot know
    /// where the router goes, it is assumed to reach `END`). `Send`s name their node
    /// directly.
    pub fn add_conditional_edges<R, F, K, V>(
        &mut self,
        from: impl Into<String>,
        router: F,
        path_map: impl IntoIterator<Item = (K, V)>,
    ) -> &mut Self
    where
        F: Fn(&S) -> R + std::marker::Send + Sync + 'static,
        R: Route<S>,
        K: Into<String>,
        V: Into<String>,
    {
        let router: Router<S> = Arc::new(move |state: &S| router(state).into_gotos());
        let path_map = path_map
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.edges
            .push((from.into(), EdgeSpec::Conditional { router, path_map }));
        self
    }

    /// Retries `node` under `policy` when it fails.
    pub fn retry_policy(&mut self, node: impl Into<String>, policy: RetryPolicy) -> &mut Self {
        self.options_of(node.into()).retry = Some(policy);
        self
    }

    /// Fails an attempt of `node` that takes longer than `timeout` (with a transient
    /// error, so a retry policy retries it).
    pub fn node_timeout(&mut self, node: impl Into<String>, timeout: Duration) -> &mut Self {
        self.options_of(node.into()).timeout = Some(timeout);
        self
    }

    fn options_of(&mut self, node: String) -> &mut NodeOptions {
        let at = match self.options.iter().position(|(n, _)| *n == node) {
            Some(at) => at,
            None => {
                self.options.push((node, NodeOptions::default()));
                self.options.len() - 1
            }
        };
        &mut self.options[at].1
    }

    /// Validates the graph and freezes it for running, without a checkpointer.
    ///
    /// # Errors
    /// [`GraphError::InvalidNodeName`] for an empty, reserved or duplicate name,
    /// [`GraphError::UnknownNode`] for an edge or option naming a node never added,
    /// [`GraphError::NoEntryPoint`] when no edge leaves `START`, and
    /// [`GraphError::NoPathToEnd`] for a node from which `END` cannot be reached.
    pub fn compile(self) -> Result<CompiledGraph<S>, GraphError> {
        self.build(None, None)
    }

    /// As [`compile`](Self::compile), saving a checkpoint after every superstep of runs
    /// that have a thread id (see [`RunConfig`]), so they can be resumed, inspected,
    /// updated and replayed.
    ///
    /// # Errors
    /// As [`compile`](Self::compile).
    pub fn compile_with_checkpointer(
        self,
        checkpointer: Arc<dyn Checkpointer>,
    ) -> Result<CompiledGraph<S>, GraphError>
    where
        S: Serialize + DeserializeOwned,
        S::Update: Serialize + DeserializeOwned,
    {
        self.build(Some(checkpointer), Some(Codec::new()))
    }

    /// Resolves every name to a node index into a [`Spec`], checking it on the way
    /// ([`node_index`] before, [`validate_graph`] after).
    fn build(
        self,
        checkpointer: Option<Arc<dyn Checkpointer>>,
        codec: Option<Codec<S>>,
    ) -> Result<CompiledGraph<S>, GraphError> {
        let index = node_index(self.nodes.iter().map(|(name, _, _)| name.as_str()))?;
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
        let source = |name: &str, context: &dyn Fn() -> String| -> Result<Source, GraphError> {
            if name == START {
                return Ok(Source::Start);
            }
            if name == END {
                return Err(GraphError::InvalidNodeName {
                    name: name.to_owned(),
                    reason: "no edge may leave END",
                });
            }
            index
                .get(name)
                .map(|&i| Source::Node(i))
                .ok_or_else(|| GraphError::UnknownNode {
                    name: name.to_owned(),
                    context: context(),
                })
        };

        let mut start_edges: Vec<Edge<S>> = Vec::new();
        let mut edges: Vec<Vec<Edge<S>>> = (0..self.nodes.len()).map(|_| Vec::new()).collect();
        for (from, spec) in self.edges {
            let source = source(&from, &|| format!("edge from {from}"))?;
            let edge = match spec {
                EdgeSpec::Fixed(to) => {
                    Edge::Fixed(resolve(&to, &|| format!("edge {from} -> {to}"))?)
                }
                EdgeSpec::Conditional { router, path_map } => {
                    let mut map = Vec::new();
                    for (key, to) in path_map {
                        map.push((key, resolve(&to, &|| format!("path map of {from}"))?));
                    }
                    Edge::Conditional { router, map }
                }
            };
            match source {
                Source::Start => start_edges.push(edge),
                Source::Node(i) => edges[i].push(edge),
            }
        }
        let mut joins = Vec::new();
        for (from, to) in self.joins {
            let context = || format!("join edge {} -> {to}", from.join(", "));
            let mut sources = Vec::new();
            for name in &from {
                match resolve(name, &context)? {
                    Target::Node(i) => sources.push(i),
                    Target::End => {
                        return Err(GraphError::InvalidNodeName {
                            name: name.clone(),
                            reason: "no edge may leave END",
                        });
                    }
                }
            }
            sources.sort_unstable();
            sources.dedup();
            joins.push(Join {
                sources,
                target: resolve(&to, &context)?,
            });
        }
        let mut destinations = Vec::new();
        for (name, _, dests) in &self.nodes {
            let mut targets = Vec::new();
            for d in dests {
                targets.push(resolve(d, &|| format!("destinations of {name}"))?);
            }
            destinations.push(targets);
        }
        let mut options = vec![NodeOptions::default(); self.nodes.len()];
        for (name, opts) in self.options {
            match index.get(&name) {
                Some(&i) => options[i] = opts,
                None => {
                    return Err(GraphError::UnknownNode {
                        context: "retry policy or timeout".into(),
                        name,
                    });
                }
            }
        }
        let names: Vec<Arc<str>> = self
            .nodes
            .iter()
            .map(|(n, _, _)| Arc::from(n.as_str()))
            .collect();
        let spec = Spec {
            names,
            index,
            nodes: self.nodes.into_iter().map(|(_, f, _)| f).collect(),
            options,
            start_edges,
            edges,
            joins,
            destinations,
            checkpointer,
            codec,
        };
        validate_graph(&spec)?;
        Ok(CompiledGraph::new(spec))
    }
}
