//! The agent runtime: agents that talk to agents over Kafka — request/reply
//! (`send_message`), broadcast (`publish_message`) and scatter-gather — for any Rust
//! agent, ours and users'.
//!
//! The patterns are AutoGen's (its Kafka runtime's `send_message`, an RPC with a reply
//! and a timeout, and `publish_message`, a broadcast to a topic's subscribers) and the
//! scatter-gather of the enterprise integration patterns (broadcast a request, collect
//! the replies that arrive within a window). The faults they guard against are those
//! users of such runtimes report: a worker's error surfacing as a client timeout
//! (calf-ai/calfkit-sdk#143), no dead-letter topic (#221), at-most-once crash windows
//! (#218).
//!
//! ```no_run
//! use std::time::Duration;
//! use agent_runtime::agents::{AgentError, AgentRuntime, RuntimeOptions};
//! use agent_runtime::kafka::KafkaSettings;
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = KafkaSettings::for_brokers("localhost:9092");
//! let runtime = AgentRuntime::start(&settings, "pod-1", RuntimeOptions::default(), CancellationToken::new())
//!     .await?
//!     .expect("not shut down");
//! runtime
//!     .register("echo", |request| async move {
//!         match request.value.get("text") {
//!             Some(text) => Ok(serde_json::json!({ "echo": text })),
//!             None => Err(AgentError::new("invalid_input", "no text")),
//!         }
//!     })
//!     .await?;
//! let reply = runtime
//!     .send_message("echo", &serde_json::json!({"text": "hi"}), Duration::from_secs(5))
//!     .await?;
//! assert_eq!(reply.value["echo"], "hi");
//! # Ok(()) }
//! ```
//!
//! # Topics and groups
//!
//! | topic | key | written by | read by |
//! |---|---|---|---|
//! | `{prefix}-agent-requests-{type}` (one per agent type) | correlation id | `send_message` | the type's instances, group `{prefix}-agent.{type}` |
//! | any topic subscribed to | correlation id | `publish_message`, `scatter_gather`, any JSON producer | each subscribed type, group `{prefix}-agent.{type}+{topic}` |
//! | `{prefix}-agent-replies` (`KAFKA_PARTITIONS` partitions) | correlation id | responders, to the caller's partition | each caller instance, its one partition |
//! | `{prefix}-agent-describe` | correlation id | `discover`, to partition 0 | every instance serving a description, by assignment ([`discovery`]) |
//! | the dead-letter topic | original key | responders: records that are no valid request | operators |
//!
//! Requests and replies carry CloudEvents headers
//! ([`AGENT_REQUEST`](crate::kafka::headers::AGENT_REQUEST),
//! [`AGENT_REPLY`](crate::kafka::headers::AGENT_REPLY),
//! [`AGENT_ERROR`](crate::kafka::headers::AGENT_ERROR),
//! [`AGENT_MESSAGE`](crate::kafka::headers::AGENT_MESSAGE)) and the caller's W3C
//! `traceparent`, which the reply continues; the agent headers are listed in
//! [`envelope`].
//!
//! # The reply path: one shared reply topic, a partition per caller
//!
//! Every caller instance reads exactly one partition of one shared reply topic,
//! `{prefix}-agent-replies`: the CRC-32 of its instance id modulo the partition count.
//! It reads it by assignment — no consumer group, nothing committed — from the end the
//! partition had when the runtime started. A request names that topic and partition
//! (`agent_reply_topic`, `agent_reply_partition`); the responder produces its reply to
//! exactly that partition; the caller hands each reply to the request waiting for its
//! correlation id and drops the others (late replies, or those of other instances
//! hashed to the same partition).
//!
//! Why not a reply topic per caller instance (the other common design): pods come and go,
//! and each would need its topic created, authorized (ACLs for a principal that may
//! create and read topics by pattern) and deleted again, or topics pile up. A shared
//! topic is created once (by the runtime, [`ensure_topics`](crate::kafka::ensure_topics),
//! or the chart's topics job), has a fixed count, needs one read ACL, and a caller reads
//! one partition only — not the whole topic, as a key-filtered shared topic would
//! cost. Two instances sharing a partition each read the other's replies and drop them;
//! with at least as many partitions as callers that is rare. A responder writes only to
//! the reply topic it knows, and to a partition it has: a request naming any other is
//! dead-lettered, so a hostile request cannot make an agent write elsewhere.
//!
//! # Guarantees
//!
//! - **At-least-once**: requests are consumed by [`run_at_least_once`](crate::kafka::run_at_least_once),
//!   as the solver's tasks are: the reply is produced and acknowledged before the
//!   request's offset is stored, so a crash redelivers an unanswered request (its handler
//!   may run twice). A record that is not a valid request goes to the dead-letter topic
//!   with the reason, and the agent goes on.
//! - **Errors are replies**: a handler's error, panic or overrun of
//!   [`RuntimeOptions::handler_timeout`] comes back as an error reply, which the caller
//!   gets as [`SendError::Agent`] at once, never as a timeout.
//! - **Nothing waits for ever**: `send_message` returns by its timeout
//!   ([`SendError::Timeout`]) whatever the broker does; `scatter_gather` by its window. A
//!   request carries its deadline; an agent skips a request past it and stops a handler
//!   at it (clocks are assumed in step, as NTP keeps them). The requests waiting are at
//!   most [`RuntimeOptions::max_pending`], each removed when it stops waiting.
//! - **Bounded records**: a reply over [`MAX_OWN_RECORD_BYTES`](crate::kafka::MAX_OWN_RECORD_BYTES)
//!   becomes the error reply `reply_too_large`; error codes and messages are cut to
//!   [`MAX_ERROR_CODE_BYTES`] and [`MAX_ERROR_MESSAGE_BYTES`], secrets removed. Every
//!   received record is checked before use.
//!
//! # Layout
//!
//! - `runtime`: [`AgentRuntime`] — `start`, `register`, `subscribe`, `send_message`,
//!   `publish_message`, `scatter_gather`, `shutdown`.
//! - [`discovery`]: `serve_describe` and `discover` — which instances run now.
//! - [`envelope`]: the agent headers, and the checks of received requests and replies.
//! - `responder`: one request's work — check, handler, reply — for the consumer loop.
//! - `replies`: the requests waiting for replies, and the routing of the reply partition.
//! - `error`: [`AgentError`] (a handler's) and [`SendError`] (a caller's).
//! - [`topics`]: topic and consumer-group names.

