//! The [`Producer`]: publish and wait for the broker's acknowledgement.

use std::{
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use rdkafka::{
    ClientConfig, ClientContext,
    client::DefaultClientContext,
    config::RDKafkaLogLevel,
    error::KafkaError,
    message::{Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer as _},
    types::RDKafkaErrorCode,
};
use serde::Serialize;

use super::settings::millis;
use super::{CloudEvent, SecurityProtocol};
use crate::{Error, Result, kafka::KafkaSettings};

/// Where the broker stored a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"topic": "dev-langgraph-agent-events", "partition": 0, "offset": 3}))]
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
/// When the broker fences the idempotent producer (`ProducerFenced`,
/// `InvalidProducerEpoch`) or librdkafka reports a fatal error, the librdkafka client is
/// replaced by a new one (a new producer id), so the producer recovers by itself; see
/// [`Producer::send_bytes`].
///
/// Cheap to clone (clones share the client); one per process is enough.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<RwLock<Client>>,
    config: Arc<ClientConfig>,
    timeout: Duration,
    last_error: LastError,
    bootstrap: String,
    security_protocol: SecurityProtocol,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

/// The reason librdkafka last gave for a broker error, shared with the client context.
type LastError = Arc<Mutex<Option<String>>>;

/// One librdkafka producer client; replaced as a whole when it is fenced.
type Client = Arc<FutureProducer<BrokerErrors>>;

/// A delivery failure after which this client cannot produce again (every later message
/// is refused the same way), whereas a new client, with a new producer id, can.
///
/// librdkafka's idempotent producer, when a message times out in flight (the broker did
/// not answer in time), bumps its producer epoch by itself, without asking the broker
/// ("All partitions drained, bumped epoch to PID{Id:1,Epoch:1}"); a broker that does not
/// accept that epoch (Tansu, after a pause) answers `ProducerFenced` to every later
/// produce request, and librdkafka bumps again, for ever.
fn needs_new_client(err: &KafkaError) -> bool {
    matches!(
        err.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::Fatal
        )
    )
}

/// The producer's client context: logs as the default context does, and keeps the
/// reason of the last broker failure librdkafka reported (`sasl_ssl://host:9092/bootstrap:
/// SSL handshake failed: …`, `… Connection setup timed out in state SSL_HANDSHAKE`,
/// `… SASL authentication error: …`) for `/health`.
struct BrokerErrors {
    last_error: LastError,
}

impl BrokerErrors {
    fn remember(&self, reason: &str) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = Some(reason.to_owned());
        }
    }
}

impl ClientContext for BrokerErrors {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        // Some failures (a connection-setup timeout) are only logged, not reported as errors.
        if fac == "FAIL" {
            // "[thrd:sasl_ssl://host:9092/bootstrap]: sasl_ssl://host:9092/bootstrap: …"
            let reason = match log_message.split_once("]: ") {
                Some((thread, rest)) if thread.starts_with("[thrd:") => rest,
                _ => log_message,
            };
            self.remember(reason);
        }
        DefaultClientContext.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // "1/1 brokers are down" follows every failure and would hide its reason.
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::AllBrokersDown) {
            self.remember(reason);
        }
        DefaultClientContext.error(error, reason);
    }
}

impl Producer {
    /// librdkafka's `message.max.bytes` for every producer, in bytes: the largest record
    /// librdkafka sends, framing included, and the largest batch. librdkafka's default,
    /// set explicitly; Kafka brokers accept batches up to 1,048,588 bytes by default.
    pub const MESSAGE_MAX_BYTES: usize = 1_000_000;

    /// The most a record's key, value and headers may add up to, in bytes, as
    /// [`Producer::record_size`] counts them: [`Producer::MESSAGE_MAX_BYTES`] less 1 KiB
    /// for the record's framing (librdkafka counts up to ~40 bytes of lengths, offset and
    /// timestamp, and 10 per header). [`Producer::send_bytes`] refuses a larger record
    /// before it reaches librdkafka.
    pub const MAX_RECORD_BYTES: usize = Self::MESSAGE_MAX_BYTES - 1024;

    /// The size of a record as [`Producer::MAX_RECORD_BYTES`] limits it, in bytes: the
    /// key, the value, and each header's name and value.
    pub fn record_size(key: Option<&[u8]>, payload: &[u8], headers: &OwnedHeaders) -> usize {
        let headers: usize = headers
            .iter()
            .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
            .sum();
        key.map_or(0, <[u8]>::len) + payload.len() + headers
    }

