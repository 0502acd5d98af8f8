//! [`ResumeRequest`]: a person's answer to a task paused for review — a record of the
//! events topic keyed by the task id, so it lands in the task's partition and is read by
//! the one solver that owns it (LangGraph's `Command(resume=…)` sent over Kafka).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{MAX_DESCRIPTION_CHARS, MAX_TAG_CHARS, check_text};
use crate::{Error, Result};

/// Longest `feedback` of a rejection, in characters.
pub const MAX_FEEDBACK_CHARS: usize = 20_000;

/// Longest edited `plan`, in characters (as a task description).
pub const MAX_PLAN_CHARS: usize = MAX_DESCRIPTION_CHARS;

/// What the reviewer decided about a paused task's plan. Its JSON forms:
///
/// - `{"approved": true}`: carry the plan out;
/// - `{"approved": false, "feedback": "…"}`: plan again, told why (`feedback` may be
///   left out);
/// - `{"plan": "…"}`: carry out this plan instead;
/// - `{"timed_out_after_secs": N}`: no one decided within `REVIEW_TIMEOUT_SECS` (N);
///   the task fails. Written by task-generator's review deadline, never accepted from a
///   person.
///
/// Anything else (another field, a wrong type, an empty or too long text) is refused
/// with a message saying what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub enum Review {
    /// Carry the plan out.
    Approved,
    /// Plan again, with this feedback if any.
    Rejected {
        /// Why, for the planner (at most [`MAX_FEEDBACK_CHARS`]).
        feedback: Option<String>,
    },
    /// Carry out this plan instead (at most [`MAX_PLAN_CHARS`]).
    Edited {
        /// The plan.
        plan: String,
    },
    /// No decision came within the review deadline: the task fails.
    TimedOut {
        /// The deadline, in seconds (`REVIEW_TIMEOUT_SECS`).
        after_secs: u64,
    },
}

impl TryFrom<Value> for Review {
    type Error = Error;

    fn try_from(value: Value) -> Result<Self> {
        let invalid = |reason: &str| Error::Invalid {
            field: "resume",
            reason: reason.into(),
        };
        let Value::Object(mut fields) = value else {
            return Err(invalid(
                "must be an object: {\"approved\": true}, {\"approved\": false, \"feedback\": \"…\"} or {\"plan\": \"…\"}",
            ));
        };
        let text = |fields: &mut Map<String, Value>, name: &'static str, max: usize| match fields
            .remove(name)
        {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => {
                check_text(name, &text, 1, max)?;
                Ok(Some(text))
            }
            Some(_) => Err(Error::Invalid {
                field: name,
                reason: "must be a string".into(),
            }),
        };
        let review = if let Some(after) = fields.remove("timed_out_after_secs") {
            let after_secs = after
                .as_u64()
                .ok_or_else(|| invalid("`timed_out_after_secs` must be a whole number"))?;
            Self::TimedOut { after_secs }
        } else if fields.contains_key("plan") {
            let plan = text(&mut fields, "plan", MAX_PLAN_CHARS)?
                .ok_or_else(|| invalid("`plan` must be a non-empty string"))?;
            Self::Edited { plan }
        } else {
            let approved = match fields.remove("approved") {
                Some(Value::Bool(approved)) => approved,
                Some(_) => return Err(invalid("`approved` must be true or false")),
                None => return Err(invalid("needs `approved` (true or false) or `plan`")),
            };
            let feedback = text(&mut fields, "feedback", MAX_FEEDBACK_CHARS)?;
            match (approved, feedback) {
                (true, Some(_)) => {
                    return Err(invalid("`feedback` goes with `approved: false` only"));
                }
                (true, None) => Self::Approved,
                (false, feedback) => Self::Rejected { feedback },
            }
        };
        if let Some(extra) = fields.keys().next() {
            return Err(invalid(&format!(
                "unknown field `{}`",
                extra.chars().take(64).collect::<String>()
            )));
        }
        Ok(review)
    }
}

