//! What a node is: an async function of the state and a [`RunContext`].

use std::{
    any::Any,
    fmt,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Command, State};

/// How a [`RetryPolicy`](super::RetryPolicy) should treat an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not said: retried by the default policy.
    Unspecified,
    /// Worth retrying (a timeout, a 429, a dropped connection).
    Transient,
    /// Retrying cannot help (bad input, a refused request).
    Permanent,
}

enum Repr {
    Error {
        error: Box<dyn std::error::Error + Send + Sync + 'static>,
        kind: ErrorKind,
    },
    /// The node called [`RunContext::interrupt`] with no resume value yet.
    Interrupt(Box<Interrupt>),
    /// A subgraph node returned a command for the parent graph (a boxed `Command<S>`;
    /// the mutex keeps `NodeError` `Sync` whatever the update type).
    Parent(std::sync::Mutex<Box<dyn Any + Send>>),
}

/// An error returned by a node. Any `std::error::Error` converts into it with `?`; build
/// one from text with [`NodeError::msg`]; mark it [`transient`](NodeError::transient) or
/// [`permanent`](NodeError::permanent) for retry policies. It also carries the engine's
/// own signals out of a node (an interrupt, a command to the parent graph), so always
/// propagate it with `?`.
pub struct NodeError(Repr);

impl NodeError {
    /// A node error from a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self(Repr::Error {
            error: message.to_string().into(),
            kind: ErrorKind::Unspecified,
        })
    }

    /// An error worth retrying.
    pub fn transient(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self(Repr::Error {
            error: error.into(),
            kind: ErrorKind::Transient,
        })
    }

    /// An error no retry can fix.
    pub fn permanent(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self(Repr::Error {
            error: error.into(),
            kind: ErrorKind::Permanent,
        })
    }

    /// The retry classification (`Unspecified` for engine signals).
    pub fn kind(&self) -> ErrorKind {
        match &self.0 {
            Repr::Error { kind, .. } => *kind,
            _ => ErrorKind::Unspecified,
        }
    }

    /// The underlying error, to downcast to the node's own error type; `None` for engine
    /// signals.
    pub fn inner(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match &self.0 {
            Repr::Error { error, .. } => Some(error.as_ref()),
            _ => None,
        }
    }

    /// Whether this is an engine signal (interrupt, parent command), not a failure.
    pub(crate) fn is_signal(&self) -> bool {
        !matches!(self.0, Repr::Error { .. })
    }

    pub(crate) fn interrupt(interrupt: Interrupt) -> Self {
        Self(Repr::Interrupt(Box::new(interrupt)))
    }

    pub(crate) fn into_interrupt(self) -> Result<Interrupt, Self> {
        match self.0 {
            Repr::Interrupt(interrupt) => Ok(*interrupt),
            other => Err(Self(other)),
        }
    }

    pub(crate) fn parent<S: State>(command: Command<S>) -> Self {
        Self(Repr::Parent(std::sync::Mutex::new(Box::new(command))))
    }

    pub(crate) fn into_parent<S: State>(self) -> Result<Command<S>, Self> {
        match self.0 {
            Repr::Parent(boxed) => {
                let boxed = boxed
                    .into_inner()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match boxed.downcast::<Command<S>>() {
                    Ok(command) => Ok(*command),
                    Err(other) => Err(Self(Repr::Parent(std::sync::Mutex::new(other)))),
                }
            }
            other => Err(Self(other)),
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for NodeError {
    fn from(error: E) -> Self {
        Self(Repr::Error {
            error: Box::new(error),
            kind: ErrorKind::Unspecified,
        })
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Error { error, .. } => fmt::Display::fmt(error, f),
            Repr::Interrupt(i) => write!(f, "interrupted ({})", i.id),
            Repr::Parent(_) => f.write_str("command for the parent graph"),
        }
    }
}

impl fmt::Debug for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Error { error, kind } => write!(f, "NodeError({kind:?}, {error:?})"),
            Repr::Interrupt(i) => write!(f, "NodeError(Interrupt({i:?}))"),
            Repr::Parent(_) => f.write_str("NodeError(ParentCommand)"),
        }
    }
}

/// A pause requested by a node: the run stops, is checkpointed, and `value` is shown to
/// the caller; a later run on the same thread resumes it (LangGraph's `Interrupt`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interrupt {
    /// Unique within the run: `{task id}#{n}` for the node's `n`-th interrupt.
    pub id: String,
    /// The node that paused.
    pub node: String,
    /// What the node wants to show (a question, a draft to approve, …).
    pub value: Value,
}

/// What a node sends to the run's stream while it runs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Emitted {
    /// [`RunContext::emit`]: the `custom` stream mode.
    Custom(Value),
    /// [`RunContext::emit_token`]: the `messages` stream mode.
    Token(String),
}

/// Receives what nodes emit ([`Emitted`]), with the node's name.
pub(crate) type Emitter = Arc<dyn Fn(&str, Emitted) + Send + Sync>;

/// What a node knows of the run it is part of, and its handles on the engine.
pub struct RunContext {
    pub(crate) node: Arc<str>,
    pub(crate) step: usize,
    pub(crate) thread_id: Option<Arc<str>>,
    pub(crate) task_id: Arc<str>,
    pub(crate) attempt: u32,
    /// Resume values for this task's interrupts, in call order (none: `None`).
    pub(crate) resumes: Option<Arc<[Value]>>,
    pub(crate) interrupts_seen: AtomicUsize,
    pub(crate) emitter: Option<Emitter>,
}