    /// A producer for the brokers in `settings`. Does not contact the broker yet.
    ///
    /// # Errors
    /// [`Error::Kafka`] when librdkafka rejects the configuration.
    pub fn new(settings: &KafkaSettings, client_id: &str) -> Result<Self> {
        let last_error = LastError::default();
        let mut config = settings.client_config(client_id);
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", millis(settings.linger))
            .set("message.max.bytes", Self::MESSAGE_MAX_BYTES.to_string())
            // A message not acknowledged in time fails its delivery future.
            .set("message.timeout.ms", millis(settings.produce_timeout));
        // Connection failures are logged as warnings: let them reach `BrokerErrors` even
        // when the log filter shows errors only (the `log` crate still filters the output).
        if (config.log_level as i32) < RDKafkaLogLevel::Warning as i32 {
            config.set_log_level(RDKafkaLogLevel::Warning);
        }
        let inner = config.create_with_context(BrokerErrors {
            last_error: Arc::clone(&last_error),
        })?;
        Ok(Self {
            inner: Arc::new(RwLock::new(Arc::new(inner))),
            config: Arc::new(config),
            timeout: settings.produce_timeout,
            last_error,
            bootstrap: settings.bootstrap_servers.clone(),
            security_protocol: settings.security_protocol,
        })
    }

