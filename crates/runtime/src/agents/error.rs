//! [`AgentError`], what a handler answers instead of a reply, and [`SendError`], why a
//! request got no reply.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest error code an error reply carries, in bytes (longer ones are cut).
pub const MAX_ERROR_CODE_BYTES: usize = 64;

/// The longest error message an error reply carries, in bytes (longer ones are cut, with
/// `…`): a reason, never a payload.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4096;

/// A handler's error: sent back to the caller as an error reply
/// ([`AGENT_ERROR`](crate::kafka::headers::AGENT_ERROR), value
/// `{"code": "...", "message": "..."}`), which the caller sees as
/// [`SendError::Agent`] — never as a timeout (calf-ai/calfkit-sdk#143 is that bug).
///
/// The code is at most [`MAX_ERROR_CODE_BYTES`], the message at most
/// [`MAX_ERROR_MESSAGE_BYTES`] with configured secrets removed
/// ([`crate::redact`]); both are cut to fit when sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AgentError {
    /// A short machine-readable code, e.g. `invalid_input`. The runtime's own:
    /// `handler_panicked`, `handler_timeout`, `reply_too_large`, `reply_not_json`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

impl AgentError {
    /// An error with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// This error as sent: secrets removed from the message, code and message cut to
    /// their limits.
    pub(crate) fn bounded(&self) -> Self {
        let message = crate::redact::redact(&self.message);
        Self {
            code: cut(&self.code, MAX_ERROR_CODE_BYTES),
            message: cut(&message, MAX_ERROR_MESSAGE_BYTES),
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary, ending in `…` when cut.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Why [`send_message`](super::AgentRuntime::send_message) (or another call of the
/// [`AgentRuntime`](super::AgentRuntime)) gave no reply.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No reply came within the timeout: no instance of the agent type is running, or it
    /// is slower than the timeout, or the broker did not take the request in time. The
    /// request may still be handled later (at-least-once); an agent skips a request
    /// whose deadline has passed.
    #[error("no reply from {target} within {} ms", timeout.as_millis())]
    Timeout {
        /// The agent type (or topic) asked.
        target: String,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// The agent's handler failed and said why ([`AgentError`]).
    #[error("agent {agent_type} ({agent_id}) failed: {code}: {message}")]
    Agent {
        /// The error code.
        code: String,
        /// The error message.
        message: String,
        /// The agent type that answered.
        agent_type: String,
        /// The instance that answered.
        agent_id: String,
    },
    /// A record on the reply partition carried this request's correlation id but was
    /// not a reply (no agent headers, a value that is not JSON, an error reply without
    /// a code): a broken or hostile writer of the reply topic.
    #[error("invalid reply: {0}")]
    InvalidReply(String),
    /// The argument is not allowed: an agent type or topic that is not a valid name, a
    /// zero timeout or window, `max_replies` out of range.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// As many requests as [`RuntimeOptions::max_pending`](super::RuntimeOptions::max_pending)
    /// wait for replies already; try again later.
    #[error("{limit} requests already wait for replies")]
    Busy {
        /// The limit.
        limit: usize,
    },
    /// The runtime is shut down.
    #[error("the agent runtime is shut down")]
    Closed,
    /// The request could not be published: too large, or refused by the broker.
    #[error(transparent)]
    Runtime(#[from] crate::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_cut_to_its_limits_on_a_character_boundary() {
        let error = AgentError::new("c".repeat(100), "é".repeat(5000)).bounded();
        assert!(error.code.len() <= MAX_ERROR_CODE_BYTES);
        assert!(error.code.ends_with('…'));
        assert!(error.message.len() <= MAX_ERROR_MESSAGE_BYTES);
        assert!(error.message.ends_with('…'));
        let short = AgentError::new("bad", "no").bounded();
        assert_eq!(short, AgentError::new("bad", "no"));
    }
}
