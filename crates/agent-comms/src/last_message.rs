//! The newest message of a topic, read on demand.
//!
//! For each partition, the high-water mark (the offset the next message will get) says
//! where the last message is; the reader fetches that one message of each partition and
//! keeps the newest by timestamp. No consumer group, nothing committed, nothing kept in
//! memory: it answers the same after a restart.

use std::{sync::Arc, time::Duration};

use agent_runtime::{Result, config::Settings, kafka};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::Headers,
};
use serde::Serialize;
use serde_json::Value;

use crate::SERVICE;

/// A message as `GET /last_message` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
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
    /// The headers (values as lossy UTF-8).
    pub headers: serde_json::Map<String, Value>,
    /// The value: its JSON when it is JSON, else its text.
    pub payload: Value,
}

/// Reads the newest message of any topic. Cheap to clone; calls are serialized.
#[derive(Clone)]
pub struct LastMessageReader {
    consumer: Arc<std::sync::Mutex<BaseConsumer>>,
}

impl LastMessageReader {
    /// A reader on the brokers of `settings`.
    ///
    /// # Errors
    /// A Kafka configuration error.
    pub fn new(settings: &Settings) -> Result<Self> {
        let consumer: BaseConsumer = kafka::client_config(settings, SERVICE)
            .set(
                "group.id",
                format!("{SERVICE}-last-message-{}", uuid::Uuid::new_v4()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()?;
        Ok(Self {
            consumer: Arc::new(std::sync::Mutex::new(consumer)),
        })
    }

    /// The newest message of `topic`, `Ok(None)` when the topic is empty or does not
    /// exist. Blocks up to a few seconds: runs on the blocking pool.
    ///
    /// # Errors
    /// A Kafka error (broker unreachable).
    pub async fn read(&self, topic: &str) -> Result<Option<LastMessage>> {
        let consumer = Arc::clone(&self.consumer);
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer = consumer.lock().map_err(|_| {
                agent_runtime::Error::Io(std::io::Error::other("reader lock poisoned"))
            })?;
            read_blocking(&consumer, &topic)
        })
        .await
        .map_err(|err| agent_runtime::Error::Io(std::io::Error::other(err)))?
    }
}

fn read_blocking(consumer: &BaseConsumer, topic: &str) -> Result<Option<LastMessage>> {
    let timeout = Duration::from_secs(5);
    let partitions = kafka::consumer::partitions_of(consumer, topic)?;
    let mut newest: Option<LastMessage> = None;
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
        if high <= low {
            continue;
        }
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, Offset::Offset(high - 1))?;
        consumer.assign(&list)?;
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message))
                    if message.partition() == partition && message.offset() == high - 1 =>
                {
                    let found = to_view(&message);
                    if newest
                        .as_ref()
                        .is_none_or(|n| found.timestamp_ms >= n.timestamp_ms)
                    {
                        newest = Some(found);
                    }
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err.into()),
                None => {}
            }
        }
    }
    consumer.unassign()?;
    Ok(newest)
}

fn to_view<M: Message>(message: &M) -> LastMessage {
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
    LastMessage {
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