impl From<Review> for Value {
    fn from(review: Review) -> Self {
        match review {
            Review::Approved => json!({"approved": true}),
            Review::Rejected {
                feedback: Some(feedback),
            } => json!({"approved": false, "feedback": feedback}),
            Review::Rejected { feedback: None } => json!({"approved": false}),
            Review::Edited { plan } => json!({"plan": plan}),
            Review::TimedOut { after_secs } => json!({"timed_out_after_secs": after_secs}),
        }
    }
}

/// A resume of a paused task: the value of a record on the events topic keyed by
/// `task_id`, with the CloudEvent type `io.langgraph-kafka.task.resumed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// The paused task.
    pub task_id: Uuid,
    /// The pause this answers; when given and the task has since paused again (or
    /// was resumed), the request is stale and takes no effect (strict resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupt_id: Option<String>,
    /// The decision.
    pub resume: Review,
    /// When it was asked (RFC 3339, UTC).
    pub requested_at: DateTime<Utc>,
}

impl ResumeRequest {
    /// Parses and checks a record's value.
    ///
    /// # Errors
    /// [`Error::Json`] for malformed JSON or a bad [`Review`], [`Error::Invalid`] for an
    /// `interrupt_id` out of bounds.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let request: Self = serde_json::from_slice(bytes)?;
        if let Some(id) = &request.interrupt_id {
            check_text("interrupt_id", id, 1, MAX_TAG_CHARS)?;
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(value: Value) -> std::result::Result<Review, String> {
        Review::try_from(value).map_err(|e| e.to_string())
    }

    #[test]
    fn the_three_decisions_read_and_write_as_their_json() {
        for (value, expected) in [
            (json!({"approved": true}), Review::Approved),
            (
                json!({"approved": false, "feedback": "Shorter."}),
                Review::Rejected {
                    feedback: Some("Shorter.".into()),
                },
            ),
            (
                json!({"approved": false}),
                Review::Rejected { feedback: None },
            ),
            (
                json!({"plan": "1. Do it."}),
                Review::Edited {
                    plan: "1. Do it.".into(),
                },
            ),
            (
                json!({"timed_out_after_secs": 86400}),
                Review::TimedOut { after_secs: 86400 },
            ),
        ] {
            assert_eq!(review(value.clone()), Ok(expected.clone()));
            assert_eq!(Value::from(expected), value);
        }
    }

    #[test]
    fn anything_else_is_refused_saying_why() {
        for (value, says) in [
            (json!("yes"), "must be an object"),
            (json!({}), "needs `approved`"),
            (json!({"approved": "yes"}), "true or false"),
            (
                json!({"approved": true, "feedback": "x"}),
                "`approved: false` only",
            ),
            (json!({"approved": true, "by": "me"}), "unknown field `by`"),
            (json!({"plan": ""}), "must not be empty"),
            (json!({"plan": 3}), "must be a string"),
            (
                json!({"plan": "p", "approved": true}),
                "unknown field `approved`",
            ),
            (
                json!({"approved": false, "feedback": "x".repeat(MAX_FEEDBACK_CHARS + 1)}),
                "at most",
            ),
        ] {
            let err = review(value.clone()).expect_err("refused");
            assert!(err.contains(says), "{value}: {err}");
        }
    }

    #[test]
    fn a_request_round_trips_and_refuses_unknown_fields() {
        let request = ResumeRequest {
            task_id: Uuid::new_v4(),
            interrupt_id: Some("review#0".into()),
            resume: Review::Approved,
            requested_at: Utc::now(),
        };
        let bytes = serde_json::to_vec(&request).expect("serializes");
        assert_eq!(ResumeRequest::from_json(&bytes).expect("parses"), request);
        let mut value: Value = serde_json::from_slice(&bytes).expect("JSON");
        value["extra"] = json!(1);
        assert!(ResumeRequest::from_json(value.to_string().as_bytes()).is_err());
        value.as_object_mut().expect("object").remove("extra");
        value["interrupt_id"] = json!("");
        assert!(ResumeRequest::from_json(value.to_string().as_bytes()).is_err());
    }
}
