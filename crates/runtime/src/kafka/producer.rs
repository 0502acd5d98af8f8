//! The [`Producer`]: publish and wait for the broker's acknowledgement.

use std::time::Duration;

use rdkafka::{
    ClientConfig,
    message::OwnedHeaders,
    producer::{FutureProducer, FutureRecord, Producer as _},
};
use serde::Serialize;

use super::{CloudEvent, client_config};
use crate::{Error, Result, config::Settings};

/// Where the broker stored a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset within the partition.
    pub offset: i64,
}

/// A Kafka producer that waits for every message to be acknowledged by all in-sync
/// replicas (`acks=all`, idempotent), or fails after `KAFKA_PRODUCE_TIMEOUT_MS`.
///
/// Cheap to clone; one per process is enough.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
    timeout: Duration,
}

impl Producer {
    /// A producer for the brokers in `settings`. Does not contact the broker yet.
    ///
    /// # Errors
    /// [`Error::Kafka`] when librdkafka rejects the configuration.
    pub fn new(settings: &Settings, client_id: &str) -> Result<Self> {
        let timeout = Duration::from_millis(u64::from(settings.kafka_produce_timeout_ms));
        Self::from_config(
            client_config(settings, client_id)
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .set("linger.ms", "5")
                // A message not acknowledged in time fails its delivery future.
                .set(
                    "message.timeout.ms",
                    settings.kafka_produce_timeout_ms.to_string(),
                ),
            timeout,
        )
    }

    fn from_config(config: &ClientConfig, timeout: Duration) -> Result<Self> {
        Ok(Self {
            inner: config.create()?,
            timeout,
        })
    }

    /// Publishes `payload` under `key` with `headers`, and waits for the acknowledgement.
    ///
    /// # Errors
    /// [`Error::Kafka`] when the broker does not acknowledge within the produce timeout
    /// (unreachable broker, unknown topic, message too large, …).
    pub async fn send_bytes(
        &self,
        topic: &str,
        key: Option<&str>,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<Delivery> {
        let mut record = FutureRecord::to(topic).payload(payload).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        let delivered = self
            .inner
            .send(record, self.timeout)
            .await
            .map_err(|(err, _)| Error::Kafka(err))?;
        Ok(Delivery {
            topic: topic.to_owned(),
            partition: delivered.partition,
            offset: delivered.offset,
        })
    }

    /// Publishes `value` as JSON under `key` with the CloudEvents headers of `event`, and
    /// waits for the acknowledgement.
    ///
    /// # Errors
    /// As [`Producer::send_bytes`]; [`Error::Json`] when `value` cannot be encoded.
    pub async fn send_json<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        key: &str,
        value: &T,
        event: &CloudEvent,
    ) -> Result<Delivery> {
        let payload = serde_json::to_vec(value)?;
        self.send_bytes(topic, Some(key), &payload, event.to_headers())
            .await
    }

    /// Waits up to `timeout` for queued messages to be delivered (at shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(err) = self.inner.flush(timeout) {
            tracing::warn!(error = %err, "producer flush did not complete");
        }
    }

    /// Asks the broker for cluster metadata, blocking up to `timeout`: a reachability
    /// probe. Call it off the async workers (`spawn_blocking`).
    ///
    /// # Errors
    /// [`Error::Kafka`] when the broker does not answer in time.
    pub fn probe(&self, timeout: Duration) -> Result<()> {
        self.inner.client().fetch_metadata(None, timeout)?;
        Ok(())
    }
}
