//! Our services as agents, asked over HTTP through agent-comms: `POST /request` (a task
//! solved synchronously by a task-solver over Kafka, an agent's error, no agent at all)
//! and `GET /agents` (the instances answering `describe`, before and after one is
//! killed).

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use e2e::{Broker, LlmStandIn, STANDIN_ANSWER, SolverProcess, System};
use serde_json::{Value, json};

/// Long enough for the first request: the solver's agent consumer group forms on Tansu
/// (about half the 3 s session) after its runtime started.
const FIRST_REQUEST_MS: u64 = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_sent_as_a_request_comes_back_as_its_result_and_failures_are_typed() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(&broker.bootstrap(), &llm.base_url(), &[]).await;
    let url = format!("{}/request", system.comms);

    let task_id = uuid::Uuid::new_v4();
    let task = json!({
        "task_id": task_id,
        "task_name": "Project help",
        "task_description": "Help with the project.",
        "context": "Asked over HTTP, solved over Kafka."
    });
    let started = Instant::now();
    let (status, body) = system
        .post_json(
            &url,
            &json!({"agent": "task-solver", "payload": task, "timeout_ms": FIRST_REQUEST_MS}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_millis(FIRST_REQUEST_MS));
    let reply = &body["reply"];
    assert_eq!(reply["task_id"], json!(task_id), "{body}");
    assert_eq!(reply["status"], "completed", "{body}");
    assert_eq!(reply["result"], STANDIN_ANSWER);
    assert_eq!(body["agent_type"], "task-solver");
    let solver_id = body["agent_id"].as_str().expect("agent_id");
    assert_eq!(reply["solver_id"], solver_id, "the instance that solved it");
    // plan + solve, as for a task of the events topic.
    assert_eq!(llm.calls().await, 2);

    // The handler fails (not a task): 502 with its error, at once.
    let started = Instant::now();
    let (status, body) = system
        .post_json(
            &url,
            &json!({"agent": "task-solver", "payload": {"task_name": ""}, "timeout_ms": 20_000}),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "agent_error");
    assert_eq!(body["error"]["agent"]["code"], "invalid_task", "{body}");
    assert_eq!(body["error"]["agent"]["agent_type"], "task-solver");
    assert!(
        body["error"]["agent"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a valid task") && m.contains("task_description")),
        "{body}"
    );
    assert!(
        took < Duration::from_secs(5),
        "the error came back in {took:?}, well under the 20 s timeout"
    );
    // A reviewed task waits for a person: refused as a request.
    let reviewed = json!({"task_name": "n", "task_description": "d", "human_review": true});
    let (status, body) = system
        .post_json(&url, &json!({"agent": "task-solver", "payload": reviewed}))
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["agent"]["code"], "review_unsupported");

    // The policy and the checks of the body.
    let (status, body) = system
        .post_json(&url, &json!({"agent": "billing", "payload": 1}))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("COMMS_REQUEST_AGENTS"))
    );
    for bad in [
        json!({"agent": "task-solver", "payload": 1, "timeout_ms": 0}),
        json!({"agent": "task-solver", "payload": 1, "timeout_ms": 300_001}),
        json!({"agent": "task-solver"}),
        json!({"agent": "no spaces", "payload": 1}),
        json!({"agent": "task-solver", "payload": 1, "extra": true}),
    ] {
        let (status, body) = system.post_json(&url, &bad).await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_no_agent_answers_is_a_504_at_its_timeout() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(
        &broker.bootstrap(),
        &llm.base_url(),
        &[("COMMS_REQUEST_AGENTS", "task-solver,nobody")],
    )
    .await;
    let url = format!("{}/request", system.comms);
    let timeout = Duration::from_millis(3_000);
    let started = Instant::now();
    let (status, body) = system
        .post_json(
            &url,
            &json!({"agent": "nobody", "payload": {"hello": 1}, "timeout_ms": timeout.as_millis() as u64}),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "gateway_timeout");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nobody") && m.contains("3000 ms")),
        "{body}"
    );
    assert!(
        took >= timeout.mul_f64(0.9) && took <= timeout.mul_f64(1.1),
        "answered after {took:?}, not within 10% of {timeout:?}"
    );
}

/// The `agent_id`s of the `task-solver` instances `GET /agents` lists, and the whole
/// answer.
async fn solvers_listed(system: &System) -> (BTreeSet<String>, Value) {
    let (status, body) = system
        .get_json(&format!("{}/agents?timeout_ms=1000", system.comms))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["timed_out"], true, "the window ran out: {body}");
    let ids = body["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .filter(|a| a["agent_type"] == "task-solver")
        .filter_map(|a| a["agent_id"].as_str().map(str::to_owned))
        .collect();
    (ids, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_agents_lists_both_solver_replicas_and_one_after_one_is_killed() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let bootstrap = broker.bootstrap();
    let system = System::start_without_solver(&bootstrap, &llm.base_url(), &[]).await;
    let one = SolverProcess::start(&bootstrap, &llm.base_url(), "solver-one", &[]).await;
    let mut two = SolverProcess::start(&bootstrap, &llm.base_url(), "solver-two", &[]).await;
    let both = BTreeSet::from(["solver-one".to_owned(), "solver-two".to_owned()]);

    // The replicas answer once their agent runtimes are up (after their health is ok).
    let started = Instant::now();
    let (mut listed, mut body) = solvers_listed(&system).await;
    while listed != both && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        (listed, body) = solvers_listed(&system).await;
    }
    assert_eq!(listed, both, "both replicas listed: {body}");
    let agents = body["agents"].as_array().expect("agents");
    let solver = agents
        .iter()
        .find(|a| a["agent_id"] == "solver-one")
        .expect("solver-one");
    assert_eq!(solver["service"], "task-solver");
    assert_eq!(solver["model"], "stand-in");
    assert_eq!(solver["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(solver["in_flight"], 0);
    assert!(
        solver["concurrency"].as_u64().is_some_and(|c| c >= 1),
        "{solver}"
    );
    let types: BTreeSet<&str> = agents
        .iter()
        .filter_map(|a| a["agent_type"].as_str())
        .collect();
    assert_eq!(
        types,
        BTreeSet::from(["agent-comms", "task-generator", "task-solver"]),
        "every service answers: {body}"
    );

    two.kill();
    let (listed, body) = solvers_listed(&system).await;
    assert_eq!(
        listed,
        BTreeSet::from(["solver-one".to_owned()]),
        "only the live replica: {body}"
    );
    drop(one);
}
