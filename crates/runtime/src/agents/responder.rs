//! [`Responder`]: one agent type's work on one record — check it, run the handler, send
//! the reply — the `process` function of the at-least-once loop.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use futures::future::BoxFuture;
use rdkafka::message::OwnedMessage;
use serde_json::Value;
use tracing::Instrument;

use super::{
    AgentMessage,
    envelope::{self, Incoming, ReplyTopic},
    error::AgentError,
};
use crate::{
    Result,
    kafka::{
        CloudEvent, MAX_OWN_RECORD_BYTES, Outcome, Producer,
        headers::{AGENT_ERROR, AGENT_REPLY},
    },
};

/// A handler as the runtime keeps it.
pub(crate) type BoxedHandler =
    Arc<dyn Fn(AgentMessage) -> BoxFuture<'static, Result<Value, AgentError>> + Send + Sync>;

/// One agent type's handler on one topic, and what it needs to reply.
pub(crate) struct Responder {
    pub(crate) agent_type: String,
    pub(crate) instance_id: String,
    pub(crate) service: String,
    pub(crate) handler: BoxedHandler,
    pub(crate) producer: Producer,
    pub(crate) replies: ReplyTopic,
    /// A request topic (every record must be a request) rather than a subscribed one.
    pub(crate) requests: bool,
    pub(crate) handler_timeout: Duration,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("agent_type", &self.agent_type)
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// Handles one record: a record that is not a valid request (or, on a subscribed
    /// topic, not JSON) goes to the dead-letter topic; a request whose deadline has
    /// passed is skipped (its caller is gone); otherwise the handler runs — for at most
    /// [`RuntimeOptions::handler_timeout`](super::RuntimeOptions::handler_timeout) and
    /// never past the deadline — and its reply or error reply is produced to the caller's
    /// partition and acknowledged before this returns `Done` (so before the offset is
    /// stored).
    ///
    /// # Errors
    /// [`crate::Error::Kafka`] when the reply is not acknowledged: the loop tries the
    /// request again (running the handler again: at-least-once).
    pub(crate) async fn process(&self, message: OwnedMessage) -> Result<Outcome> {
        let incoming = match envelope::parse_incoming(&message, self.requests, &self.replies) {
            Ok(incoming) => incoming,
            Err(reason) => {
                self.count("dead_letter");
                return Ok(Outcome::DeadLetter(reason));
            }
        };
        let mut budget = self.handler_timeout;
        if let Some(deadline) = incoming.deadline {
            match (deadline - Utc::now()).to_std() {
                Ok(left) if !left.is_zero() => budget = budget.min(left),
                _ => {
                    tracing::debug!(correlation_id = %incoming.correlation_id, "request past its deadline; skipped");
                    self.count("expired");
                    return Ok(Outcome::Done);
                }
            }
        }
        let answer = self.run_handler(&message, &incoming, budget).await;
        self.count(if answer.is_ok() { "reply" } else { "error" });
        let Some(reply_to) = &incoming.reply_to else {
            if let Err(err) = answer {
                tracing::warn!(agent_type = %self.agent_type, correlation_id = %incoming.correlation_id, error = %err, "handler failed on a published message");
            }
            return Ok(Outcome::Done);
        };
        if answer
            .as_ref()
            .is_err_and(|err| err.code == "handler_timeout")
            && incoming
                .deadline
                .is_some_and(|deadline| deadline <= Utc::now())
        {
            // The caller stopped waiting when the handler did: nobody to tell.
            return Ok(Outcome::Done);
        }
        let (event_type, payload, headers) = self.reply_record(&incoming, answer);
        self.producer
            .send_to_partition(
                &reply_to.topic,
                reply_to.partition,
                Some(&incoming.correlation_id),
                &payload,
                headers,
            )
            .await?;
        tracing::debug!(agent_type = %self.agent_type, correlation_id = %incoming.correlation_id, reply = event_type, "replied");
        Ok(Outcome::Done)
    }

    /// Counts a record in `agent_messages_handled_total{agent_type, outcome}`: `reply`
    /// (the handler answered), `error` (it failed, panicked or ran out of time),
    /// `expired` (past its deadline, not run) or `dead_letter` (no valid request).
    fn count(&self, outcome: &'static str) {
        metrics::counter!(
            "agent_messages_handled_total",
            "agent_type" => self.agent_type.clone(),
            "outcome" => outcome
        )
        .increment(1);
    }

