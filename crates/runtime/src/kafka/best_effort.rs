//! [`BestEffortProducer`]: records that must never hold up or fail the work that makes
//! them — a task's progress events — and [`partition_for_key`], where a keyed record
//! lands.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rdkafka::{
    ClientContext,
    config::RDKafkaLogLevel,
    message::OwnedHeaders,
    producer::{BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer},
};
use serde::Serialize;

use super::{Producer, settings::millis};
use crate::{Result, kafka::KafkaSettings};

/// How often, at most, a failure is logged (the others are counted).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The partition librdkafka's default partitioner (`consistent_random`) gives a record
/// with a non-empty `key` in a topic of `partitions` partitions: the CRC-32 (IEEE, as
/// zlib's) of the key modulo the partition count. What the services publish under a task
/// id lands there, so a reader of one task's records needs only that partition.
///
/// `partitions` below 1 counts as 1.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    let partitions = u32::try_from(partitions.max(1)).unwrap_or(1);
    // The remainder is below `partitions`, itself an `i32`.
    i32::try_from(crc32fast::hash(key) % partitions).unwrap_or(0)
}

/// What a [`BestEffortProducer`] did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BestEffortStats {
    /// Records handed to librdkafka.
    pub queued: u64,
    /// Records the broker acknowledged.
    pub delivered: u64,
    /// Records dropped before they were queued: the queue was full (the broker is slow
    /// or away), or the record was larger than [`Producer::MAX_RECORD_BYTES`].
    pub dropped: u64,
    /// Queued records the broker did not acknowledge within `KAFKA_PRODUCE_TIMEOUT_MS`.
    pub failed: u64,
}

#[derive(Debug)]
struct Counters {
    queued: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    /// When the counters were made, for rate-limiting logs.
    started: Instant,
    /// Milliseconds after `started` of the last failure logged (0: none yet).
    last_logged_ms: AtomicU64,
}

impl Counters {
    fn new() -> Self {
        Self {
            queued: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            started: Instant::now(),
            last_logged_ms: AtomicU64::new(0),
        }
    }