    /// Publishes `payload` under `key` with `headers`, and waits for the acknowledgement.
    ///
    /// When the client turns out to be fenced (see [`Producer`]), it is replaced and the
    /// message sent once more on the new client. A fenced message was refused by the
    /// broker, so it is not stored twice, and the refusal comes at once; after a fatal
    /// error the message may have been stored, and at-least-once allows the second copy.
    /// Either way the call ends within twice the produce timeout.
    ///
    /// # Errors
    /// [`Error::RecordTooLarge`], at once, when the key, payload and headers add up to
    /// more than [`Producer::MAX_RECORD_BYTES`]; [`Error::Kafka`] when the broker does not
    /// acknowledge within the produce timeout (unreachable broker, unknown topic, a record
    /// over the broker's own limit, …).
    pub async fn send_bytes(
        &self,
        topic: &str,
        key: Option<&str>,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<Delivery> {
        self.send_record(topic, None, key, payload, headers).await
    }

    /// As [`Producer::send_bytes`], to `partition` of `topic` rather than the one the key
    /// hashes to: a reply to the partition its caller reads
    /// ([`crate::agents`]).
    ///
    /// # Errors
    /// As [`Producer::send_bytes`]; a partition the topic does not have fails with
    /// [`Error::Kafka`] once the produce timeout has passed, so callers check it first.
    pub async fn send_to_partition(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&str>,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<Delivery> {
        self.send_record(topic, Some(partition), key, payload, headers)
            .await
    }

    async fn send_record(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&str>,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<Delivery> {
        let bytes = Self::record_size(key.map(str::as_bytes), payload, &headers);
        if bytes > Self::MAX_RECORD_BYTES {
            return Err(Error::RecordTooLarge {
                bytes,
                limit: Self::MAX_RECORD_BYTES,
            });
        }
        let record = || {
            let mut record = FutureRecord::to(topic)
                .payload(payload)
                .headers(headers.clone());
            if let Some(partition) = partition {
                record = record.partition(partition);
            }
            match key {
                Some(key) => record.key(key),
                None => record,
            }
        };
        let client = self.client();
        let delivered = match client.send(record(), self.timeout).await {
            Err((err, _)) if needs_new_client(&err) => {
                tracing::warn!(topic, error = %err, "producer fenced; replacing the Kafka client and sending again");
                self.replace(&client)?;
                self.client().send(record(), self.timeout).await
            }
            sent => sent,
        }
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

    /// The client in use.
    fn client(&self) -> Client {
        match self.inner.read() {
            Ok(slot) => Arc::clone(&slot),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces `failed` by a new client, unless another caller already did. The old
    /// client is destroyed on its own thread once the sends still using it are over
    /// (destroying a client blocks).
    fn replace(&self, failed: &Client) -> Result<()> {
        let mut slot = match self.inner.write() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !Arc::ptr_eq(&slot, failed) {
            return Ok(());
        }
        let fresh: FutureProducer<BrokerErrors> =
            self.config.create_with_context(BrokerErrors {
                last_error: Arc::clone(&self.last_error),
            })?;
        let old = std::mem::replace(&mut *slot, Arc::new(fresh));
        drop(slot);
        let spawned = std::thread::Builder::new()
            .name("kafka-producer-close".into())
            .spawn(move || {
                while Arc::strong_count(&old) > 1 {
                    std::thread::sleep(Duration::from_millis(100));
                }
                drop(old);
            });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "cannot spawn a thread to close the fenced producer");
        }
        Ok(())
    }

    /// Waits up to `timeout` for queued messages to be delivered (at shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(err) = self.client().flush(timeout) {
            tracing::warn!(error = %err, "producer flush did not complete");
        }
    }

    /// Asks the broker for cluster metadata, blocking up to `timeout`: a reachability
    /// probe. Call it off the async workers (`spawn_blocking`).
    ///
    /// # Errors
    /// [`Error::Kafka`] when the broker does not answer in time.
    pub fn probe(&self, timeout: Duration) -> Result<()> {
        self.client().client().fetch_metadata(None, timeout)?;
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = None;
        }
        Ok(())
    }

    /// The reason librdkafka gave for its last broker error since the last successful
    /// [`Producer::probe`]: why a broker cannot be reached (refused connection, failed TLS
    /// handshake, failed authentication). librdkafka puts no credential in it.
    pub fn last_broker_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|slot| slot.clone())
    }

    /// `KAFKA_BOOTSTRAP_SERVERS` and `KAFKA_SECURITY_PROTOCOL`, for log lines.
    pub fn brokers(&self) -> (&str, SecurityProtocol) {
        (&self.bootstrap, self.security_protocol)
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::{message::Header, mocking::MockCluster};

    use super::*;

    fn settings(bootstrap: &str) -> KafkaSettings {
        KafkaSettings {
            produce_timeout: Duration::from_secs(5),
            ..KafkaSettings::for_brokers(bootstrap)
        }
    }

    fn headers() -> OwnedHeaders {
        OwnedHeaders::new()
            .insert(Header {
                key: "ce_type",
                value: Some("test"),
            })
            .insert(Header::<&str> {
                key: "empty",
                value: None,
            })
    }

    #[test]
    fn a_records_size_is_its_key_value_and_header_names_and_values() {
        assert_eq!(
            Producer::record_size(Some(b"key"), b"value", &headers()),
            3 + 5 + "ce_type".len() + "test".len() + "empty".len()
        );
        assert_eq!(Producer::record_size(None, b"", &OwnedHeaders::new()), 0);
    }

    #[tokio::test]
    async fn a_record_at_the_limit_is_stored_and_one_byte_more_is_refused_before_the_broker() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("big", 1, 1).expect("topic");
        let producer =
            Producer::new(&settings(&cluster.bootstrap_servers()), "test").expect("producer");
        let overhead = Producer::record_size(Some(b"k"), b"", &headers());
        let fits = vec![b'x'; Producer::MAX_RECORD_BYTES - overhead];
        let delivery = producer
            .send_bytes("big", Some("k"), &fits, headers())
            .await
            .expect("a record at the limit is stored");
        assert_eq!(delivery.offset, 0);

        let over = vec![b'x'; fits.len() + 1];
        let started = std::time::Instant::now();
        let err = producer
            .send_bytes("big", Some("k"), &over, headers())
            .await
            .expect_err("one byte over the limit");
        assert!(
            matches!(
                err,
                Error::RecordTooLarge { bytes, limit }
                    if bytes == Producer::MAX_RECORD_BYTES + 1 && limit == Producer::MAX_RECORD_BYTES
            ),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "refused at once"
        );
    }

    #[test]
    fn only_a_fenced_or_fatal_producer_gets_a_new_client() {
        for code in [
            RDKafkaErrorCode::ProducerFenced,
            RDKafkaErrorCode::InvalidProducerEpoch,
            RDKafkaErrorCode::Fatal,
        ] {
            assert!(
                needs_new_client(&KafkaError::MessageProduction(code)),
                "{code:?}"
            );
        }
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::MessageSizeTooLarge,
        ] {
            assert!(
                !needs_new_client(&KafkaError::MessageProduction(code)),
                "{code:?}"
            );
        }
    }
}
