//! CloudEvents binary-mode attributes and W3C `traceparent` as Kafka headers.
//!
//! The CloudEvents Kafka protocol binding (<https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/kafka-protocol-binding.md>)
//! puts each attribute in a header named `ce_<attribute>` and the data's media type in
//! `content-type`; the message value is the data itself (a task or result as JSON), so
//! consumers that ignore headers — like the Python system's — still read plain JSON.

use chrono::{DateTime, Utc};
use rdkafka::message::{Header, Headers, OwnedHeaders};

use crate::telemetry::TraceContext;

/// CloudEvents `type` of a task on the events topic.
pub const TASK_CREATED: &str = "io.langgraph-kafka.task.created";
/// CloudEvents `type` of a result on the results topic.
pub const TASK_FINISHED: &str = "io.langgraph-kafka.task.finished";
/// CloudEvents `type` of a resume of a task paused for review
/// ([`agent_core::task::ResumeRequest`]) on the events topic.
pub const TASK_RESUMED: &str = "io.langgraph-kafka.task.resumed";
/// CloudEvents `type` of a payload published through agent-comms.
pub const EVENT_PUBLISHED: &str = "io.langgraph-kafka.event.published";
/// CloudEvents `type` of a request to an agent ([`crate::agents`]): `send_message` to
/// one agent type, or a `scatter_gather` broadcast; it names where to reply.
pub const AGENT_REQUEST: &str = "io.langgraph-kafka.agent.request";
/// CloudEvents `type` of an agent's reply to a request: the handler's JSON value.
pub const AGENT_REPLY: &str = "io.langgraph-kafka.agent.reply";
/// CloudEvents `type` of an agent's error reply to a request: `{"code", "message"}`.
pub const AGENT_ERROR: &str = "io.langgraph-kafka.agent.error";
/// CloudEvents `type` of a message broadcast by `publish_message` to every agent type
/// subscribed to its topic; nobody replies.
pub const AGENT_MESSAGE: &str = "io.langgraph-kafka.agent.message";

/// The CloudEvents attributes of one message, plus its trace context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEvent {
    /// `ce_id`: unique per event.
    pub id: String,
    /// `ce_source`: who sent it, e.g. `/langgraph-kafka/task-generator`.
    pub source: String,
    /// `ce_type`: what happened, e.g. [`TASK_CREATED`].
    pub event_type: String,
    /// `ce_time`.
    pub time: DateTime<Utc>,
    /// `traceparent`.
    pub trace: TraceContext,
}

impl CloudEvent {
    /// A new event from `service` of `event_type`: its `traceparent` names the exported
    /// span the caller runs in ([`TraceContext::current`]) when spans are exported, else
    /// continues `trace` with a new span id (or starts a new trace).
    pub fn new(service: &str, event_type: &str, trace: Option<TraceContext>) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            source: format!("/langgraph-kafka/{service}"),
            event_type: event_type.to_owned(),
            time: Utc::now(),
            trace: TraceContext::current()
                .unwrap_or_else(|| trace.map_or_else(TraceContext::new_root, |t| t.child())),
        }
    }

    /// The Kafka headers: `ce_specversion`, `ce_id`, `ce_source`, `ce_type`, `ce_time`,
    /// `content-type: application/json` and `traceparent`.
    pub fn to_headers(&self) -> OwnedHeaders {
        let time = self
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let trace = self.trace.to_string();
        [
            ("ce_specversion", "1.0"),
            ("ce_id", self.id.as_str()),
            ("ce_source", self.source.as_str()),
            ("ce_type", self.event_type.as_str()),
            ("ce_time", time.as_str()),
            ("content-type", "application/json"),
            ("traceparent", trace.as_str()),
        ]
        .into_iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value),
            })
        })
    }
}

/// The value of header `name` as UTF-8, if present.
pub fn header_str<'a, H: Headers>(headers: Option<&'a H>, name: &str) -> Option<&'a str> {
    headers?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// The trace context of a received message, from its `traceparent` header.
pub fn trace_of<H: Headers>(headers: Option<&H>) -> Option<TraceContext> {
    header_str(headers, "traceparent").and_then(TraceContext::parse)
}

/// Whether an events-topic record with CloudEvent type `ce_type` (its `ce_type` header)
/// and value `payload` is a resume of a paused task
/// ([`ResumeRequest`](agent_core::task::ResumeRequest)), not a task: its type is
/// [`TASK_RESUMED`]; or, without a type (a producer that sets no headers), its value is a
/// JSON object with `resume` and no `task_name`.
pub fn is_resume(ce_type: Option<&str>, payload: &[u8]) -> bool {
    match ce_type {
        Some(ce_type) => ce_type == TASK_RESUMED,
        // Cheap test first: most records are tasks.
        None if !payload.windows(8).any(|w| w == b"\"resume\"") => false,
        None => serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(payload)
            .is_ok_and(|fields| fields.contains_key("resume") && !fields.contains_key("task_name")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_every_attribute_and_the_trace() {
        let parent = TraceContext::new_root();
        let event = CloudEvent::new("task-generator", TASK_CREATED, Some(parent));
        let headers = event.to_headers();
        assert_eq!(header_str(Some(&headers), "ce_specversion"), Some("1.0"));
        assert_eq!(header_str(Some(&headers), "ce_type"), Some(TASK_CREATED));
        assert_eq!(
            header_str(Some(&headers), "ce_source"),
            Some("/langgraph-kafka/task-generator")
        );
        assert_eq!(
            header_str(Some(&headers), "content-type"),
            Some("application/json")
        );
        let trace = trace_of(Some(&headers)).expect("traceparent");
        assert_eq!(trace.trace_id, parent.trace_id);
        assert_ne!(trace.span_id, parent.span_id);
        assert!(header_str(Some(&headers), "ce_time").is_some_and(|t| t.ends_with('Z')));
    }
}
