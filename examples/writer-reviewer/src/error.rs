//! [`Error`]: why [`run`](crate::run) or [`commission`](crate::commission) gave no
//! [`Outcome`](crate::Outcome).

use agent_runtime::agents::SendError;

use crate::brief::BriefError;

/// Why a run gave no outcome. (A draft the reviewer never approved is no error: it is an
/// [`Outcome`](crate::Outcome) with `approved: false`.)
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The brief is not valid.
    #[error("invalid brief: {0}")]
    Brief(#[from] BriefError),
    /// An option is out of range; the message names it.
    #[error("invalid option: {0}")]
    Options(String),
    /// An agent runtime could not start or register its agent type (the broker does not
    /// answer, a Kafka client cannot be created, a topic cannot be created).
    #[error("agent runtime: {0}")]
    Runtime(#[from] agent_runtime::Error),
    /// The agent runtimes did not start within
    /// [`RunOptions::start_timeout`](crate::RunOptions::start_timeout): the broker did not
    /// answer.
    #[error("the agent runtimes did not start within {} s: is the broker at {brokers} up?", timeout.as_secs_f64())]
    StartTimeout {
        /// The bootstrap servers tried.
        brokers: String,
        /// The timeout that ran out.
        timeout: std::time::Duration,
    },
    /// The writer gave no outcome: its error (`SendError::Agent`, with the codes listed at
    /// [`register_writer`](crate::register_writer)), or no reply within the timeout
    /// (`SendError::Timeout`: no writer running, or the reviews took too long).
    #[error("the writer gave no outcome: {0}")]
    Writer(#[source] SendError),
    /// The writer answered something that is no [`Outcome`](crate::Outcome).
    #[error("the writer's reply is no outcome: {0}")]
    InvalidReply(String),
    /// The shutdown token fired before the outcome came.
    #[error("shut down before the outcome came")]
    Shutdown,
}

/// This crate's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