pub mod discovery;
pub mod envelope;
mod error;
mod replies;
mod responder;
mod runtime;
pub mod topics;

pub use discovery::{AgentDescription, Discovered};
pub use envelope::ReplyTo;
pub use error::{AgentError, MAX_ERROR_CODE_BYTES, MAX_ERROR_MESSAGE_BYTES, SendError};
pub use runtime::{AgentRuntime, MAX_GATHER_REPLIES, REPLY_TOPIC_CONFIGS};

use std::time::Duration;

use serde_json::Value;

use crate::{Error, Result, telemetry::TraceContext};

/// A message as a handler gets it: the JSON value and where it came from.
#[derive(Debug, Clone)]
pub struct AgentMessage {
    /// The message, as JSON.
    pub value: Value,
    /// The request's id (`agent_correlation_id`); for a record without one, its
    /// `topic:partition:offset`.
    pub correlation_id: String,
    /// The sender's instance id, when it gave one (`agent_sender`).
    pub sender: Option<String>,
    /// The sender's trace context (`traceparent`); the reply continues it.
    pub trace: Option<TraceContext>,
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Whether the sender waits for a reply (a request, or a scatter-gather), rather than
    /// a published message whose answer is dropped.
    pub reply_expected: bool,
    /// When the sender stops waiting (`agent_deadline_ms`), if it said: a handler that
    /// asks other agents fits their timeouts into what is left
    /// (`deadline - Utc::now()`). The handler is stopped at it anyway.
    pub deadline: Option<chrono::DateTime<chrono::Utc>>,
}

/// A reply to a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The handler's answer.
    pub value: Value,
    /// The instance that answered.
    pub agent_id: String,
    /// The agent type that answered.
    pub agent_type: String,
    /// The reply's `traceparent`: the request's trace, continued.
    pub trace: Option<TraceContext>,
}

/// An error reply within a scatter-gather.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// The handler's error.
    pub error: AgentError,
    /// The instance that answered.
    pub agent_id: String,
    /// The agent type that answered.
    pub agent_type: String,
}

/// What a scatter-gather collected.
#[derive(Debug, Clone, PartialEq)]
pub struct Gathered {
    /// The replies that arrived within the window, in order of arrival.
    pub replies: Vec<Reply>,
    /// The error replies that arrived within the window.
    pub errors: Vec<ErrorReply>,
    /// Whether the window ran out before `max_replies` (replies and errors) came.
    pub timed_out: bool,
}

/// How an [`AgentRuntime`] runs. [`RuntimeOptions::default`] gives the values below.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// The service named in `ce_source` (`/langgraph-kafka/{service}`); default `agent`.
    pub service: String,
    /// Requests (or messages) each registered or subscribed type works on at once, per
    /// instance (at least 1); default 8.
    pub concurrency: usize,
    /// How many times a request failing for a reason of its own is tried before it is
    /// dead-lettered (at least 1); default 3.
    pub max_attempts: u32,
    /// How long work in flight may finish at shutdown; default 10 s.
    pub drain_timeout: Duration,
    /// The longest a handler may run on one message (and never past its request's
    /// deadline); then the caller gets the error `handler_timeout`. Default 60 s.
    pub handler_timeout: Duration,
    /// The most requests of this instance waiting for replies at once (at least 1);
    /// more get [`SendError::Busy`]. Default 10 000.
    pub max_pending: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            service: "agent".into(),
            concurrency: 8,
            max_attempts: 3,
            drain_timeout: Duration::from_secs(10),
            handler_timeout: Duration::from_secs(60),
            max_pending: 10_000,
        }
    }
}

impl RuntimeOptions {
    /// Checks the ranges.
    ///
    /// # Errors
    /// [`Error::Config`] naming the option.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(format!("agent runtime: {what}")));
        if self.concurrency < 1 {
            return bad("concurrency must be at least 1");
        }
        if self.max_attempts < 1 {
            return bad("max_attempts must be at least 1");
        }
        if self.max_pending < 1 {
            return bad("max_pending must be at least 1");
        }
        if self.handler_timeout.is_zero() {
            return bad("handler_timeout must be above 0");
        }
        if self.service.is_empty() || !self.service.bytes().all(|b| b.is_ascii_graphic()) {
            return bad("service must be visible ASCII characters");
        }
        Ok(())
    }
}
