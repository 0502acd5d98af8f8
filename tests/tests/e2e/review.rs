//! Review of a paused task: a task the view shows `interrupted` is resumed with
//! `POST /task-result/{task_id}/resume`, which stores a `ResumeRequest` keyed by the task
//! id on the events topic (type `task.resumed`) and answers 202 with the pause it
//! answers; a resume of an earlier pause is 409.

use std::time::Duration;

use agent_core::task::{
    ResumeRequest, Review, Task, TaskInterrupt, TaskResult, TaskStatus, TokenUsage,
};
use agent_runtime::kafka::headers::{TASK_RESUMED, header_str};
use e2e::{Broker, LlmStandIn, System, read_topic};
use rdkafka::{
    ClientConfig, Message,
    producer::{FutureProducer, FutureRecord},
};
use serde_json::json;

async fn send(producer: &FutureProducer, topic: &str, key: &str, value: &[u8]) {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_task_is_resumed_through_the_events_topic_and_an_earlier_pause_is_409() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    // No solver: the resume stays on the topic for the test to read.
    let system = System::start_without_solver(&broker.bootstrap(), &llm.base_url(), &[]).await;
    let topics = system.settings.kafka.topics.clone();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("producer");

    // A task, and the solver's pause for review of its plan.
    let task = Task::new("Plan a trip", "Plan a weekend in Lyon", "").expect("task");
    let id = task.task_id.to_string();
    let task_json = serde_json::to_vec(&task).expect("JSON");
    send(&producer, &topics.events, &id, &task_json).await;
    let interrupt = TaskInterrupt {
        id: "review#0".into(),
        node: "review".into(),
        value: json!({"plan": "1. Trains. 2. Food."}),
    };
    let paused = TaskResult::interrupted(
        &task,
        interrupt,
        "task-solver-test",
        task.created_at,
        TokenUsage::default(),
    );
    let paused_json = serde_json::to_vec(&paused).expect("JSON");
    send(&producer, &topics.results, &id, &paused_json).await;
    let view = system
        .wait_for_status(&id, TaskStatus::Interrupted, Duration::from_secs(30))
        .await;
    assert_eq!(view.status, TaskStatus::Interrupted, "{view:?}");
    let shown = view
        .result
        .and_then(|r| r.interrupt)
        .expect("the interrupt");
    assert_eq!(shown.id, "review#0");

    // An answer to an earlier pause: refused, naming both.
    let stale = system
        .resume_task(
            &id,
            &json!({"interrupt_id": "review#-1", "resume": {"approved": true}}),
        )
        .await;
    assert_eq!(stale.status, 409, "{}", stale.body);
    assert_eq!(stale.body["error"]["code"], "conflict");
    let message = stale.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("\"review#0\"") && message.contains("\"review#-1\""),
        "{message}"
    );

    // The answer without an interrupt_id: accepted for the current pause.
    let answer = system
        .resume_task(
            &id,
            &json!({"resume": {"approved": false, "feedback": "Add a museum."}}),
        )
        .await
        .accepted();
    assert_eq!(answer.task_id, task.task_id);
    assert_eq!(answer.interrupt_id, "review#0");
    assert_eq!(answer.status, "resuming");

    // On the events topic, after the task: the resume keyed by the task id.
    let records = read_topic(
        &broker.bootstrap(),
        &topics.events,
        2,
        Duration::from_secs(30),
    )
    .await;
    let resumes: Vec<_> = records
        .iter()
        .filter(|r| header_str(r.headers(), "ce_type") == Some(TASK_RESUMED))
        .collect();
    assert_eq!(
        resumes.len(),
        1,
        "one resume among {} records",
        records.len()
    );
    let record = resumes[0];
    assert_eq!(record.key(), Some(id.as_bytes()));
    assert_eq!(
        header_str(record.headers(), "ce_source"),
        Some("/langgraph-kafka/task-generator")
    );
    let request =
        ResumeRequest::from_json(record.payload().unwrap_or_default()).expect("a ResumeRequest");
    assert_eq!(request.task_id, task.task_id);
    assert_eq!(request.interrupt_id.as_deref(), Some("review#0"));
    assert_eq!(
        request.resume,
        Review::Rejected {
            feedback: Some("Add a museum.".into())
        }
    );

    // The task still waits for its solver, listed as such.
    let listed = system.task_results("status=interrupted").await.ok();
    assert_eq!(listed.count, 1, "{listed:?}");
    assert_eq!(listed.results[0].task_id, task.task_id);
}
