//! Tests of the consumer loop on librdkafka's mock cluster.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::OwnedMessage,
    mocking::MockCluster,
    producer::{FutureProducer, FutureRecord},
};
use tokio_util::sync::CancellationToken;

use super::{ConsumerOptions, Outcome, run_at_least_once};
use crate::kafka::{KafkaSettings, Producer};

const TOPIC: &str = "events";

/// Locks `mutex`, poisoned or not (a panicking test fails anyway).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn settings(bootstrap: &str) -> KafkaSettings {
    KafkaSettings {
        session_timeout: Duration::from_secs(3),
        ..KafkaSettings::for_brokers(bootstrap)
    }
}

fn options(concurrency: usize) -> ConsumerOptions {
    ConsumerOptions {
        group_id: "group".into(),
        topics: vec![TOPIC.into()],
        dead_letter_topic: "dead".into(),
        client_id: "test".into(),
        drain_timeout: Duration::from_secs(5),
        concurrency,
        max_attempts: 3,
        progress: super::ConsumerProgress::default(),
    }
}

async fn produce(bootstrap: &str, keys: &[String]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    for (i, key) in keys.iter().enumerate() {
        producer
            .send(
                FutureRecord::to(TOPIC).key(key).payload(&format!("m{i}")),
                Duration::from_secs(5),
            )
            .await
            .expect("produced");
    }
}

/// What the process function saw.
#[derive(Default)]
struct Seen {
    running: AtomicUsize,
    most_running: AtomicUsize,
    /// (partition, offset) → times processed.
    times: Mutex<HashMap<(i32, i64), usize>>,
    /// Key → messages of that key running now, and the most seen at once.
    per_key: Mutex<HashMap<Vec<u8>, (usize, usize)>>,
    /// Payloads in the order processing started.
    started: Mutex<Vec<String>>,
}

/// Runs the loop until `total` messages were processed; each takes 5 to 30 ms.
async fn consume(bootstrap: &str, concurrency: usize, total: usize) -> Arc<Seen> {
    let settings = settings(bootstrap);
    let producer = Producer::new(&settings, "test").expect("producer");
    let seen = Arc::new(Seen::default());
    let shutdown = CancellationToken::new();
    let done = Arc::new(AtomicUsize::new(0));
    let process = {
        let (seen, shutdown) = (seen.clone(), shutdown.clone());
        move |message: OwnedMessage| {
            let (seen, shutdown, done) = (seen.clone(), shutdown.clone(), done.clone());
            async move {
                let key = message.key().unwrap_or_default().to_vec();
                let payload = String::from_utf8_lossy(message.payload().unwrap_or_default());
                lock(&seen.started).push(payload.into_owned());
                let now = seen.running.fetch_add(1, Ordering::SeqCst) + 1;
                seen.most_running.fetch_max(now, Ordering::SeqCst);
                {
                    let mut per_key = lock(&seen.per_key);
                    let entry = per_key.entry(key.clone()).or_default();
                    entry.0 += 1;
                    entry.1 = entry.1.max(entry.0);
                }
                let millis = 5 + (message.offset() as u64 * 7) % 25;
                tokio::time::sleep(Duration::from_millis(millis)).await;
                lock(&seen.per_key).entry(key).or_default().0 -= 1;
                seen.running.fetch_sub(1, Ordering::SeqCst);
                *lock(&seen.times)
                    .entry((message.partition(), message.offset()))
                    .or_default() += 1;
                if done.fetch_add(1, Ordering::SeqCst) + 1 == total {
                    shutdown.cancel();
                }
                Ok(Outcome::Done)
            }
        }
    };
    let run = run_at_least_once(&settings, options(concurrency), producer, shutdown, process);
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("all messages processed within 60 s")
        .expect("the loop ran");
    seen
}

