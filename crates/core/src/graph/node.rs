//! What a node is: an async function of the state and a [`RunContext`].

use std::{fmt, future::Future, sync::Arc};

use futures::future::BoxFuture;

/// An error returned by a node. Any `std::error::Error` converts into it with `?`; build
/// one from text with [`NodeError::msg`].
pub struct NodeError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl NodeError {
    /// A node error from a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self(message.to_string().into())
    }

    /// The underlying error, to downcast to the node's own error type.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.0.as_ref()
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for NodeError {
    fn from(error: E) -> Self {
        Self(Box::new(error))
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// What a node knows of the run it is part of.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub(crate) node: Arc<str>,
    pub(crate) step: usize,
    pub(crate) thread_id: Option<Arc<str>>,
}

impl RunContext {
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
}

/// A node's body, type-erased.
pub(crate) type NodeFn<S, U> =
    Arc<dyn Fn(S, RunContext) -> BoxFuture<'static, Result<U, NodeError>> + Send + Sync>;

/// Boxes an async function into a [`NodeFn`].
pub(crate) fn node_fn<S, U, F, Fut>(f: F) -> NodeFn<S, U>
where
    F: Fn(S, RunContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<U, NodeError>> + Send + 'static,
{
    Arc::new(move |state, ctx| Box::pin(f(state, ctx)))
}
