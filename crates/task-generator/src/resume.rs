//! Resuming a task paused for review (LangGraph's `Command(resume=…)`): the body of
//! `POST /task-result/{task_id}/resume` ([`ResumeBody`]), the check that the task waits
//! at the pause the reviewer answers ([`current_pause`]), and the [`ResumeRequest`]
//! published on the events topic keyed by the task id ([`publish`]), so the solver that
//! owns the task's partition reads it.

use agent_core::task::{MAX_TAG_CHARS, ResumeRequest, Review, TaskResult, TaskStatus};
use agent_runtime::{
    http::ApiError,
    kafka::{
        Delivery, Producer,
        headers::{CloudEvent, TASK_RESUMED},
    },
};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::{SERVICE, store::TaskView};

/// The body of `POST /task-result/{task_id}/resume`:
/// `{"interrupt_id"?: "…", "resume": {…}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeBody {
    /// The pause answered (at most [`MAX_TAG_CHARS`] characters); when given, it must be
    /// the task's current one (strict resume).
    pub interrupt_id: Option<String>,
    /// The reviewer's decision.
    pub resume: Review,
}

impl ResumeBody {
    /// Checks a request body: an object with `resume` (a [`Review`]) and optionally
    /// `interrupt_id` (a non-empty string; `null` counts as absent), nothing else.
    ///
    /// # Errors
    /// [`ApiError::Unprocessable`] saying what is wrong, with [`Review`]'s own message
    /// for a bad `resume`.
    pub fn parse(body: Value) -> Result<Self, ApiError> {
        let Value::Object(mut fields) = body else {
            return Err(ApiError::Unprocessable(
                "body must be a JSON object with `resume` (and optionally `interrupt_id`)".into(),
            ));
        };
        let interrupt_id = match fields.remove("interrupt_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => {
                let chars = id.chars().count();
                if id.trim().is_empty() {
                    return Err(ApiError::Unprocessable(
                        "`interrupt_id` must not be empty".into(),
                    ));
                }
                if chars > MAX_TAG_CHARS {
                    return Err(ApiError::Unprocessable(format!(
                        "`interrupt_id` has {chars} characters, at most {MAX_TAG_CHARS} are allowed"
                    )));
                }
                Some(id)
            }
            Some(_) => {
                return Err(ApiError::Unprocessable(
                    "`interrupt_id` must be a string".into(),
                ));
            }
        };
        let resume = match fields.remove("resume") {
            None | Some(Value::Null) => {
                return Err(ApiError::Unprocessable(
                    "missing field `resume`: {\"approved\": true}, {\"approved\": false, \"feedback\": \"…\"} or {\"plan\": \"…\"}".into(),
                ));
            }
            Some(resume) => match Review::try_from(resume).map_err(ApiError::from)? {
                Review::TimedOut { .. } => {
                    return Err(ApiError::Unprocessable(
                        "`timed_out_after_secs` is set by the review deadline (REVIEW_TIMEOUT_SECS), not by a person".into(),
                    ));
                }
                review => review,
            },
        };
        if let Some(extra) = fields.keys().next() {
            return Err(ApiError::Unprocessable(format!(
                "unknown field `{}`: expected `resume` and optionally `interrupt_id`",
                extra.chars().take(64).collect::<String>()
            )));
        }
        Ok(Self {
            interrupt_id,
            resume,
        })
    }
}

/// The 202 answer of `POST /task-result/{task_id}/resume`: the resume is stored on the
/// events topic; the task's solver will carry it out.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"task_id": "0d6f5b8e-8a43-4c1e-9a55-3f1f4e2b7c10", "interrupt_id": "1:review:0#0", "status": "resuming"}))]
pub struct Resuming {
    /// The task.
    pub task_id: Uuid,
    /// The pause answered.
    pub interrupt_id: String,
    /// Always `resuming`.
    #[schema(value_type = String, pattern = "^resuming$")]
    pub status: &'static str,
}

