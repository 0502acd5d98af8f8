//! The whole pipeline on a real broker: conversation → task → solver → result.

use std::time::Duration;

use agent_core::task::TaskStatus;
use e2e::{Broker, LlmStandIn, STANDIN_ANSWER, System, completion, read_topic_settled};
use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord},
};
use serde_json::json;

const RESULT_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_task_then_the_result_becomes_completed() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(&broker.bootstrap(), &llm.base_url(), &[]).await;

    let generated = system
        .generate_task(json!("User: I need help with my project"))
        .await
        .ok();
    assert_eq!(generated.status, TaskStatus::Pending);
    assert_eq!(generated.task.task_name, "Project help");
    assert_eq!(generated.task.source.as_deref(), Some("task-generator"));
    let task_id = generated.task_id;
    assert_eq!(generated.task.task_id, task_id);

    let view = system
        .wait_for_result(&task_id.to_string(), RESULT_TIMEOUT)
        .await;
    assert_eq!(view.status, TaskStatus::Completed, "{view:?}");
    let result = view.result.as_ref().expect("a result");
    assert_eq!(result.result.as_deref(), Some(STANDIN_ANSWER));
    assert_eq!(result.status, TaskStatus::Completed);
    // plan + solve: two calls of 10 + 5 tokens each.
    assert_eq!(result.usage.total_tokens, 30);
    assert_eq!(view.task.as_ref().map(|t| t.task_id), Some(task_id));

    // agent-comms sees the same result as the newest message of the results topic.
    let last = system.last_message(None).await.ok();
    assert_eq!(last.key, Some(task_id.to_string()));
    assert_eq!(last.payload["status"], "completed");
    assert_eq!(last.headers["ce_type"], "io.langgraph-kafka.task.finished");
    assert_eq!(last.headers["ce_specversion"], "1.0");

    // The list shows it once.
    let list = system.task_results("").await.ok();
    let ids: Vec<_> = list.results.iter().map(|r| r.task_id).collect();
    assert_eq!(ids, [task_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_json_task_produced_as_the_python_system_did_gets_a_result() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(&broker.bootstrap(), &llm.base_url(), &[]).await;

    // No key, no headers, no id: what aiokafka's producer wrote.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("producer");
    let value = br#"{"task_name": "Summarize notes", "task_description": "Summarize the meeting notes.", "context": "Notes: ship on Friday."}"#;
    producer
        .send(
            FutureRecord::<(), _>::to(&system.settings.kafka.topics.clone().events)
                .payload(&value[..]),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");

    let list = system
        .wait_for_results(RESULT_TIMEOUT, |list| !list.completed().is_empty())
        .await;
    let results = &list.results;
    assert_eq!(results.len(), 1, "{list:?}");
    assert_eq!(results[0].status, TaskStatus::Completed);
    let (task, result) = (
        results[0].task.as_ref().expect("the task"),
        results[0].result.as_ref().expect("the result"),
    );
    assert_eq!(task.task_name, "Summarize notes");
    assert_eq!(result.result.as_deref(), Some(STANDIN_ANSWER));
    // The id given to the id-less task is the one the result carries.
    assert_eq!(task.task_id, result.task_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_answering_500_gives_a_failed_result_with_the_reason() {
    let broker = Broker::start();
    let llm = LlmStandIn::solver_fails_with(500, e2e::openai_error("model overloaded")).await;
    let system = System::start(
        &broker.bootstrap(),
        &llm.base_url(),
        &[("OPENAI_MAX_RETRIES", "1")],
    )
    .await;

    let task_id = system
        .generate_task(json!([{"role": "user", "content": "I need help with my project"}]))
        .await
        .ok()
        .task_id
        .to_string();

    let view = system.wait_for_result(&task_id, RESULT_TIMEOUT).await;
    assert_eq!(view.status, TaskStatus::Failed, "{view:?}");
    let error = view
        .result
        .as_ref()
        .and_then(|r| r.error.as_deref())
        .expect("error text");
    assert!(
        error.contains("500") && error.contains("model overloaded"),
        "{error}"
    );
    assert!(
        error.starts_with("plan:"),
        "names the failing node: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_past_its_deadline_fails_with_a_deadline_reason() {
    use wiremock::{
        Mock, ResponseTemplate,
        matchers::{method, path},
    };
    let broker = Broker::start();
    let llm = LlmStandIn::empty().await;
    llm.answer_structured(e2e::STANDIN_TASK).await;
    // The solver's requests take 20 s each, well past a 1 s deadline (and short of the
    // 30 s request timeout, so the deadline is what ends the task).
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion(STANDIN_ANSWER))
                .set_delay(Duration::from_secs(20)),
        )
        .with_priority(5)
        .mount(&llm.server)
        .await;
    let system = System::start(
        &broker.bootstrap(),
        &llm.base_url(),
        &[("TASK_DEADLINE_SECS", "1")],
    )
    .await;

    let task_id = system
        .generate_task(json!("User: I need help with my project"))
        .await
        .ok()
        .task_id
        .to_string();
    let view = system.wait_for_result(&task_id, RESULT_TIMEOUT).await;
    assert_eq!(view.status, TaskStatus::Failed, "{view:?}");
    let error = view
        .result
        .as_ref()
        .and_then(|r| r.error.as_deref())
        .expect("error text");
    assert_eq!(
        error,
        "deadline: the task did not finish within TASK_DEADLINE_SECS (1 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_failing_during_generation_gives_502_and_publishes_nothing() {
    let broker = Broker::start();
    let llm = LlmStandIn::empty().await;
    llm.answer_text(500, e2e::openai_error("down")).await;
    let system = System::start(
        &broker.bootstrap(),
        &llm.base_url(),
        &[("OPENAI_MAX_RETRIES", "0")],
    )
    .await;
    let answer = system.generate_task(json!("User: hi")).await;
    let (status, body) = (answer.status, answer.body);
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "bad_gateway");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("down")),
        "{body}"
    );
    let list = system.task_results("").await.ok();
    assert_eq!(list.count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_draft_is_re_asked_and_the_valid_one_published() {
    let broker = Broker::start();
    let llm = LlmStandIn::empty().await;
    // First draft has an empty name; wiremock serves the first mock until it is used up.
    wiremock::Mock::given(wiremock::matchers::body_string_contains("json_schema"))
        .respond_with(
            wiremock::ResponseTemplate::new(200).set_body_json(completion(
                r#"{"task_name": "", "task_description": "x", "context": ""}"#,
            )),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&llm.server)
        .await;
    llm.answer_structured(e2e::STANDIN_TASK).await;
    llm.answer_text(200, completion(STANDIN_ANSWER)).await;
    let system = System::start(&broker.bootstrap(), &llm.base_url(), &[]).await;
    let generated = system
        .generate_task(json!("User: I need help with my project"))
        .await
        .ok();
    assert_eq!(generated.task.task_name, "Project help");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_solver_checkpoints_each_task_in_postgres() {
    use agent_core::graph::Checkpointer;

    let Some((url, saver)) = e2e::postgres_or_skip().await else {
        return;
    };
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(
        &broker.bootstrap(),
        &llm.base_url(),
        &[("CHECKPOINTER", "postgres"), ("DATABASE_URL", url.as_str())],
    )
    .await;
    let health = system.health(&system.solver).await.ok();
    assert_eq!(health.details["checkpointer"], "postgres", "{health:?}");

    let task_id = system
        .generate_task(json!("User: I need help with my project"))
        .await
        .ok()
        .task_id
        .to_string();
    let view = system.wait_for_result(&task_id, RESULT_TIMEOUT).await;
    assert_eq!(view.status, TaskStatus::Completed, "{view:?}");

    // Thread id = task id: the input and one checkpoint per superstep (plan, solve, format).
    let history = saver.list(&task_id, None).await.expect("history");
    assert_eq!(history.len(), 4, "{history:?}");
    assert!(
        history[0].next.is_empty(),
        "the newest checkpoint is the finished run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solver_restarted_on_its_data_dir_answers_a_solved_task_from_its_sqlite_checkpoints() {
    use agent_core::{
        graph::Checkpointer,
        task::{Task, TaskResult},
    };
    use rdkafka::Message;

    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    // A folder of the test's own: the harness removes the one it makes when a system stops.
    let data = tempfile::tempdir().expect("a folder");
    let data_dir = data.path().display().to_string();
    let vars = [("CHECKPOINTER", "sqlite"), ("DATA_DIR", data_dir.as_str())];
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("producer");
    let topics = e2e::test_settings(&broker.bootstrap(), &llm.base_url(), &vars)
        .kafka
        .topics;
    let task = Task::new("Project help", "Help with my project.", "").expect("a valid task");
    let id = task.task_id.to_string();
    let send = || async {
        producer
            .send(
                FutureRecord::to(&topics.events)
                    .key(&id)
                    .payload(&serde_json::to_vec(&task).expect("JSON")),
                Duration::from_secs(10),
            )
            .await
            .expect("produced");
    };

    let first = System::start(&broker.bootstrap(), &llm.base_url(), &vars).await;
    let health = first.health(&first.solver).await.ok();
    assert_eq!(health.details["checkpointer"], "sqlite", "{health:?}");
    send().await;
    let view = first.wait_for_result(&id, RESULT_TIMEOUT).await;
    assert_eq!(view.status, TaskStatus::Completed, "{view:?}");
    let calls = llm.calls().await;
    assert_eq!(calls, 2, "plan and solve");
    // Thread id = task id, in <DATA_DIR>/checkpoints.sqlite: the input and one
    // checkpoint per superstep (plan, solve, format).
    let file = data.path().join(task_solver::CHECKPOINTS_FILE);
    let saver = agent_runtime::checkpoint::SqliteSaver::open(&file)
        .await
        .expect("the solver's file opens");
    assert_eq!(saver.list(&id, None).await.expect("history").len(), 4);
    drop(first);

    // The services again on the same folder, and the task delivered again: the solver
    // finds it solved in its file and answers it with no call to the model.
    let second = System::start(&broker.bootstrap(), &llm.base_url(), &vars).await;
    send().await;
    let results = read_topic_settled(&broker.bootstrap(), &topics.results, 2, RESULT_TIMEOUT).await;
    let answers: Vec<TaskResult> = results
        .iter()
        .filter(|m| m.key() == Some(id.as_bytes()))
        .map(|m| serde_json::from_slice(m.payload().unwrap_or_default()).expect("a result"))
        .collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    for answer in &answers {
        assert_eq!(answer.status, TaskStatus::Completed, "{answer:?}");
        assert_eq!(answer.result.as_deref(), Some(STANDIN_ANSWER));
    }
    assert_eq!(
        llm.calls().await,
        calls,
        "no call to the model the second time"
    );
    drop(second);
}

/// The broker's answer to DescribeConfigs for `topic`: config name → value.
async fn topic_configs(
    system: &System,
    topic: &str,
) -> std::collections::HashMap<String, Option<String>> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = system
        .settings
        .kafka
        .client_config("e2e-describe")
        .create()
        .expect("admin client");
    let described = admin
        .describe_configs(
            &[ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("DescribeConfigs answered");
    let resource = described
        .into_iter()
        .next()
        .expect("one resource")
        .unwrap_or_else(|err| panic!("DescribeConfigs of {topic}: {err}"));
    resource
        .entries
        .into_iter()
        .map(|entry| (entry.name, entry.value))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_create_the_results_topic_compacted_and_the_events_topic_not() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(&broker.bootstrap(), &llm.base_url(), &[]).await;
    let topics = &system.settings.kafka.topics;

    let results = topic_configs(&system, &topics.results).await;
    assert_eq!(
        results.get("cleanup.policy").cloned().flatten().as_deref(),
        Some("compact"),
        "{results:?}"
    );
    assert_eq!(
        results
            .get("min.compaction.lag.ms")
            .cloned()
            .flatten()
            .as_deref(),
        Some("86400000"),
        "{results:?}"
    );
    let events = topic_configs(&system, &topics.events).await;
    assert_ne!(
        events.get("cleanup.policy").cloned().flatten().as_deref(),
        Some("compact"),
        "{events:?}"
    );
}
