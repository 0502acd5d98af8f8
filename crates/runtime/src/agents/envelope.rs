//! The agent headers on requests and replies, and the checks every received record
//! passes before it is used: each record is hostile until checked.
//!
//! A request is a JSON value with the CloudEvents headers
//! ([`CloudEvent::to_headers`]) and:
//!
//! | header | value |
//! |---|---|
//! | `agent_correlation_id` | the request's id, 1–128 visible ASCII characters; the reply carries it back |
//! | `agent_sender` | the caller's instance id |
//! | `agent_reply_topic`, `agent_reply_partition` | where to reply: the reply topic and the caller's partition of it |
//! | `agent_deadline_ms` | when the caller stops waiting, ms since the Unix epoch |
//!
//! A reply is the handler's JSON value (`ce_type` [`AGENT_REPLY`]) or
//! `{"code", "message"}` ([`AGENT_ERROR`]), with `agent_correlation_id`, `agent_id` (the
//! instance that answered) and `agent_type`.

use chrono::{DateTime, Utc};
use rdkafka::{
    Message,
    message::{Header, Headers, OwnedHeaders},
};
use serde_json::Value;

use super::error::AgentError;
use crate::{
    kafka::{
        CloudEvent,
        headers::{AGENT_ERROR, AGENT_REPLY, AGENT_REQUEST, header_str, trace_of},
        valid_topic_name,
    },
    telemetry::TraceContext,
};

/// Header: the request's id, carried back by its reply.
pub const CORRELATION_ID: &str = "agent_correlation_id";
/// Header: the caller's instance id.
pub const SENDER: &str = "agent_sender";
/// Header: the topic to reply to.
pub const REPLY_TOPIC: &str = "agent_reply_topic";
/// Header: the partition of the reply topic to reply to.
pub const REPLY_PARTITION: &str = "agent_reply_partition";
/// Header: when the caller stops waiting, in ms since the Unix epoch.
pub const DEADLINE_MS: &str = "agent_deadline_ms";
/// Header of a reply: the instance that answered.
pub const AGENT_ID: &str = "agent_id";
/// Header of a reply: the agent type that answered.
pub const AGENT_TYPE: &str = "agent_type";

/// The longest correlation id, instance id or agent type in a header, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Whether `id` may be a correlation id or instance id: 1 to [`MAX_ID_BYTES`] visible
/// ASCII characters (no space, no control character).
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Where a caller reads its replies: a partition of the reply topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    /// The reply topic.
    pub topic: String,
    /// The caller's partition of it.
    pub partition: i32,
}

/// The reply topic as the responding runtime knows it: a request may only name it, and
/// one of its partitions — never another topic (a hostile request must not make an
/// agent write to the results topic).
#[derive(Debug, Clone)]
pub(crate) struct ReplyTopic {
    pub(crate) name: String,
    pub(crate) partitions: i32,
}

/// A request or published message that passed the checks.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    pub(crate) value: Value,
    pub(crate) correlation_id: String,
    pub(crate) sender: Option<String>,
    pub(crate) trace: Option<TraceContext>,
    pub(crate) reply_to: Option<ReplyTo>,
    pub(crate) deadline: Option<DateTime<Utc>>,
}