impl Clone for RunContext {
    fn clone(&self) -> Self {
        Self {
            node: Arc::clone(&self.node),
            step: self.step,
            thread_id: self.thread_id.clone(),
            task_id: Arc::clone(&self.task_id),
            attempt: self.attempt,
            resumes: self.resumes.clone(),
            interrupts_seen: AtomicUsize::new(self.interrupts_seen.load(Ordering::SeqCst)),
            emitter: self.emitter.clone(),
        }
    }
}

impl fmt::Debug for RunContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunContext")
            .field("node", &self.node)
            .field("step", &self.step)
            .field("thread_id", &self.thread_id)
            .field("task_id", &self.task_id)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl RunContext {
    /// A context for calling a node outside a graph (tests, tools).
    pub fn detached(node: &str) -> Self {
        Self {
            node: Arc::from(node),
            step: 0,
            thread_id: None,
            task_id: Arc::from(format!("0:{node}:0")),
            attempt: 1,
            resumes: None,
            interrupts_seen: AtomicUsize::new(0),
            emitter: None,
        }
    }

    /// The running node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The superstep, counted from 0.
    pub fn step(&self) -> usize {
        self.step
    }

    /// The run's thread id, when the caller gave one ([`super::RunConfig::thread_id`]).
    pub fn thread_id(&self) -> Option<&str> {
        self.thread_id.as_deref()
    }

    /// This task's id, unique within a run: `{step}:{node}:{index}`.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// Which attempt this is (1 on the first, more under a retry policy).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Sends `value` to the run's `custom` stream (e.g. LLM tokens as they come); a no-op
    /// when nobody streams.
    pub fn emit(&self, value: impl Into<Value>) {
        if let Some(emitter) = &self.emitter {
            emitter(&self.node, Emitted::Custom(value.into()));
        }
    }

    /// Sends a piece of an LLM's output, as the model writes it, to the run's `messages`
    /// stream (LangGraph's `stream_mode="messages"`); a no-op when nobody streams. The
    /// pieces a node sends, in order, make up what the model wrote.
    pub fn emit_token(&self, chunk: &str) {
        if let Some(emitter) = &self.emitter {
            emitter(&self.node, Emitted::Token(chunk.to_owned()));
        }
    }

    /// Pauses the run for a human (LangGraph's `interrupt`): the first time, returns an
    /// error carrying `value` — propagate it with `?` — and the run stops, is
    /// checkpointed and reports the interrupt; when the run is resumed with
    /// [`Command::resume`], the node runs again from its start and this call returns the
    /// resume value. A node may interrupt several times; resume values match its calls in
    /// order.
    ///
    /// # Errors
    /// The interrupt signal itself, when no resume value is available yet.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use agent_core::graph::{Command, END, InMemorySaver, RunConfig, RunContext, RunOutcome, START, StateGraph, reducer::{Append, Overwrite}};
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
    /// g.add_node("approve", |_: S, ctx: RunContext| async move {
    ///     let answer = ctx.interrupt(serde_json::json!({"question": "ship it?"}))?;
    ///     Ok(U::default().out(vec![format!("answer: {answer}")]))
    /// })
    /// .add_edge(START, "approve")
    /// .add_edge("approve", END);
    /// let app = g.compile_with_checkpointer(Arc::new(InMemorySaver::new()))?;
    /// let thread = RunConfig::thread("t");
    /// let RunOutcome::Interrupted { interrupts, .. } = app.run(S::default(), thread.clone()).await? else {
    ///     panic!("expected an interrupt");
    /// };
    /// assert_eq!(interrupts[0].value["question"], "ship it?");
    /// let out = app.invoke_with(Command::resume("yes"), thread).await?;
    /// assert_eq!(out.out, [r#"answer: "yes""#]);
    /// # Ok::<(), agent_core::graph::GraphError>(())
    /// # }).unwrap();
    /// ```
    pub fn interrupt(&self, value: impl Into<Value>) -> Result<Value, NodeError> {
        let n = self.interrupts_seen.fetch_add(1, Ordering::SeqCst);
        match self.resumes.as_ref().and_then(|r| r.get(n)) {
            Some(resume) => Ok(resume.clone()),
            None => Err(NodeError::interrupt(Interrupt {
                id: format!("{}#{n}", self.task_id),
                node: self.node.to_string(),
                value: value.into(),
            })),
        }
    }
}

/// A node's body, type-erased.
pub(crate) type NodeFn<S> =
    Arc<dyn Fn(S, RunContext) -> BoxFuture<'static, Result<Command<S>, NodeError>> + Send + Sync>;

/// Boxes an async function returning an update into a [`NodeFn`].
pub(crate) fn update_node<S, F, Fut>(f: F) -> NodeFn<S>
where
    S: State,
    F: Fn(S, RunContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<S::Update, NodeError>> + Send + 'static,
{
    Arc::new(move |state, ctx| {
        let fut = f(state, ctx);
        Box::pin(async move { fut.await.map(Command::update) })
    })
}

/// Boxes an async function returning a [`Command`] into a [`NodeFn`].
pub(crate) fn command_node<S, F, Fut>(f: F) -> NodeFn<S>
where
    S: State,
    F: Fn(S, RunContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Command<S>, NodeError>> + Send + 'static,
{
    Arc::new(move |state, ctx| Box::pin(f(state, ctx)))
}
