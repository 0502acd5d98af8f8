//! The crate's error type.

/// Every error `agent-runtime` returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is missing or invalid; the message names the environment variable.
    #[error("configuration error: {0}")]
    Config(String),
    /// The Kafka client failed (broker unreachable, delivery timed out, …).
    #[error("kafka error: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A record over the producer's limit: its key, value and headers add up to `bytes`,
    /// more than `limit` ([`crate::kafka::Producer::MAX_RECORD_BYTES`]). Refused before it
    /// is sent; sending it again cannot help.
    #[error(
        "record of {bytes} bytes (key, value and headers) is over the producer's limit of {limit} bytes"
    )]
    RecordTooLarge {
        /// The record's key, value and headers, in bytes.
        bytes: usize,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The LLM request failed after its retries.
    #[error("LLM error: {0}")]
    Llm(String),
    /// The model server did not answer within `OPENAI_TIMEOUT_SECS` (not retried by the
    /// client: a graph retry policy may try again).
    #[error("LLM error: {0}")]
    LlmTimeout(String),
    /// The LLM answered, but not in the shape asked for (not JSON, cut off, empty).
    /// Asking again may help.
    #[error("unusable LLM answer: {0}")]
    LlmAnswer(String),
    /// A value could not be encoded or decoded as JSON.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
    /// A task or result failed validation.
    #[error(transparent)]
    Task(#[from] agent_core::Error),
    /// An I/O error (binding a port, reading a file).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether this error is the record's own, so that trying the same record again will
    /// fail the same way: a record the broker can never take (too large, invalid), a
    /// value that cannot be encoded, a task the engine refuses. Everything else — an
    /// unreachable or lagging broker, a missing topic, a checkpoint store that is down —
    /// is the world's, and the record waits for it: the consumer loop dead-letters a
    /// record only after `CONSUMER_MAX_ATTEMPTS` failures of its own.
    pub fn is_permanent(&self) -> bool {
        use rdkafka::{error::KafkaError, types::RDKafkaErrorCode as Code};
        match self {
            Self::Kafka(KafkaError::MessageProduction(code)) => matches!(
                code,
                Code::MessageSizeTooLarge
                    | Code::MessageBatchTooLarge
                    | Code::InvalidMessageSize
                    | Code::InvalidMessage
                    | Code::InvalidRecord
                    | Code::InvalidTimestamp
            ),
            Self::Kafka(_) | Self::Io(_) => false,
            Self::Task(agent_core::Error::Graph(agent_core::graph::GraphError::Checkpoint(_))) => {
                false
            }
            Self::RecordTooLarge { .. }
            | Self::Config(_)
            | Self::Llm(_)
            | Self::LlmTimeout(_)
            | Self::LlmAnswer(_)
            | Self::Json(_)
            | Self::Task(_) => true,
        }
    }

    /// This error as a graph-node error: a timeout or an unusable answer is transient (a
    /// node retry policy may ask again, up to its `max_attempts`), anything else
    /// permanent (the client already retried 429s, 5xx and connection errors).
    pub fn into_node_error(self) -> agent_core::graph::NodeError {
        match self {
            Self::LlmTimeout(_) | Self::LlmAnswer(_) => {
                agent_core::graph::NodeError::transient(self)
            }
            other => agent_core::graph::NodeError::permanent(other),
        }
    }
}