/// The group's committed offset of each partition.
fn committed(bootstrap: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "group")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(TOPIC, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(5))
        .expect("committed offsets");
    (0..partitions)
        .map(
            |p| match committed.find_partition(TOPIC, p).map(|e| e.offset()) {
                Some(Offset::Offset(offset)) => offset,
                other => panic!("partition {p}: no committed offset ({other:?})"),
            },
        )
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_runs_side_by_side_up_to_the_limit_and_every_offset_is_committed() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, 2, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let keys: Vec<String> = (0..40).map(|i| format!("task-{i}")).collect();
    produce(&bootstrap, &keys).await;

    let seen = consume(&bootstrap, 3, keys.len()).await;
    let most = seen.most_running.load(Ordering::SeqCst);
    assert!(most <= 3, "{most} messages ran at once with a limit of 3");
    assert!(most >= 2, "messages ran one at a time ({most})");
    let times = lock(&seen.times);
    assert_eq!(times.len(), 40, "every message processed");
    assert!(times.values().all(|&n| n == 1), "none twice: {times:?}");
    let per_partition: Vec<i64> = (0..2)
        .map(|p| {
            times
                .keys()
                .filter(|(partition, _)| *partition == p)
                .count() as i64
        })
        .collect();
    assert_eq!(
        committed(&bootstrap, 2),
        per_partition,
        "committed past the last message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_one_key_run_one_at_a_time_in_order() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, 1, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    // Five messages of task `a` among others.
    let keys: Vec<String> = (0..12)
        .map(|i| {
            if i % 2 == 0 && i < 10 {
                "a".into()
            } else {
                format!("b{i}")
            }
        })
        .collect();
    produce(&bootstrap, &keys).await;

    let seen = consume(&bootstrap, 4, keys.len()).await;
    let per_key = lock(&seen.per_key);
    assert_eq!(
        per_key[b"a".as_slice()].1,
        1,
        "two messages of key a ran at once"
    );
    assert!(
        seen.most_running.load(Ordering::SeqCst) >= 2,
        "others ran beside them"
    );
    let started = lock(&seen.started);
    let order: Vec<&str> = started
        .iter()
        .map(String::as_str)
        .filter(|p| ["m0", "m2", "m4", "m6", "m8"].contains(p))
        .collect();
    assert_eq!(
        order,
        ["m0", "m2", "m4", "m6", "m8"],
        "key a in offset order"
    );
    assert_eq!(committed(&bootstrap, 1), [12]);
}

/// Sets its flag when dropped: the work it lives in was cancelled.
struct DropFlag(Arc<Mutex<Vec<i32>>>, i32);

impl Drop for DropFlag {
    fn drop(&mut self) {
        lock(&self.0).push(self.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_of_a_partition_that_moves_to_another_member_is_dropped() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, 2, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    for partition in 0..2 {
        producer
            .send(
                FutureRecord::to(TOPIC)
                    .partition(partition)
                    .key(&format!("task-{partition}"))
                    .payload("task"),
                Duration::from_secs(5),
            )
            .await
            .expect("produced");
    }
    let settings = settings(&bootstrap);

    // Member A takes both partitions and works on both messages without end.
    let started_a = Arc::new(Mutex::new(Vec::new()));
    let dropped_a = Arc::new(Mutex::new(Vec::new()));
    let stop_a = CancellationToken::new();
    let process_a = {
        let (started, dropped) = (started_a.clone(), dropped_a.clone());
        move |message: OwnedMessage| {
            let (started, dropped) = (started.clone(), dropped.clone());
            async move {
                let _flag = DropFlag(dropped, message.partition());
                lock(&started).push(message.partition());
                tokio::time::sleep(Duration::from_secs(600)).await;
                Ok(Outcome::Done)
            }
        }
    };
    let mut options_a = options(4);
    options_a.drain_timeout = Duration::from_millis(200);
    let a = tokio::spawn({
        let settings = settings.clone();
        let producer = Producer::new(&settings, "a").expect("producer");
        let stop = stop_a.clone();
        async move { run_at_least_once(&settings, options_a, producer, stop, process_a).await }
    });
    wait_until(|| lock(&started_a).len() == 2).await;

    // Member B joins: the group gives it one partition, whose work A must drop.
    let done_b = Arc::new(Mutex::new(Vec::new()));
    let stop_b = CancellationToken::new();
    let process_b = {
        let done = done_b.clone();
        move |message: OwnedMessage| {
            let done = done.clone();
            async move {
                lock(&done).push(message.partition());
                Ok(Outcome::Done)
            }
        }
    };
    let b = tokio::spawn({
        let producer = Producer::new(&settings, "b").expect("producer");
        let stop = stop_b.clone();
        async move { run_at_least_once(&settings, options(4), producer, stop, process_b).await }
    });
    wait_until(|| !lock(&done_b).is_empty()).await;
    let moved = lock(&done_b)[0];
    wait_until(|| lock(&dropped_a).contains(&moved)).await;
    assert_eq!(
        *lock(&dropped_a),
        [moved],
        "only the moved partition's work is dropped"
    );

    stop_a.cancel();
    stop_b.cancel();
    a.await.expect("a joined").expect("a ran");
    b.await.expect("b joined").expect("b ran");
}

/// Reads the dead-letter topic `dead` from the start until `count` records are there
/// or `wait` has passed.
async fn dead_letters(bootstrap: &str, count: usize, wait: Duration) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", uuid::Uuid::new_v4().to_string())
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset("dead", 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&partitions).expect("assign");
    let mut found = Vec::new();
    let deadline = std::time::Instant::now() + wait;
    while found.len() < count && std::time::Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            found.push(message.detach());
        }
    }
    found
}

