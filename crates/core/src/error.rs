//! The crate's error type.

/// Every error `agent-core` returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A task or result failed validation; the message names the field.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field, e.g. `task_name`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A value could not be decoded from JSON.
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A graph failed to compile or to run.
    #[error(transparent)]
    Graph(#[from] crate::graph::GraphError),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