    /// Runs the handler on its own task (a panic becomes an error reply) for at most
    /// `budget`.
    async fn run_handler(
        &self,
        message: &OwnedMessage,
        incoming: &Incoming,
        budget: Duration,
    ) -> Result<Value, AgentError> {
        use rdkafka::Message;
        let request = AgentMessage {
            value: incoming.value.clone(),
            correlation_id: incoming.correlation_id.clone(),
            sender: incoming.sender.clone(),
            trace: incoming.trace,
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            reply_expected: incoming.reply_to.is_some(),
            deadline: incoming.deadline,
        };
        let mut call = tokio::spawn((self.handler)(request).instrument(tracing::Span::current()));
        match tokio::time::timeout(budget, &mut call).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(AgentError::new(
                "handler_panicked",
                format!("the {} handler panicked", self.agent_type),
            )),
            Err(_) => {
                call.abort();
                Err(AgentError::new(
                    "handler_timeout",
                    format!(
                        "the {} handler did not finish within {} ms",
                        self.agent_type,
                        budget.as_millis()
                    ),
                ))
            }
        }
    }

    /// The reply record: the value under [`AGENT_REPLY`], or `{"code", "message"}` under
    /// [`AGENT_ERROR`]. A value that does not fit [`MAX_OWN_RECORD_BYTES`] becomes the
    /// error `reply_too_large`.
    fn reply_record(
        &self,
        incoming: &Incoming,
        answer: Result<Value, AgentError>,
    ) -> (&'static str, Vec<u8>, rdkafka::message::OwnedHeaders) {
        let record = |event_type: &'static str, payload: Vec<u8>| {
            let event = CloudEvent::new(&self.service, event_type, incoming.trace);
            let headers = envelope::reply_headers(
                &event,
                &incoming.correlation_id,
                &self.instance_id,
                &self.agent_type,
            );
            (event_type, payload, headers)
        };
        let error = |error: &AgentError| {
            // A bounded struct of two strings always encodes.
            serde_json::to_vec(&error.bounded()).unwrap_or_default()
        };
        match answer {
            Ok(value) => {
                let (event_type, payload, headers) = match serde_json::to_vec(&value) {
                    Ok(payload) => record(AGENT_REPLY, payload),
                    Err(err) => record(
                        AGENT_ERROR,
                        error(&AgentError::new("reply_not_json", err.to_string())),
                    ),
                };
                let bytes = Producer::record_size(
                    Some(incoming.correlation_id.as_bytes()),
                    &payload,
                    &headers,
                );
                if bytes > MAX_OWN_RECORD_BYTES {
                    record(
                        AGENT_ERROR,
                        error(&AgentError::new(
                            "reply_too_large",
                            format!(
                                "the {} handler's reply is {bytes} bytes with its headers, over the limit of {MAX_OWN_RECORD_BYTES}",
                                self.agent_type
                            ),
                        )),
                    )
                } else {
                    (event_type, payload, headers)
                }
            }
            Err(err) => record(AGENT_ERROR, error(&err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Timestamp;

    use super::*;
    use crate::kafka::{KafkaSettings, headers::header_str};

    fn responder(handler: BoxedHandler) -> Responder {
        Responder {
            agent_type: "test".into(),
            instance_id: "test-1".into(),
            service: "agent".into(),
            handler,
            // Never contacted: these tests produce nothing.
            producer: Producer::new(&KafkaSettings::for_brokers("127.0.0.1:9"), "test")
                .expect("producer"),
            replies: ReplyTopic {
                name: "dev-agent-replies".into(),
                partitions: 3,
            },
            requests: true,
            handler_timeout: Duration::from_millis(100),
        }
    }

    fn incoming() -> Incoming {
        Incoming {
            value: Value::Null,
            correlation_id: "c-1".into(),
            sender: None,
            trace: None,
            reply_to: None,
            deadline: None,
        }
    }

    #[test]
    fn a_reply_over_the_record_limit_becomes_the_error_reply_too_large() {
        let responder = responder(Arc::new(|_| Box::pin(async { Ok(Value::Null) })));
        let big = Value::String("x".repeat(MAX_OWN_RECORD_BYTES));
        let (event_type, payload, headers) = responder.reply_record(&incoming(), Ok(big));
        assert_eq!(event_type, AGENT_ERROR);
        let error: AgentError = serde_json::from_slice(&payload).expect("an error body");
        assert_eq!(error.code, "reply_too_large");
        assert_eq!(header_str(Some(&headers), "ce_type"), Some(AGENT_ERROR));
        assert_eq!(
            header_str(Some(&headers), "agent_correlation_id"),
            Some("c-1")
        );
        assert!(Producer::record_size(Some(b"c-1"), &payload, &headers) < 2048);

        let (event_type, payload, _) =
            responder.reply_record(&incoming(), Ok(serde_json::json!({"ok": true})));
        assert_eq!(event_type, AGENT_REPLY);
        assert_eq!(payload, br#"{"ok":true}"#);
    }

    #[tokio::test]
    async fn a_handler_past_its_time_is_stopped_and_answers_handler_timeout() {
        let responder = responder(Arc::new(|_| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(Value::Null)
            })
        }));
        let message = OwnedMessage::new(
            Some(b"null".to_vec()),
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            0,
            None,
        );
        let started = std::time::Instant::now();
        let answer = responder
            .run_handler(&message, &incoming(), Duration::from_millis(50))
            .await;
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(
            answer.expect_err("stopped").code,
            "handler_timeout".to_owned()
        );
    }
}
