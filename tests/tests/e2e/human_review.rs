//! Human review over Kafka: a task with `human_review` pauses after `plan` (an
//! `interrupted` result showing the plan), survives the death of its solver, and is
//! carried on by `POST /task-result/{id}/resume` — approved, rejected with feedback
//! (planned again, told why), or edited — on whichever solver owns it. Strict: a stale
//! interrupt id is refused, and of two resumes of one pause exactly one takes effect.

use std::time::Duration;

use e2e::{LlmStandIn, STANDIN_ANSWER, ServiceProcess, System};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// The durable checkpointer a review needs, in a folder of the test's own.
fn sqlite_vars(dir: &tempfile::TempDir) -> Vec<(&'static str, String)> {
    vec![
        ("CHECKPOINTER", "sqlite".to_owned()),
        ("DATA_DIR", dir.path().display().to_string()),
    ]
}

fn as_refs<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// POSTs a conversation asking for review; the task id.
async fn post_reviewed(system: &System) -> String {
    let (status, body) = system
        .post_json(
            &format!("{}/generate-task", system.generator),
            &json!({"conversation_history": "User: help me with my project", "human_review": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["task"]["human_review"], true, "{body}");
    body["task_id"].as_str().expect("a task id").to_owned()
}

/// The view of `task_id` once it is `interrupted` at an interrupt other than `after`:
/// the interrupt.
async fn wait_paused(system: &System, task_id: &str, after: Option<&str>) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, view) = system
            .get_json(&format!("{}/task-result/{task_id}", system.generator))
            .await;
        if status == 200 && view["status"] == "interrupted" {
            let interrupt = view["result"]["interrupt"].clone();
            if after.is_none_or(|old| interrupt["id"] != old) {
                return interrupt;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {task_id} not paused within {WAIT:?}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `POST /task-result/{task_id}/resume`: status and body.
async fn resume(system: &System, task_id: &str, body: Value) -> (u16, Value) {
    system
        .post_json(
            &format!("{}/task-result/{task_id}/resume", system.generator),
            &body,
        )
        .await
}

/// The requests the stand-in got for `plan` (free text, not streamed) and for `solve`
/// (streamed).
async fn plan_and_solve_requests(llm: &LlmStandIn) -> (Vec<Value>, Vec<Value>) {
    let bodies = llm.request_bodies().await;
    let free_text = |b: &&Value| !b.to_string().contains("json_schema");
    let plans = bodies
        .iter()
        .filter(free_text)
        .filter(|b| b["stream"] != true)
        .cloned()
        .collect();
    let solves = bodies
        .iter()
        .filter(free_text)
        .filter(|b| b["stream"] == true)
        .cloned()
        .collect();
    (plans, solves)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_task_survives_a_solver_sigkill_and_completes_once_approved() {
    let broker = e2e::Broker::start();
    let llm = LlmStandIn::healthy().await;
    let dir = tempfile::tempdir().expect("a folder");
    let vars = sqlite_vars(&dir);
    let vars = as_refs(&vars);
    let system = System::start_without_solver(&broker.bootstrap(), &llm.base_url(), &vars).await;
    let mut solver =
        ServiceProcess::start(&broker.bootstrap(), &llm.base_url(), "solver-1", &vars).await;

    let task_id = post_reviewed(&system).await;
    let interrupt = wait_paused(&system, &task_id, None).await;
    assert_eq!(interrupt["node"], "review", "{interrupt}");
    assert_eq!(interrupt["value"]["plan"], STANDIN_ANSWER, "{interrupt}");
    let (status, waiting) = system
        .get_json(&format!(
            "{}/task-results?status=interrupted",
            system.generator
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        waiting["results"][0]["task_id"],
        task_id.as_str(),
        "{waiting}"
    );

    // The solver dies as hard as it can; another takes over the partitions.
    solver.kill();
    let _second =
        ServiceProcess::start(&broker.bootstrap(), &llm.base_url(), "solver-2", &vars).await;
    let (status, body) = resume(
        &system,
        &task_id,
        json!({"interrupt_id": interrupt["id"], "resume": {"approved": true}}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["interrupt_id"], interrupt["id"], "{body}");

    let view = system.wait_for_result(&task_id, WAIT).await;
    let result = view.result.expect("a result");
    assert_eq!(
        result.status,
        agent_core::task::TaskStatus::Completed,
        "{result:?}"
    );
    assert_eq!(result.result.as_deref(), Some(STANDIN_ANSWER));
    assert_eq!(result.solver_id, "solver-2", "the new solver carried it on");
    let (plans, solves) = plan_and_solve_requests(&llm).await;
    assert_eq!(plans.len(), 1, "plan was asked once: {plans:#?}");
    assert_eq!(solves.len(), 1, "solve was asked once");

    // Not waiting any more: a resume now is a conflict.
    let (status, body) = resume(&system, &task_id, json!({"resume": {"approved": true}})).await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_plan_is_planned_again_with_the_feedback_then_one_of_two_resumes_wins() {
    let broker = e2e::Broker::start();
    let llm = LlmStandIn::healthy().await;
    let dir = tempfile::tempdir().expect("a folder");
    let vars = sqlite_vars(&dir);
    let system = System::start(&broker.bootstrap(), &llm.base_url(), &as_refs(&vars)).await;

    let task_id = post_reviewed(&system).await;
    let first = wait_paused(&system, &task_id, None).await;
    let feedback = "Add a step to write tests first.";
    let (status, body) = resume(
        &system,
        &task_id,
        json!({"interrupt_id": first["id"], "resume": {"approved": false, "feedback": feedback}}),
    )
    .await;
    assert_eq!(status, 202, "{body}");

    // Planned again, told why: a new pause with a new id.
    let second = wait_paused(&system, &task_id, first["id"].as_str()).await;
    assert_ne!(second["id"], first["id"]);
    let (plans, _) = plan_and_solve_requests(&llm).await;
    assert_eq!(plans.len(), 2, "plan asked twice");
    let asked = plans[1].to_string();
    assert!(
        asked.contains(feedback),
        "the second plan request carries the feedback: {asked}"
    );
    assert!(
        !plans[0].to_string().contains(feedback),
        "the first one did not"
    );

    // The first pause's id is stale now.
    let (status, body) = resume(
        &system,
        &task_id,
        json!({"interrupt_id": first["id"], "resume": {"approved": true}}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict", "{body}");

    // Two resumes of the second pause at once: one approves, one edits the plan. Both
    // may be accepted; exactly one takes effect, and the task completes once.
    let edited = "1. Write the tests. 2. Make them pass.";
    let approve = resume(
        &system,
        &task_id,
        json!({"interrupt_id": second["id"], "resume": {"approved": true}}),
    );
    let edit = resume(
        &system,
        &task_id,
        json!({"interrupt_id": second["id"], "resume": {"plan": edited}}),
    );
    let ((a, a_body), (b, b_body)) = tokio::join!(approve, edit);
    assert!(
        [a, b].contains(&202) && [a, b].iter().all(|s| *s == 202 || *s == 409),
        "{a} {a_body} / {b} {b_body}"
    );
    let view = system.wait_for_result(&task_id, WAIT).await;
    assert_eq!(
        view.status,
        agent_core::task::TaskStatus::Completed,
        "{view:?}"
    );
    // Give a second resume, had it run, the time to ask the model.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (plans, solves) = plan_and_solve_requests(&llm).await;
    assert_eq!(plans.len(), 2, "no third plan");
    assert_eq!(solves.len(), 1, "solved once: {solves:#?}");
    // On the results topic: the two pauses and one final result (settled: nothing more
    // for 2 s).
    let records = e2e::read_topic_settled(
        &broker.bootstrap(),
        &system.settings.kafka.topics.results,
        3,
        WAIT,
    )
    .await;
    let statuses: Vec<agent_core::task::TaskStatus> = records
        .iter()
        .filter(|m| rdkafka::Message::key(*m) == Some(task_id.as_bytes()))
        .map(|m| {
            let result: agent_core::task::TaskResult =
                serde_json::from_slice(rdkafka::Message::payload(m).unwrap_or_default())
                    .expect("a result");
            result.status
        })
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| s.is_final()).count(),
        1,
        "one final result: {statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_without_a_durable_checkpointer_is_refused_at_the_post_and_failed_at_the_solver() {
    use rdkafka::{
        ClientConfig,
        producer::{FutureProducer, FutureRecord},
    };

    let broker = e2e::Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(
        &broker.bootstrap(),
        &llm.base_url(),
        &[("CHECKPOINTER", "memory")],
    )
    .await;
    // Through the API: 422, nothing generated.
    let (status, body) = system
        .post_json(
            &format!("{}/generate-task", system.generator),
            &json!({"conversation_history": "User: help me", "human_review": true}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("durable checkpointer"), "{body}");
    let (status, body) = system
        .post_json(
            &format!("{}/generate-task", system.generator),
            &json!({"conversation_history": "User: hi", "human_review": "yes"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(llm.calls().await, 0, "the model was not asked");

    // Straight onto the events topic: the solver fails it at once, saying why.
    let task_id = uuid::Uuid::new_v4().to_string();
    let task = json!({"task_id": task_id, "task_name": "Project help",
        "task_description": "Help with my project.", "human_review": true});
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::to(&system.settings.kafka.topics.events)
                .key(&task_id)
                .payload(&task.to_string()),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
    let view = system.wait_for_result(&task_id, WAIT).await;
    let result = view.result.expect("a result");
    assert_eq!(
        result.status,
        agent_core::task::TaskStatus::Failed,
        "{result:?}"
    );
    let reason = result.error.unwrap_or_default();
    assert!(reason.contains("durable checkpointer"), "{reason}");
    assert_eq!(llm.calls().await, 0, "nothing asked of the model");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_past_review_timeout_secs_fails_the_task() {
    let broker = e2e::Broker::start();
    let llm = LlmStandIn::healthy().await;
    let dir = tempfile::tempdir().expect("a folder");
    let mut vars = sqlite_vars(&dir);
    vars.push(("REVIEW_TIMEOUT_SECS", "2".to_owned()));
    let system = System::start(&broker.bootstrap(), &llm.base_url(), &as_refs(&vars)).await;

    let task_id = post_reviewed(&system).await;
    let paused_at = tokio::time::Instant::now();
    let interrupt = wait_paused(&system, &task_id, None).await;
    let view = system.wait_for_result(&task_id, WAIT).await;
    let waited = paused_at.elapsed();
    let result = view.result.expect("a result");
    assert_eq!(
        result.status,
        agent_core::task::TaskStatus::Failed,
        "{result:?}"
    );
    let reason = result.error.unwrap_or_default();
    assert!(
        reason.contains("review timed out") && reason.contains("2 s"),
        "{reason}"
    );
    assert!(
        waited >= Duration::from_secs(2),
        "not before the deadline: {waited:?}"
    );
    let (_, solves) = plan_and_solve_requests(&llm).await;
    assert!(solves.is_empty(), "never solved");
    // Over: a late answer is a conflict.
    let (status, body) = resume(
        &system,
        &task_id,
        json!({"interrupt_id": interrupt["id"], "resume": {"approved": true}}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_shows_the_pause_and_goes_on_after_the_resume() {
    use e2e::sse::SseReader;

    let broker = e2e::Broker::start();
    let llm = LlmStandIn::healthy().await;
    let dir = tempfile::tempdir().expect("a folder");
    let mut vars = sqlite_vars(&dir);
    vars.push(("STREAM_CHUNK_MS", "0".to_owned()));
    let system = System::start(&broker.bootstrap(), &llm.base_url(), &as_refs(&vars)).await;
    let response = system
        .http
        .post(format!("{}/generate-task", system.generator))
        .header("Accept", "text/event-stream")
        .json(
            &json!({"conversation_history": "User: help me with my project", "human_review": true}),
        )
        .send()
        .await
        .expect("the POST answers");
    assert_eq!(response.status(), 200);
    let mut reader = SseReader::new(response);
    let mut next = async || reader.next(WAIT).await.expect("an event");
    let task_id = loop {
        let event = next().await;
        if event.event == "metadata" {
            break event.json()["task_id"].as_str().expect("an id").to_owned();
        }
    };
    // Up to the pause: an `interrupt` event, then `status: interrupted`.
    let interrupt = loop {
        let event = next().await;
        assert_ne!(event.event, "token", "nothing is solved before the review");
        if event.event == "interrupt" {
            break event.json();
        }
    };
    assert_eq!(interrupt["task_id"], task_id.as_str());
    assert_eq!(interrupt["node"], "review");
    assert_eq!(interrupt["value"]["plan"], STANDIN_ANSWER);
    let status = next().await;
    assert_eq!(
        (status.event.as_str(), status.json()["status"].clone()),
        ("status", json!("interrupted"))
    );
    let (code, body) = resume(
        &system,
        &task_id,
        json!({"interrupt_id": interrupt["id"], "resume": {"approved": true}}),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    // The same stream goes on: the resumed run's tokens, then the result.
    let mut text = String::new();
    let result = loop {
        let event = next().await;
        match event.event.as_str() {
            "token" => text.push_str(event.json()["chunk"].as_str().unwrap_or_default()),
            "result" => break event.json(),
            _ => {}
        }
    };
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(result["result"], STANDIN_ANSWER);
    assert_eq!(text, STANDIN_ANSWER, "the tokens make up the result");
}
