//! The `reviewer` agent: critiques a draft against its brief and approves it when it
//! meets every requirement. Its rules are [`review`]; [`register_reviewer`] serves them
//! over Kafka.

use std::fmt;

use agent_runtime::agents::{AgentError, AgentMessage, AgentRuntime};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::brief::{Brief, mentions};

/// The reviewer's agent type: requests on `{prefix}-agent-requests-reviewer`, consumer
/// group `agent.reviewer`.
pub const REVIEWER: &str = "reviewer";

/// The longest draft the reviewer reads, in bytes.
pub const MAX_DRAFT_BYTES: usize = 64 * 1024;

/// What the writer sends the reviewer: `{"brief": {…}, "draft": "…", "round": 1}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRequest {
    /// The brief the draft answers.
    pub brief: Brief,
    /// The draft, at most [`MAX_DRAFT_BYTES`].
    pub draft: String,
    /// Which round of the conversation this is, from 1.
    pub round: u32,
}

/// A review: what the draft lacks, and whether it is approved. The reviewer's reply,
/// as JSON: `{"approved": false, "missing": ["offsets"], "words": 52, "max_words": 40}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// Whether the draft is approved: with [`review`]'s rules, nothing missing and not
    /// too long.
    pub approved: bool,
    /// The brief's points the draft does not mention, in the brief's order.
    pub missing: Vec<String>,
    /// The draft's length in words.
    pub words: usize,
    /// The brief's word limit.
    pub max_words: usize,
}

impl Review {
    /// Whether the draft is over the word limit.
    pub fn too_long(&self) -> bool {
        self.words > self.max_words
    }
}

impl fmt::Display for Review {
    /// The feedback in a line: `approved`, or what to fix, e.g. `missing: offsets;
    /// 12 words over the limit of 40`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.approved {
            return write!(f, "approved");
        }
        let mut feedback = Vec::new();
        if !self.missing.is_empty() {
            feedback.push(format!("missing: {}", self.missing.join(", ")));
        }
        if self.too_long() {
            let over = self.words - self.max_words;
            let plural = if over == 1 { "" } else { "s" };
            feedback.push(format!(
                "{over} word{plural} over the limit of {}",
                self.max_words
            ));
        }
        if feedback.is_empty() {
            feedback.push("not approved, with nothing to fix".into());
        }
        write!(f, "{}", feedback.join("; "))
    }
}

/// The reviewer's rules: lists the brief's points that `draft` does not mention (a point
/// is mentioned when its words appear one after the other, in any case), counts its
/// words, and approves it when nothing is missing and it is within the word limit.
/// Deterministic: no model is asked.
///
/// ```
/// use writer_reviewer::{Brief, review};
///
/// let brief: Brief = "Kafka; must mention: partitions, offsets; at most 6 words".parse()?;
/// let review = review(&brief, "Kafka splits topics into partitions.");
/// assert!(!review.approved);
/// assert_eq!(review.missing, ["offsets"]);
/// assert_eq!(review.to_string(), "missing: offsets");
/// # Ok::<(), writer_reviewer::BriefError>(())
/// ```
pub fn review(brief: &Brief, draft: &str) -> Review {
    let missing: Vec<String> = brief
        .points
        .iter()
        .filter(|point| !mentions(draft, point))
        .cloned()
        .collect();
    let words = draft.split_whitespace().count();
    Review {
        approved: missing.is_empty() && words <= brief.max_words,
        missing,
        words,
        max_words: brief.max_words,
    }
}

/// Registers the `reviewer` agent type on `runtime`: each request, a [`ReviewRequest`],
/// is answered with its [`Review`]. `Ok(false)` when the runtime's shutdown came first.
///
/// The handler answers the error `invalid_input` (the caller gets it as
/// [`SendError::Agent`](agent_runtime::agents::SendError::Agent)) for a request that is no
/// [`ReviewRequest`], an invalid brief or a draft over [`MAX_DRAFT_BYTES`].
///
/// # Errors
/// As [`AgentRuntime::register`]: [`agent_runtime::Error::Kafka`] when the request topic
/// cannot be created.
pub async fn register_reviewer(runtime: &AgentRuntime) -> agent_runtime::Result<bool> {
    runtime
        .register(REVIEWER, |message| async move { handle(&message) })
        .await
}

/// One review request's work: check it, review the draft.
fn handle(message: &AgentMessage) -> Result<Value, AgentError> {
    let request: ReviewRequest = serde_json::from_value(message.value.clone())
        .map_err(|err| AgentError::new("invalid_input", format!("not a review request: {err}")))?;
    request
        .brief
        .validate()
        .map_err(|err| AgentError::new("invalid_input", err.to_string()))?;
    if request.draft.len() > MAX_DRAFT_BYTES {
        return Err(AgentError::new(
            "invalid_input",
            format!(
                "the draft is {} bytes; at most {MAX_DRAFT_BYTES}",
                request.draft.len()
            ),
        ));
    }
    let review = review(&request.brief, &request.draft);
    tracing::debug!(
        round = request.round,
        approved = review.approved,
        "reviewed"
    );
    serde_json::to_value(&review).map_err(|err| AgentError::new("internal", err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brief() -> Brief {
        "Kafka; must mention: partitions, consumer groups, offsets; at most 8 words"
            .parse()
            .expect("a brief")
    }

    #[test]
    fn a_draft_that_mentions_every_point_within_the_limit_is_approved() {
        let review = review(&brief(), "Partitions, offsets and consumer groups.");
        assert_eq!(
            review,
            Review {
                approved: true,
                missing: vec![],
                words: 5,
                max_words: 8
            }
        );
        assert_eq!(review.to_string(), "approved");
    }

    #[test]
    fn the_review_lists_what_is_missing_and_how_far_over_the_limit_the_draft_is() {
        let review = review(
            &brief(),
            "Kafka keeps its records in partitions, and it keeps them for a long time.",
        );
        assert!(!review.approved);
        assert_eq!(review.missing, ["consumer groups", "offsets"]);
        assert_eq!((review.words, review.too_long()), (14, true));
        assert_eq!(
            review.to_string(),
            "missing: consumer groups, offsets; 6 words over the limit of 8"
        );
    }

    fn request(value: Value) -> AgentMessage {
        AgentMessage {
            value,
            correlation_id: "c-1".into(),
            sender: None,
            trace: None,
            topic: "dev-agent-requests-reviewer".into(),
            partition: 0,
            offset: 0,
            reply_expected: true,
            deadline: None,
        }
    }

    #[test]
    fn the_handler_answers_a_review_and_refuses_a_request_that_is_none() {
        let ok = handle(&request(serde_json::json!({
            "brief": brief(),
            "draft": "Partitions, offsets and consumer groups.",
            "round": 1,
        })))
        .expect("a review");
        assert_eq!(ok["approved"], true);

        let err = handle(&request(serde_json::json!({"draft": "x"}))).expect_err("no brief");
        assert_eq!(err.code, "invalid_input");
        assert!(err.message.starts_with("not a review request"), "{err}");

        let mut bad = brief();
        bad.max_words = 0;
        let err = handle(&request(
            serde_json::json!({"brief": bad, "draft": "x", "round": 1}),
        ))
        .expect_err("a bad brief");
        assert_eq!(
            (err.code.as_str(), err.message.as_str()),
            (
                "invalid_input",
                "the word limit must be a whole number from 1 to 1000, not \"0\""
            )
        );
    }
}
