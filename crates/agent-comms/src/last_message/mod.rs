//! The newest record of each readable topic, kept in memory and up to date.
//!
//! `GET /last_message` answers from a view: a background [`Follower`] with its own
//! consumer, outside any consumer group, assigned to every partition of the topics it
//! follows. It starts each partition at its high-water mark − 1 (the partition's last
//! record; the high-water mark is the offset the next record will get) and then reads
//! every new record, keeping per topic the newest by timestamp, rendered once as the JSON
//! of a [`LastMessage`]. A request ([`LastMessages::newest`]) only clones that rendering
//! out of a `tokio::sync::watch` of its topic: no broker round trip, no lock held across
//! requests, the same cost with 1 or 1,000 requests at once. Nothing is committed: the
//! view is rebuilt the same way after a restart.
//!
//! The events and results topics are followed from the start. Any other valid topic name
//! may be read, as before: its first request adds it to the view and waits (at most
//! [`LOAD_WAIT`]) until its partitions' last records are read; at most [`MAX_TOPICS`]
//! topics are followed at once. A topic that does not exist is not followed: it reads as
//! empty, and is looked up again on its next request.
//!
//! "Newest" keeps the old reader's meaning: the record with the latest timestamp
//! (producer or broker time), compared across partitions; a record whose timestamp is
//! earlier than the one shown does not replace it.
//!
//! - [`view`]: [`LastMessages`], the request side, and [`ViewOptions`].
//! - [`follower`]: [`Follower`], the background task.

pub mod follower;
pub mod view;

pub use follower::Follower;
pub use view::{LastMessages, ReadError, TopicState, ViewOptions};

use std::time::Duration;

use axum::{
    body::Bytes,
    http::header::CONTENT_TYPE,
    response::{IntoResponse, Response},
};
use rdkafka::{Message, message::Headers};
use serde::Serialize;
use serde_json::Value;

/// The most topics the view follows at once, the events and results topics included.
/// Each keeps one record (up to the producer's ~1 MB) in memory.
pub const MAX_TOPICS: usize = 64;

/// How long a request waits for its topic to be loaded (its metadata and the last
/// record of each partition read) before it is answered 503.
pub const LOAD_WAIT: Duration = Duration::from_secs(5);

/// A message as `GET /last_message` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[schema(example = json!({
    "topic": "dev-langgraph-task-results", "partition": 1, "offset": 0,
    "key": "0d6f5b8e-8a43-4c1e-9a55-3f1f4e2b7c10", "timestamp_ms": 1795267222430_i64,
    "headers": {"ce_type": "io.langgraph-kafka.task.finished", "content-type": "application/json"},
    "payload": {"task_id": "0d6f5b8e-8a43-4c1e-9a55-3f1f4e2b7c10", "status": "completed"}
}))]
pub struct LastMessage {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The key, as text (lossy UTF-8).
    pub key: Option<String>,
    /// Broker or producer time, in milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
    /// The headers (values as lossy UTF-8; `null` for a header without a value).
    #[schema(value_type = std::collections::BTreeMap<String, Option<String>>)]
    pub headers: serde_json::Map<String, Value>,
    /// The value: its JSON when it is JSON, else its text.
    #[schema(value_type = utoipa::openapi::schema::Value)]
    pub payload: Value,
}

impl LastMessage {
    /// `message` as `GET /last_message` shows it.
    pub fn of<M: Message>(message: &M) -> Self {
        let payload = message.payload().unwrap_or_default();
        let payload = serde_json::from_slice(payload)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()));
        let mut headers = serde_json::Map::new();
        if let Some(hs) = message.headers() {
            for h in hs.iter() {
                let value = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                headers.insert(h.key.to_owned(), value.map_or(Value::Null, Value::String));
            }
        }
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            timestamp_ms: message.timestamp().to_millis(),
            headers,
            payload,
        }
    }
}

/// The newest record of a topic, rendered once as the JSON body of `GET /last_message`
/// (a [`LastMessage`]); shared by every request that reads it.
#[derive(Clone, PartialEq, Eq)]
pub struct Newest {
    /// Where it is stored.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp, in milliseconds since the Unix epoch: what "newest" compares.
    pub timestamp_ms: Option<i64>,
    /// The JSON of its [`LastMessage`].
    pub json: Bytes,
}

impl Newest {
    /// Renders `message`.
    ///
    /// # Errors
    /// When the JSON cannot be written (not expected: it is built from a JSON value).
    pub fn render<M: Message>(message: &M) -> serde_json::Result<Self> {
        let shown = LastMessage::of(message);
        Ok(Self {
            partition: shown.partition,
            offset: shown.offset,
            timestamp_ms: shown.timestamp_ms,
            json: serde_json::to_vec(&shown)?.into(),
        })
    }

    /// The rendering as a JSON value, the shape of a [`LastMessage`].
    ///
    /// # Errors
    /// Never for a rendering made by [`Newest::render`].
    pub fn value(&self) -> serde_json::Result<Value> {
        serde_json::from_slice(&self.json)
    }
}

impl std::fmt::Debug for Newest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Newest")
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("json_bytes", &self.json.len())
            .finish()
    }
}

impl IntoResponse for &Newest {
    /// 200 with the JSON, `Content-Type: application/json`; the bytes are shared, not
    /// copied.
    fn into_response(self) -> Response {
        ([(CONTENT_TYPE, "application/json")], self.json.clone()).into_response()
    }
}

#[cfg(test)]
mod tests;
