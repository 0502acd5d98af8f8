//! One task id names one task: a second, different body under a known id is refused to
//! the dead-letter topic; the same body again is a redelivery.

use std::time::Duration;

use agent_core::task::{Task, TaskStatus};
use e2e::{Broker, LlmStandIn, System, read_topic, read_topic_settled};
use rdkafka::{
    ClientConfig, Message,
    message::Headers,
    producer::{FutureProducer, FutureRecord},
};

async fn send(producer: &FutureProducer, topic: &str, task: &Task) {
    let value = serde_json::to_vec(task).expect("JSON");
    let key = task.task_id.to_string();
    producer
        .send(
            FutureRecord::to(topic).key(&key).payload(&value),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_body_under_a_known_task_id_is_dead_lettered_and_the_same_body_is_not() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(&broker.bootstrap(), &llm.base_url(), &[]).await;
    let topics = system.settings.kafka.topics.clone();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("producer");

    let first = Task::new("the first", "the first body", "").expect("task");
    send(&producer, &topics.events, &first).await;
    let id = first.task_id.to_string();
    let done = system.wait_for_result(&id, Duration::from_secs(30)).await;
    assert_eq!(done.status, TaskStatus::Completed, "{done:?}");

    // Another body under the same id, then the first body again, then a marker task.
    let impostor = Task {
        task_name: "an impostor".into(),
        task_description: "a different body".into(),
        ..first.clone()
    };
    send(&producer, &topics.events, &impostor).await;
    send(&producer, &topics.events, &first).await;
    let marker = Task::new("marker", "after them", "").expect("task");
    send(&producer, &topics.events, &marker).await;
    let after = system
        .wait_for_result(&marker.task_id.to_string(), Duration::from_secs(30))
        .await;
    assert_eq!(after.status, TaskStatus::Completed, "{after:?}");

    let dead = read_topic_settled(
        &broker.bootstrap(),
        &topics.dead_letter,
        1,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(dead.len(), 1, "only the impostor is dead-lettered");
    let value: Task = serde_json::from_slice(dead[0].payload().unwrap_or_default()).expect("task");
    assert_eq!(value, impostor);
    let reason = dead[0]
        .headers()
        .and_then(|h| {
            h.iter()
                .find(|h| h.key == "dlq_error")
                .and_then(|h| h.value)
        })
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    assert!(
        reason.contains(&format!("task_id {id} already names a different task")),
        "{reason}"
    );

    // The view still shows the first body, with its result; the redelivered first body
    // was solved again (at-least-once), never refused.
    let view = system.task_result(&id).await.ok();
    assert_eq!(
        view.task.as_ref().map(|t| t.task_description.as_str()),
        Some("the first body"),
        "{view:?}"
    );
    assert_eq!(view.status, TaskStatus::Completed, "{view:?}");
    let results = read_topic(
        &broker.bootstrap(),
        &topics.results,
        3,
        Duration::from_secs(10),
    )
    .await;
    let for_first = results
        .iter()
        .filter(|m| m.key() == Some(id.as_bytes()))
        .count();
    assert_eq!(
        for_first, 2,
        "the first body and its redelivery each got a result"
    );
}
