//! Fault tests of the delivery guarantees, on a real broker.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use e2e::{Broker, LlmStandIn, System, read_topic};
use rdkafka::{
    ClientConfig, Message,
    message::Headers,
    producer::{FutureProducer, FutureRecord},
};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_poison_messages_among_two_hundred_tasks() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(&broker.bootstrap(), &llm.base_url(), &[]).await;
    let topics = system.settings.topics();
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
        .wait_for_results(Duration::from_secs(120), |body| {
            body["results"]
                .as_array()
                .is_some_and(|r| r.iter().filter(|t| t["status"] == "completed").count() >= 200)
        })
        .await;
    let results = list["results"].as_array().expect("list");
    let completed: Vec<&Value> = results
        .iter()
        .filter(|t| t["status"] == "completed")
        .collect();
    let ids: HashSet<&str> = completed
        .iter()
        .filter_map(|t| t["task_id"].as_str())
        .collect();
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