fn header<'a>(message: &'a OwnedMessage, key: &str) -> Option<&'a str> {
    use rdkafka::message::Headers;
    message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_failing_of_its_own_is_dead_lettered_after_the_attempts_and_the_world_s_failures_stall_it()
 {
    use rdkafka::{error::KafkaError, types::RDKafkaErrorCode};
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, 2, 1).expect("topic");
    cluster.create_topic("dead", 1, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    // Key "own" always fails as a too-large result would; key "world" as an
    // unreachable broker would; key "fine" succeeds.
    produce(&bootstrap, &["own".into(), "world".into(), "fine".into()]).await;
    let settings = settings(&bootstrap);
    let producer = Producer::new(&settings, "test").expect("producer");
    let attempts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let process = {
        let attempts = attempts.clone();
        move |message: OwnedMessage| {
            let attempts = attempts.clone();
            async move {
                let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
                *lock(&attempts).entry(key.clone()).or_default() += 1;
                let code = match key.as_str() {
                    "own" => RDKafkaErrorCode::MessageSizeTooLarge,
                    "world" => RDKafkaErrorCode::MessageTimedOut,
                    _ => return Ok(Outcome::Done),
                };
                Err(crate::Error::Kafka(KafkaError::MessageProduction(code)))
            }
        }
    };
    let options = options(4);
    let progress = options.progress.clone();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { run_at_least_once(&settings, options, producer, shutdown, process).await }
    });

    let dead = dead_letters(&bootstrap, 1, Duration::from_secs(30)).await;
    assert_eq!(
        dead.len(),
        1,
        "the record failing of its own is dead-lettered"
    );
    assert_eq!(dead[0].key(), Some(b"own".as_slice()));
    let reason = header(&dead[0], "dlq_error").unwrap_or_default();
    assert!(
        reason.starts_with("gave up after 3 attempts: ") && reason.contains("MessageSizeTooLarge"),
        "{reason}"
    );
    assert_eq!(lock(&attempts).get("own"), Some(&3));

    // The world's failure is retried, not dead-lettered, and shows as a stall.
    wait_until(|| lock(&attempts).get("world").is_some_and(|&n| n >= 4)).await;
    let stalls = progress.stalled(Duration::from_millis(500));
    assert_eq!(stalls.len(), 1, "{stalls:?}");
    assert!(
        stalls[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("MessageTimedOut")),
        "{stalls:?}"
    );
    assert_eq!(
        dead_letters(&bootstrap, 2, Duration::from_secs(3))
            .await
            .len(),
        1,
        "no second dead letter"
    );
    shutdown.cancel();
    run.await.expect("joined").expect("ran");
}

#[test]
fn a_dead_letter_reason_is_cut_at_a_character_boundary() {
    assert_eq!(super::dead_letter::bounded("short", 10), "short");
    let long = "é".repeat(1000);
    let cut = super::dead_letter::bounded(&long, super::MAX_DEAD_LETTER_REASON_BYTES);
    assert!(
        cut.len() <= super::MAX_DEAD_LETTER_REASON_BYTES,
        "{}",
        cut.len()
    );
    assert!(cut.ends_with('…') && cut.starts_with("éé"));
}

/// Polls `condition` every 20 ms for up to 30 s.
async fn wait_until(condition: impl Fn() -> bool) {
    for _ in 0..1500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not met within 30 s");
}