/// Checks a record read from a request topic (`requests`: it must be a request, naming
/// where to reply) or a subscribed topic (a published message, or a scatter-gather
/// request; a plain JSON record with no headers too). `Err` gives the reason to
/// dead-letter it.
pub(crate) fn parse_incoming<M: Message>(
    message: &M,
    requests: bool,
    replies: &ReplyTopic,
) -> Result<Incoming, String> {
    let headers = message.headers();
    // A header given twice is refused: which copy a reader takes would be a guess.
    let text = |name: &str| -> Result<Option<&str>, String> {
        let mut found = headers
            .into_iter()
            .flat_map(|h| h.iter())
            .filter(|h| h.key == name);
        let first = found.next();
        if found.next().is_some() {
            return Err(format!("header {name} appears more than once"));
        }
        match first {
            None => Ok(None),
            Some(header) => match header.value.map(std::str::from_utf8) {
                Some(Ok(value)) => Ok(Some(value)),
                _ => Err(format!("header {name} is not UTF-8")),
            },
        }
    };
    let ce_type = text("ce_type")?;
    match ce_type {
        Some(AGENT_REQUEST) => {}
        Some(other) if requests => {
            return Err(format!(
                "not an agent request: ce_type {:?}",
                super::error::cut(other, 64)
            ));
        }
        None if requests => return Err("not an agent request: no ce_type header".into()),
        _ => {}
    }
    let id = |name: &str| -> Result<Option<String>, String> {
        match text(name)? {
            None => Ok(None),
            Some(value) if valid_id(value) => Ok(Some(value.to_owned())),
            Some(_) => Err(format!(
                "header {name} must be 1 to {MAX_ID_BYTES} visible ASCII characters"
            )),
        }
    };
    let correlation_id = id(CORRELATION_ID)?;
    let sender = id(SENDER)?;
    let reply_to = match (text(REPLY_TOPIC)?, text(REPLY_PARTITION)?) {
        (None, None) => None,
        (Some(topic), Some(partition)) => {
            if !valid_topic_name(topic) || topic != replies.name {
                return Err(format!(
                    "header {REPLY_TOPIC} names {:?}, not the reply topic {}",
                    super::error::cut(topic, 64),
                    replies.name
                ));
            }
            match partition.parse::<i32>() {
                Ok(p) if (0..replies.partitions).contains(&p) => Some(ReplyTo {
                    topic: topic.to_owned(),
                    partition: p,
                }),
                _ => {
                    return Err(format!(
                        "header {REPLY_PARTITION} must be a partition of {} (0 to {})",
                        replies.name,
                        replies.partitions - 1
                    ));
                }
            }
        }
        _ => {
            return Err(format!(
                "headers {REPLY_TOPIC} and {REPLY_PARTITION} come together"
            ));
        }
    };
    if requests && reply_to.is_none() {
        return Err(format!("a request names where to reply ({REPLY_TOPIC})"));
    }
    if reply_to.is_some() && correlation_id.is_none() {
        return Err(format!("a request carries {CORRELATION_ID}"));
    }
    let deadline = match text(DEADLINE_MS)? {
        None => None,
        Some(ms) => match ms
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis)
        {
            Some(deadline) => Some(deadline),
            None => return Err(format!("header {DEADLINE_MS} must be ms since the epoch")),
        },
    };
    let payload = message.payload().unwrap_or_default();
    if payload.is_empty() {
        return Err("no value: a message is a JSON value".into());
    }
    let value: Value = serde_json::from_slice(payload).map_err(|err| {
        format!(
            "value is not JSON: {}",
            super::error::cut(&err.to_string(), 256)
        )
    })?;
    Ok(Incoming {
        value,
        correlation_id: correlation_id.unwrap_or_else(|| {
            format!(
                "{}:{}:{}",
                message.topic(),
                message.partition(),
                message.offset()
            )
        }),
        sender,
        trace: trace_of(headers),
        reply_to,
        deadline,
    })
}

/// The headers of a request (`reply_to` set) or published message (`reply_to` `None`).
pub(crate) fn request_headers(
    event: &CloudEvent,
    correlation_id: &str,
    sender: &str,
    reply_to: Option<&ReplyTo>,
    deadline: Option<DateTime<Utc>>,
) -> OwnedHeaders {
    let mut headers = with(event.to_headers(), CORRELATION_ID, correlation_id);
    headers = with(headers, SENDER, sender);
    if let Some(reply_to) = reply_to {
        headers = with(headers, REPLY_TOPIC, &reply_to.topic);
        headers = with(headers, REPLY_PARTITION, &reply_to.partition.to_string());
    }
    if let Some(deadline) = deadline {
        headers = with(
            headers,
            DEADLINE_MS,
            &deadline.timestamp_millis().to_string(),
        );
    }
    headers
}

