//! The results topic, read from its end: the first record timestamp of every task id.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use agent_runtime::kafka::partitions_of;
use anyhow::{Context, bail};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
};
use tokio::task::JoinHandle;

/// Task id → Kafka timestamp (ms since the epoch) of its first result record.
pub type Seen = Arc<Mutex<HashMap<String, i64>>>;

/// A consumer reading every partition of the results topic from the end offsets it had
/// when [`ResultsReader::start`] returned, so every result published afterwards is seen.
///
/// It is in no consumer group's way: a random group id, no offset commit, partitions
/// assigned explicitly (no subscription, no rebalance).
#[derive(Debug)]
pub struct ResultsReader {
    seen: Seen,
    task: JoinHandle<()>,
}

impl ResultsReader {
    /// Connects to `bootstrap`, waits up to 30 s for `topic` to exist, assigns each of its
    /// partitions at its current high watermark and starts reading in the background.
    ///
    /// # Errors
    /// When the consumer cannot be created, the topic has no partitions after 30 s, or a
    /// partition's watermarks cannot be read.
    pub async fn start(bootstrap: &str, topic: &str) -> anyhow::Result<Self> {
        let bootstrap = bootstrap.to_owned();
        let topic_name = topic.to_owned();
        // Metadata and watermark requests block their thread.
        let consumer =
            tokio::task::spawn_blocking(move || position_at_end(&bootstrap, &topic_name))
                .await
                .context("the results reader's set-up panicked")??;
        let seen = Seen::default();
        let task = tokio::spawn(read(consumer, Arc::clone(&seen)));
        // The offsets are explicit, so nothing published from now on can be missed; the
        // pause only lets the first fetch go out before the load starts, as a reader that
        // is already consuming would.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(Self { seen, task })
    }

    /// The first-result timestamps seen so far.
    pub fn seen(&self) -> Seen {
        Arc::clone(&self.seen)
    }

    /// Stops reading; returns what was seen.
    pub fn stop(self) -> HashMap<String, i64> {
        self.task.abort();
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn position_at_end(bootstrap: &str, topic: &str) -> anyhow::Result<StreamConsumer> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!("pipeline-bench-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "latest")
        .set("client.id", "pipeline-bench-loadgen")
        .create()
        .context("cannot create the results consumer")?;
    let timeout = Duration::from_secs(5);
    let started = std::time::Instant::now();
    let partitions: Vec<i32> = loop {
        let partitions = partitions_of(&consumer, topic).unwrap_or_default();
        if !partitions.is_empty() {
            break partitions;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("topic {topic} has no partitions at {bootstrap} after 30 s");
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .with_context(|| format!("cannot read the end offset of {topic}/{partition}"))?;
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(high))
            .context("cannot build the assignment")?;
    }
    consumer
        .assign(&assignment)
        .context("cannot assign the results partitions")?;
    Ok(consumer)
}

async fn read(consumer: StreamConsumer, seen: Seen) {
    loop {
        match consumer.recv().await {
            Ok(message) => {
                let (Some(key), Some(ts)) = (message.key(), message.timestamp().to_millis()) else {
                    continue;
                };
                let key = String::from_utf8_lossy(key).into_owned();
                seen.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(key)
                    .or_insert(ts);
            }
            Err(err) => {
                eprintln!("loadgen: results consumer: {err}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
