//! Fault tests of the delivery guarantees, on a real broker.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use e2e::{Broker, LlmStandIn, System, TaskView, read_topic};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::Headers,
    producer::{FutureProducer, FutureRecord},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_poison_messages_among_two_hundred_tasks() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(&broker.bootstrap(), &llm.base_url(), &[]).await;
    let topics = system.settings.kafka.topics.clone();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("producer");

    // 200 tasks with 50 poison messages among them: every fifth message is poison (not
    // JSON, JSON of the wrong shape, or a task breaking the rules, in turn).
    let poison: [&[u8]; 3] = [
        b"not json at all",
        br#"{"hello": "world"}"#,
        br#"{"task_name": "", "task_description": "empty name"}"#,
    ];
    let started = Instant::now();
    let mut sent_poison = 0;
    for i in 0..250 {
        let key = format!("key-{i}");
        let value: Vec<u8> = if i % 5 == 4 {
            sent_poison += 1;
            poison[i % 3].to_vec()
        } else {
            format!(
                r#"{{"task_name": "task {i}", "task_description": "do thing {i}", "context": ""}}"#
            )
            .into_bytes()
        };
        producer
            .send(
                FutureRecord::to(&topics.events).key(&key).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("produced");
    }
    assert_eq!(sent_poison, 50);

    let list = system
        .wait_for_results(Duration::from_secs(120), |list| {
            list.completed().len() >= 200
        })
        .await;
    let results = &list.results;
    let completed: Vec<&TaskView> = list.completed();
    let ids: HashSet<uuid::Uuid> = completed.iter().map(|t| t.task_id).collect();
    assert_eq!(completed.len(), 200, "200 results");
    assert_eq!(ids.len(), 200, "no duplicates");
    assert_eq!(results.len(), 200, "nothing else listed");

    let dead = read_topic(
        &broker.bootstrap(),
        &topics.dead_letter,
        50,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(dead.len(), 50, "50 in the dead-letter topic");
    for message in &dead {
        let headers = message.headers().expect("headers");
        let names: HashSet<&str> = headers.iter().map(|h| h.key).collect();
        for name in [
            "dlq_error",
            "dlq_topic",
            "dlq_partition",
            "dlq_offset",
            "dlq_time",
            "dlq_group",
        ] {
            assert!(names.contains(name), "{name} missing");
        }
        let payload = message.payload().unwrap_or_default();
        assert!(poison.contains(&payload), "the original bytes are kept");
    }
    println!(
        "faults: 200 results and 50 dead letters {:.1} s after the first produce",
        started.elapsed().as_secs_f64()
    );
}

/// Poison records whose parse error quotes them whole.
const BIG_POISON: usize = 16;
/// The size of each: one JSON string of 600 KB.
const BIG_POISON_BYTES: usize = 600_000;
/// A record under the broker's limit that does not fit a dead-letter record whole.
const HUGE_POISON_BYTES: usize = 950_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_600_kb_poison_records_are_dead_lettered_whole_a_950_kb_one_cut_and_the_tasks_after_them_complete()
 {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    // As many slots as poison records: a record retried for ever would hold them all.
    let system = System::start(
        &broker.bootstrap(),
        &llm.base_url(),
        &[("SOLVER_CONCURRENCY", "16")],
    )
    .await;
    let topics = system.settings.kafka.topics.clone();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("producer");
    let poison = format!("\"{}\"", "y".repeat(BIG_POISON_BYTES));
    for i in 0..BIG_POISON {
        producer
            .send(
                FutureRecord::to(&topics.events)
                    .key(&format!("poison-{i}"))
                    .payload(&poison),
                Duration::from_secs(10),
            )
            .await
            .expect("produced");
    }
    // One more that fits the broker but not the dead-letter record with its headers.
    let huge = vec![b'z'; HUGE_POISON_BYTES];
    producer
        .send(
            FutureRecord::to(&topics.events)
                .key("poison-huge")
                .payload(&huge),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
    let ids = e2e::produce_tasks(&broker.bootstrap(), &topics.events, 5).await;

    let list = system
        .wait_for_results(Duration::from_secs(30), |list| {
            list.finished().len() >= ids.len()
        })
        .await;
    let completed: HashSet<String> = list
        .completed()
        .iter()
        .map(|t| t.task_id.to_string())
        .collect();
    assert!(
        ids.iter().all(|id| completed.contains(id.as_str())),
        "the 5 tasks completed within 30 s: {completed:?}"
    );

    let dead = read_topic(
        &broker.bootstrap(),
        &topics.dead_letter,
        BIG_POISON + 1,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        dead.len(),
        BIG_POISON + 1,
        "every poison record dead-lettered"
    );
    let header = |message: &rdkafka::message::OwnedMessage, name: &str| {
        message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
    };
    let (truncated, whole): (Vec<_>, Vec<_>) = dead
        .iter()
        .partition(|m| m.key() == Some(b"poison-huge".as_slice()));
    let [truncated] = truncated[..] else {
        panic!("one dead letter of the huge record")
    };
    assert_eq!(
        (
            header(truncated, "dlq_truncated").as_deref(),
            header(truncated, "dlq_original_bytes"),
            truncated.payload().map(<[u8]>::len),
        ),
        (
            Some("true"),
            Some(HUGE_POISON_BYTES.to_string()),
            Some(agent_runtime::kafka::DEAD_LETTER_PREFIX_BYTES),
        ),
        "a record too large to dead-letter whole keeps a prefix and says so"
    );
    for message in whole {
        let headers = message.headers().expect("headers");
        let error = headers
            .iter()
            .find(|h| h.key == "dlq_error")
            .and_then(|h| h.value)
            .expect("dlq_error");
        assert!(
            error.len() <= agent_runtime::kafka::MAX_DEAD_LETTER_REASON_BYTES,
            "a bounded reason, not the payload: {} bytes",
            error.len()
        );
        assert_eq!(
            message.payload().map(<[u8]>::len),
            Some(poison.len()),
            "a record that fits is kept whole"
        );
    }

    // Every offset is committed: a restart redoes nothing.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", task_solver::CONSUMER_GROUP)
        .create()
        .expect("consumer");
    let mut committed = 0;
    for _ in 0..50 {
        let mut list = TopicPartitionList::new();
        for partition in 0..system.settings.kafka.partitions {
            list.add_partition(&topics.events, partition);
        }
        committed = consumer
            .committed_offsets(list, Duration::from_secs(5))
            .expect("committed offsets")
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(offset) => offset,
                _ => 0,
            })
            .sum::<i64>();
        if committed == (BIG_POISON + 1 + ids.len()) as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        committed,
        (BIG_POISON + 1 + ids.len()) as i64,
        "offsets committed"
    );
}
