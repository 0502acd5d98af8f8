//! [`Command`] and [`Send`]: a node's update together with where to go next.
//!
//! As LangGraph's `Command(update=…, goto=…)` and `Send(node, arg)`: a node added with
//! [`StateGraph::add_command_node`](super::StateGraph::add_command_node) returns a
//! [`Command`] to route and update at once; a router may return [`Send`]s to fan out one
//! node over many inputs (map-reduce), each run as its own task in the next superstep with
//! its own input state.

use serde_json::Value;

use super::State;

/// Run `node` in the next superstep with `arg` as its input state (LangGraph's `Send`).
///
/// ```
/// use agent_core::graph::{END, START, StateGraph, reducer::{Append, Overwrite}};
/// agent_core::state! {
///     /// Example state.
///     pub struct S / U {
///         /// Inputs.
///         pub items: Vec<u32> => Overwrite,
///         /// One input.
///         pub x: u32 => Overwrite,
///         /// Outputs, appended.
///         pub out: Vec<String> => Append,
///     }
/// }
/// # futures::executor::block_on(async {
/// let mut g = StateGraph::new();
/// g.add_node("double", |s: S, _| async move { Ok(U::default().out(vec![(s.x * 2).to_string()])) })
///     .add_conditional_edges(
///         START,
///         |s: &S| s.items.iter().map(|&x| agent_core::graph::Send::new("double", S { x, ..S::default() })).collect::<Vec<_>>(),
///         Vec::<(&str, &str)>::new(),
///     )
///     .add_edge("double", END);
/// let out = g.compile()?.invoke(S { items: vec![1, 2, 3], ..S::default() }).await?;
/// assert_eq!(out.out, ["2", "4", "6"]);
/// # Ok::<(), agent_core::graph::GraphError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Send<S> {
    /// The node to run.
    pub node: String,
    /// Its input.
    pub arg: S,
}

impl<S> Send<S> {
    /// Sends `arg` to `node`.
    pub fn new(node: impl Into<String>, arg: S) -> Self {
        Self {
            node: node.into(),
            arg,
        }
    }
}

/// Where a [`Command`] or a router sends the run next.
#[derive(Debug, Clone, PartialEq)]
pub enum Goto<S> {
    /// A node by name ([`END`](super::END) ends this branch).
    Node(String),
    /// A node with its own input.
    Send(Send<S>),
}

impl<S> From<&str> for Goto<S> {
    fn from(node: &str) -> Self {
        Self::Node(node.to_owned())
    }
}

impl<S> From<String> for Goto<S> {
    fn from(node: String) -> Self {
        Self::Node(node)
    }
}

impl<S> From<Send<S>> for Goto<S> {
    fn from(send: Send<S>) -> Self {
        Self::Send(send)
    }
}

/// Which graph a [`Command`]'s `goto` is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommandGraph {
    /// The graph the node belongs to.
    #[default]
    Current,
    /// The parent graph of the subgraph the node belongs to (LangGraph's
    /// `Command.PARENT`): the subgraph stops, and its node in the parent applies the update
    /// and goes where the command says.
    Parent,
}

/// A node's update and routing (LangGraph's `Command`), or, given to
/// [`CompiledGraph::invoke`](super::CompiledGraph::invoke), the values resuming an
/// interrupted run.
///
/// ```
/// use agent_core::graph::{Command, END, START, StateGraph, reducer::{Append, Overwrite}};
/// agent_core::state! {
///     /// Example state.
///     pub struct S / U {
///         /// Inputs.
///         pub items: Vec<u32> => Overwrite,
///         /// One input.
///         pub x: u32 => Overwrite,
///         /// Outputs, appended.
///         pub out: Vec<String> => Append,
///     }
/// }
/// # futures::executor::block_on(async {
/// let mut g = StateGraph::new();
/// g.add_command_node("route", &["small", "big"], |s: S, _| async move {
///     let next = if s.x < 10 { "small" } else { "big" };
///     Ok(Command::update(U::default().out(vec![format!("routed to {next}")])).and_goto(next))
/// })
/// .add_node("small", |_: S, _| async { Ok(U::default()) })
/// .add_node("big", |_: S, _| async { Ok(U::default()) })
/// .add_edge(START, "route")
/// .add_edge("small", END)
/// .add_edge("big", END);
/// let out = g.compile()?.invoke(S { x: 42, ..S::default() }).await?;
/// assert_eq!(out.out, ["routed to big"]);
/// # Ok::<(), agent_core::graph::GraphError>(())
/// # }).unwrap();
/// ```
pub struct Command<S: State> {
    /// The state update, if any.
    pub update: Option<S::Update>,
    /// Where to go next, added to the node's edges.
    pub goto: Vec<Goto<S>>,
    /// Which graph `goto` is for.
    pub graph: CommandGraph,
    /// Resume values, when this command resumes an interrupted run.
    pub resume: Option<Resume>,
}

/// The values resuming interrupts (see [`interrupt`](super::RunContext::interrupt)).
#[derive(Debug, Clone, PartialEq)]
pub enum Resume {
    /// One value for the single pending interrupt.
    One(Value),
    /// A value per interrupt id, to resume several at once.
    ById(Vec<(String, Value)>),
}

impl<S: State> std::fmt::Debug for Command<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("update", &self.update.as_ref().map(|_| ".."))
            .field(
                "goto",
                &self.goto.iter().map(Goto::node).collect::<Vec<_>>(),
            )
            .field("graph", &self.graph)
            .field("resume", &self.resume)
            .finish()
    }
}

impl<S> Goto<S> {
    /// The destination node's name.
    pub fn node(&self) -> &str {
        match self {
            Self::Node(node) => node,
            Self::Send(send) => &send.node,
        }
    }
}

impl<S: State> Default for Command<S> {
    fn default() -> Self {
        Self {
            update: None,
            goto: Vec::new(),
            graph: CommandGraph::Current,
            resume: None,
        }
    }
}

impl<S: State> Command<S> {
    /// A command that only updates.
    pub fn update(update: S::Update) -> Self {
        Self {
            update: Some(update),
            ..Self::default()
        }
    }

    /// A command that only routes.
    pub fn goto(goto: impl Into<Goto<S>>) -> Self {
        Self {
            goto: vec![goto.into()],
            ..Self::default()
        }
    }

    /// Adds a destination.
    #[must_use]
    pub fn and_goto(mut self, goto: impl Into<Goto<S>>) -> Self {
        self.goto.push(goto.into());
        self
    }

    /// Sets the update.
    #[must_use]
    pub fn with_update(mut self, update: S::Update) -> Self {
        self.update = Some(update);
        self
    }

    /// Makes `goto` (and the update) apply to the parent graph.
    #[must_use]
    pub fn to_parent(mut self) -> Self {
        self.graph = CommandGraph::Parent;
        self
    }

    /// Resumes the single pending interrupt with `value`.
    pub fn resume(value: impl Into<Value>) -> Self {
        Self {
            resume: Some(Resume::One(value.into())),
            ..Self::default()
        }
    }

    /// Resumes several pending interrupts at once, by interrupt id.
    pub fn resume_many(values: impl IntoIterator<Item = (String, Value)>) -> Self {
        Self {
            resume: Some(Resume::ById(values.into_iter().collect())),
            ..Self::default()
        }
    }
}