    fn snapshot(&self) -> BestEffortStats {
        BestEffortStats {
            queued: self.queued.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    /// Whether a failure now should be logged: the first, then one each [`LOG_EVERY`].
    fn should_log(&self) -> bool {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_logged_ms.load(Ordering::Relaxed);
        let every = u64::try_from(LOG_EVERY.as_millis()).unwrap_or(u64::MAX);
        (last == 0 || now.saturating_sub(last) >= every)
            && self
                .last_logged_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Counts deliveries (librdkafka's delivery report callback, on its polling thread).
struct Counting {
    counters: Arc<Counters>,
    what: &'static str,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.counters.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((err, _)) => {
                let failed = self.counters.failed.fetch_add(1, Ordering::Relaxed) + 1;
                if self.counters.should_log() {
                    tracing::warn!(what = self.what, error = %err, failed, "best-effort records not delivered");
                }
            }
        }
    }
}

/// A producer that never waits: [`send`](Self::send) queues the record and returns at
/// once; a record that cannot be queued (the queue is full because the broker is slow or
/// away, or the record is too large) is dropped, and one the broker does not acknowledge
/// in time is lost. Both are counted ([`stats`](Self::stats)) and logged at most once
/// every 10 s. For records whose loss costs a reader some detail but never correctness
/// (a task's progress events: the result is published on its own, acknowledged path).
///
/// Records are idempotent and ordered per partition (`enable.idempotence`), batched for
/// up to 5 ms (`linger.ms`); the queue holds at most `max_queue_kib` KiB, so a broker
/// outage costs bounded memory. librdkafka's own thread polls for deliveries
/// (`ThreadedProducer`). The client is separate from the services' [`Producer`]: a flood
/// of best-effort records never delays a result.
pub struct BestEffortProducer {
    inner: ThreadedProducer<Counting>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for BestEffortProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BestEffortProducer")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl BestEffortProducer {
    /// A producer for the brokers in `settings`, queueing at most `max_queue_kib` KiB;
    /// `what` names its records in logs (e.g. `progress`). Does not contact the broker
    /// yet.
    ///
    /// # Errors
    /// [`crate::Error::Kafka`] when librdkafka rejects the configuration.
    pub fn new(
        settings: &KafkaSettings,
        client_id: &str,
        what: &'static str,
        max_queue_kib: usize,
    ) -> Result<Self> {
        let counters = Arc::new(Counters::new());
        let mut config = settings.client_config(client_id);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set(
                "queue.buffering.max.kbytes",
                max_queue_kib.max(1).to_string(),
            )
            .set("message.max.bytes", Producer::MESSAGE_MAX_BYTES.to_string())
            .set("message.timeout.ms", millis(settings.produce_timeout));
        if (config.log_level as i32) < RDKafkaLogLevel::Warning as i32 {
            config.set_log_level(RDKafkaLogLevel::Warning);
        }
        let inner = config.create_with_context(Counting {
            counters: Arc::clone(&counters),
            what,
        })?;
        Ok(Self { inner, counters })
    }

    /// Queues `payload` under `key` (and `headers`) for `topic`, to `partition` when
    /// given (else librdkafka's partitioner: [`partition_for_key`]). Never waits: `false`
    /// when the record was dropped instead (counted, logged at most every 10 s).
    pub fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &str,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> bool {
        let bytes = Producer::record_size(
            Some(key.as_bytes()),
            payload,
            headers.as_ref().unwrap_or(&OwnedHeaders::new()),
        );
        if bytes > Producer::MAX_RECORD_BYTES {
            self.dropped(topic, &format!("{bytes} bytes, over the record limit"));
            return false;
        }
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        match self.inner.send(record) {
            Ok(()) => {
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err((err, _)) => {
                self.dropped(topic, &err.to_string());
                false
            }
        }
    }

    fn dropped(&self, topic: &str, why: &str) {
        let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if self.counters.should_log() {
            tracing::warn!(topic, why, dropped, "best-effort record dropped");
        }
    }

    /// What it did so far.
    pub fn stats(&self) -> BestEffortStats {
        self.counters.snapshot()
    }

    /// Waits up to `timeout` for queued records to be delivered (at shutdown).
    pub fn flush(&self, timeout: Duration) {
        let started = Instant::now();
        if let Err(err) = self.inner.flush(timeout) {
            tracing::warn!(error = %err, waited_ms = started.elapsed().as_millis() as u64, "best-effort flush did not complete");
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::{
        ClientConfig, Message, Offset, TopicPartitionList,
        consumer::{BaseConsumer, Consumer},
        mocking::MockCluster,
    };

    use super::*;

    const TOPIC: &str = "progress";

    #[test]
    fn the_partition_of_a_key_is_its_crc32_modulo_the_partitions() {
        // CRC-32 of "123456789" is 0xCBF43926, the standard check value.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            partition_for_key(b"123456789", 7),
            i32::try_from(0xCBF4_3926_u32 % 7).expect("small")
        );
        assert_eq!(partition_for_key(b"anything", 1), 0);
        assert_eq!(partition_for_key(b"anything", 0), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keyed_records_land_where_partition_for_key_says_and_are_counted() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic(TOPIC, 5, 1).expect("topic");
        let bootstrap = cluster.bootstrap_servers();
        let producer =
            BestEffortProducer::new(&KafkaSettings::for_brokers(&bootstrap), "t", "test", 1024)
                .expect("producer");
        let keys: Vec<String> = (0..40).map(uuid_like).collect();
        for key in &keys {
            assert!(producer.send(TOPIC, None, key, key.as_bytes(), None));
        }
        producer.flush(Duration::from_secs(10));
        assert_eq!(
            producer.stats(),
            BestEffortStats {
                queued: 40,
                delivered: 40,
                dropped: 0,
                failed: 0
            }
        );

        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "check")
            .create()
            .expect("consumer");
        let mut list = TopicPartitionList::new();
        for partition in 0..5 {
            list.add_partition_offset(TOPIC, partition, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&list).expect("assign");
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen < keys.len() && Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
                let key = message.key().expect("keyed");
                assert_eq!(message.partition(), partition_for_key(key, 5));
                seen += 1;
            }
        }
        assert_eq!(seen, keys.len(), "every record read back");
    }

    #[test]
    fn with_no_broker_a_full_queue_drops_records_at_once_and_counts_them() {
        // Nothing listens on port 1: records wait in the queue until it is full.
        let producer = BestEffortProducer::new(
            &KafkaSettings::for_brokers("127.0.0.1:1"),
            "t",
            "test",
            1, // 1 KiB
        )
        .expect("producer");
        let payload = vec![b'x'; 600];
        let sent: Vec<bool> = (0..10)
            .map(|i| producer.send(TOPIC, Some(0), &format!("k{i}"), &payload, None))
            .collect();
        assert!(sent[0], "the first fits");
        assert!(sent.iter().filter(|s| !**s).count() >= 8, "{sent:?}");
        let stats = producer.stats();
        assert_eq!(stats.queued + stats.dropped, 10, "{stats:?}");

        let huge = vec![b'y'; Producer::MAX_RECORD_BYTES + 1];
        assert!(!producer.send(TOPIC, Some(0), "big", &huge, None));
        assert_eq!(producer.stats().dropped, stats.dropped + 1);
    }

    fn uuid_like(i: u32) -> String {
        format!("{i:08x}-0000-4000-8000-000000000000")
    }
}