/// The headers of a reply or error reply.
pub(crate) fn reply_headers(
    event: &CloudEvent,
    correlation_id: &str,
    agent_id: &str,
    agent_type: &str,
) -> OwnedHeaders {
    let headers = with(event.to_headers(), CORRELATION_ID, correlation_id);
    let headers = with(headers, AGENT_ID, agent_id);
    with(headers, AGENT_TYPE, agent_type)
}

fn with(headers: OwnedHeaders, key: &str, value: &str) -> OwnedHeaders {
    headers.insert(Header {
        key,
        value: Some(value),
    })
}

/// A record of the reply partition that passed the checks.
#[derive(Debug, Clone)]
pub(crate) struct ReplyRecord {
    pub(crate) agent_id: String,
    pub(crate) agent_type: String,
    pub(crate) trace: Option<TraceContext>,
    /// The handler's value, or its error.
    pub(crate) body: Result<Value, AgentError>,
}

/// The correlation id of a record of the reply partition (`None`: not a reply of
/// ours, dropped), and the reply, or why it is not one.
pub(crate) fn parse_reply<M: Message>(
    message: &M,
) -> Option<(String, Result<ReplyRecord, String>)> {
    let headers = message.headers();
    let correlation_id = header_str(headers, CORRELATION_ID).filter(|id| valid_id(id))?;
    Some((correlation_id.to_owned(), check_reply(message)))
}

fn check_reply<M: Message>(message: &M) -> Result<ReplyRecord, String> {
    let headers = message.headers();
    let id = |name: &str| {
        header_str(headers, name)
            .filter(|id| valid_id(id))
            .map(str::to_owned)
            .ok_or_else(|| format!("no valid {name} header"))
    };
    let agent_id = id(AGENT_ID)?;
    let agent_type = id(AGENT_TYPE)?;
    let payload = message.payload().unwrap_or_default();
    let body = match header_str(headers, "ce_type") {
        Some(AGENT_REPLY) => Ok(serde_json::from_slice::<Value>(payload).map_err(|err| {
            format!(
                "reply value is not JSON: {}",
                super::error::cut(&err.to_string(), 256)
            )
        })?),
        Some(AGENT_ERROR) => Err(serde_json::from_slice::<AgentError>(payload)
            .map_err(|err| {
                format!(
                    "error reply is not {{\"code\", \"message\"}}: {}",
                    super::error::cut(&err.to_string(), 256)
                )
            })?
            .bounded()),
        other => {
            return Err(format!(
                "ce_type {:?} is neither {AGENT_REPLY} nor {AGENT_ERROR}",
                other.map(|t| super::error::cut(t, 64))
            ));
        }
    };
    Ok(ReplyRecord {
        agent_id,
        agent_type,
        trace: trace_of(headers),
        body,
    })
}

#[cfg(test)]
mod tests {
    use rdkafka::message::{OwnedMessage, Timestamp};

    use super::*;
    use crate::kafka::headers::AGENT_MESSAGE;

    fn replies() -> ReplyTopic {
        ReplyTopic {
            name: "dev-agent-replies".into(),
            partitions: 3,
        }
    }

    fn record(payload: &[u8], headers: OwnedHeaders) -> OwnedMessage {
        OwnedMessage::new(
            Some(payload.to_vec()),
            None,
            "dev-agent-requests-echo".into(),
            Timestamp::NotAvailable,
            1,
            42,
            Some(headers),
        )
    }

    fn request(partition: &str) -> OwnedHeaders {
        request_to("dev-agent-replies", partition)
    }