/// The id of the pause `view`'s task waits at, when it is the one `asked` for (or
/// `asked` is `None`).
///
/// # Errors
/// [`ApiError::Conflict`] when the task is not `interrupted` (its status named), or
/// when `asked` is not its current pause (both ids named); [`ApiError::Internal`] when
/// the stored result cannot be read or an `interrupted` result has no interrupt.
pub fn current_pause(view: &TaskView, asked: Option<&str>) -> Result<String, ApiError> {
    let task_id = view.task_id;
    if view.status != TaskStatus::Interrupted {
        return Err(ApiError::Conflict(format!(
            "task {task_id} is {}, not waiting for review",
            view.status.as_str()
        )));
    }
    let result: TaskResult = view
        .result
        .as_ref()
        .ok_or_else(|| {
            ApiError::Internal(format!("task {task_id} is interrupted without a result"))
        })?
        .decode()
        .map_err(|err| ApiError::Internal(format!("task {task_id}'s stored result: {err}")))?;
    let current = result
        .interrupt
        .ok_or_else(|| {
            ApiError::Internal(format!(
                "task {task_id} is interrupted without an interrupt"
            ))
        })?
        .id;
    match asked {
        Some(asked) if asked != current => Err(ApiError::Conflict(format!(
            "task {task_id} waits for review at interrupt {current:?}, not {:?}: the answer is for an earlier pause",
            asked.chars().take(MAX_TAG_CHARS).collect::<String>()
        ))),
        _ => Ok(current),
    }
}

/// Publishes `request` on `topic` (the events topic) keyed by its task id, with the
/// CloudEvent type [`TASK_RESUMED`], and waits for the broker's acknowledgement.
///
/// # Errors
/// [`ApiError::TooLarge`] for a record over the producer's limit;
/// [`ApiError::Unavailable`] when the broker does not acknowledge in time.
pub async fn publish(
    producer: &Producer,
    topic: &str,
    request: &ResumeRequest,
) -> Result<Delivery, ApiError> {
    let event = CloudEvent::new(SERVICE, TASK_RESUMED, None);
    let key = request.task_id.to_string();
    let delivery = producer
        .send_json(topic, &key, request, &event)
        .await
        .map_err(|err| match err {
            agent_runtime::Error::RecordTooLarge { .. } => {
                ApiError::TooLarge(format!("the resume cannot be published: {err}"))
            }
            err => ApiError::Unavailable(format!("the broker did not store the resume: {err}")),
        })?;
    tracing::info!(
        topic = %delivery.topic,
        partition = delivery.partition,
        offset = delivery.offset,
        trace_id = %event.trace.trace_id_hex(),
        "resume published"
    );
    Ok(delivery)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(body: Value) -> Result<ResumeBody, String> {
        ResumeBody::parse(body).map_err(|err| err.to_string())
    }

    #[test]
    fn a_body_is_a_review_and_maybe_the_pause_it_answers() {
        assert_eq!(
            parse(json!({"resume": {"approved": true}})),
            Ok(ResumeBody {
                interrupt_id: None,
                resume: Review::Approved
            })
        );
        assert_eq!(
            parse(json!({"interrupt_id": "review#1", "resume": {"plan": "1. Do it."}})),
            Ok(ResumeBody {
                interrupt_id: Some("review#1".into()),
                resume: Review::Edited {
                    plan: "1. Do it.".into()
                }
            })
        );
        assert_eq!(
            parse(json!({"interrupt_id": null, "resume": {"approved": false}}))
                .map(|b| b.interrupt_id),
            Ok(None)
        );
    }

    #[test]
    fn anything_else_is_refused_saying_why() {
        for (body, says) in [
            (json!([]), "must be a JSON object"),
            (json!({}), "missing field `resume`"),
            (json!({"resume": null}), "missing field `resume`"),
            (json!({"resume": {"approved": "yes"}}), "true or false"),
            (
                json!({"resume": {"approved": true}, "by": "me"}),
                "unknown field `by`",
            ),
            (
                json!({"resume": {"approved": true}, "interrupt_id": 7}),
                "must be a string",
            ),
            (
                json!({"resume": {"approved": true}, "interrupt_id": " "}),
                "must not be empty",
            ),
            (
                json!({"resume": {"approved": true}, "interrupt_id": "x".repeat(MAX_TAG_CHARS + 1)}),
                "at most 200",
            ),
            (
                json!({"resume": {"timed_out_after_secs": 1}}),
                "set by the review deadline",
            ),
        ] {
            let err = parse(body.clone()).expect_err("refused");
            assert!(err.contains(says), "{body}: {err}");
        }
    }
}