    fn request_to(topic: &str, partition: &str) -> OwnedHeaders {
        let event = CloudEvent::new("test", AGENT_REQUEST, None);
        let headers = request_headers(&event, "c-1", "caller-1", None, None);
        with(
            with(headers, REPLY_TOPIC, topic),
            REPLY_PARTITION,
            partition,
        )
    }

    #[test]
    fn a_request_naming_a_partition_of_the_reply_topic_passes() {
        let incoming = parse_incoming(&record(br#"{"a": 1}"#, request("2")), true, &replies())
            .expect("a valid request");
        assert_eq!(incoming.correlation_id, "c-1");
        assert_eq!(incoming.sender.as_deref(), Some("caller-1"));
        assert_eq!(
            incoming.reply_to,
            Some(ReplyTo {
                topic: "dev-agent-replies".into(),
                partition: 2
            })
        );
        assert!(incoming.trace.is_some());
    }

    #[test]
    fn hostile_requests_are_refused_with_a_reason() {
        let cases: Vec<(&[u8], OwnedHeaders, &str)> = vec![
            (b"not json", request("0"), "not JSON"),
            (b"", request("0"), "no value"),
            (b"{}", request("3"), REPLY_PARTITION),
            (b"{}", request("-1"), REPLY_PARTITION),
            (b"{}", request("x"), REPLY_PARTITION),
            (
                b"{}",
                request_to("dev-langgraph-task-results", "0"),
                "not the reply topic",
            ),
            (
                b"{}",
                with(request("0"), REPLY_TOPIC, "dev-agent-replies"),
                "more than once",
            ),
            (b"{}", OwnedHeaders::new(), "no ce_type"),
            (
                b"{}",
                CloudEvent::new("t", AGENT_MESSAGE, None).to_headers(),
                "not an agent request",
            ),
            (
                b"{}",
                with(
                    with(
                        CloudEvent::new("t", AGENT_REQUEST, None).to_headers(),
                        CORRELATION_ID,
                        "has space",
                    ),
                    REPLY_TOPIC,
                    "dev-agent-replies",
                ),
                CORRELATION_ID,
            ),
            (
                b"{}",
                with(request("0"), DEADLINE_MS, "tomorrow"),
                DEADLINE_MS,
            ),
        ];
        for (payload, headers, reason) in cases {
            let err =
                parse_incoming(&record(payload, headers), true, &replies()).expect_err("refused");
            assert!(err.contains(reason), "{err} should name {reason}");
        }
    }

    #[test]
    fn a_plain_json_record_is_a_published_message_on_a_subscribed_topic() {
        let incoming = parse_incoming(&record(b"[1, 2]", OwnedHeaders::new()), false, &replies())
            .expect("published message");
        assert_eq!(incoming.correlation_id, "dev-agent-requests-echo:1:42");
        assert!(incoming.reply_to.is_none());
        assert!(parse_incoming(&record(b"{", OwnedHeaders::new()), false, &replies()).is_err());
    }

    #[test]
    fn a_reply_without_agent_headers_or_with_a_bad_error_body_is_invalid() {
        let event = CloudEvent::new("t", AGENT_ERROR, None);
        let good = reply_headers(&event, "c-1", "a-1", "echo");
        let (id, reply) =
            parse_reply(&record(br#"{"code": "x", "message": "y"}"#, good.clone())).expect("ours");
        assert_eq!(id, "c-1");
        assert_eq!(reply.expect("valid").body, Err(AgentError::new("x", "y")));
        let (_, bad) = parse_reply(&record(b"{}", good)).expect("ours");
        assert!(bad.is_err());
        let bare = with(OwnedHeaders::new(), CORRELATION_ID, "c-2");
        let (_, bad) = parse_reply(&record(b"{}", bare)).expect("ours");
        assert!(bad.expect_err("invalid").contains(AGENT_ID));
        assert!(parse_reply(&record(b"{}", OwnedHeaders::new())).is_none());
    }
}
