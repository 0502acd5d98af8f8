//! OpenTelemetry traces across Kafka: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, one task's
//! trace runs from the client's `POST /generate-task` through the generation graph, the
//! events topic, the solver's graph nodes and model calls, to the result read by the
//! view — spans from two processes (task-generator here, task-solver as its own
//! process), joined by the `traceparent` Kafka headers, received by an in-process OTLP
//! receiver.

use std::{collections::HashSet, time::Duration};

use agent_core::task::TaskStatus;
use agent_runtime::telemetry::{LogFormat, init_with};
use e2e::{Broker, LlmStandIn, OtlpReceiver, ReceivedSpan, SolverProcess, System};
use serde_json::json;

/// OTLP span kinds.
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const CONSUMER: i32 = 5;

fn named<'a>(spans: &'a [ReceivedSpan], service: &str, name: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.service == service && s.name == name)
        .collect()
}

/// The spans of graph node `node` (the engine's, named after the node and carrying it as
/// `node`; a function of ours may have a span of the same name inside it).
fn node<'a>(spans: &'a [ReceivedSpan], service: &str, node: &str) -> Vec<&'a ReceivedSpan> {
    named(spans, service, node)
        .into_iter()
        .filter(|s| s.attribute("node") == Some(node))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_post_through_kafka_and_the_solver_to_the_view() {
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver.endpoint();
    // This process's services (task-generator and its view, agent-comms) export as
    // `task-generator`: nextest runs each test in its own process, so the subscriber
    // installed here is the process's.
    let telemetry = init_with(LogFormat::Pretty, "task-generator", |name| {
        (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| endpoint.clone())
    })
    .expect("telemetry");
    assert!(
        telemetry.exporting(),
        "another subscriber was installed first: run under cargo nextest (a process per test)"
    );
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start_without_solver(&broker.bootstrap(), &llm.base_url(), &[]).await;
    let solver = SolverProcess::start(
        &broker.bootstrap(),
        &llm.base_url(),
        "solver-traced",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;

    // The client's own trace: every span of the task must join it.
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let client_span = "00f067aa0ba902b7";
    let response = system
        .http
        .post(format!("{}/generate-task", system.generator))
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .json(&json!({"conversation_history": "User: help me plan a trip"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    let task: serde_json::Value = response.json().await.expect("JSON");
    let task_id = task["task_id"].as_str().expect("task_id").to_owned();
    let view = system
        .wait_for_result(&task_id, Duration::from_secs(60))
        .await;
    assert_eq!(view.status, TaskStatus::Completed, "{view:?}");
    // The view read the result: send this process's spans now.
    telemetry.shutdown();

    let of_trace = |spans: &[ReceivedSpan]| -> Vec<ReceivedSpan> {
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    };
    let spans = receiver
        .wait_for(Duration::from_secs(30), |spans| {
            let spans = of_trace(spans);
            ["format", "results view: result"]
                .iter()
                .all(|name| spans.iter().any(|s| s.name == *name))
        })
        .await;
    let spans = of_trace(&spans);
    let shown = || {
        spans
            .iter()
            .map(|s| {
                format!(
                    "{} {} {} <- {}",
                    s.service, s.name, s.span_id, s.parent_span_id
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };

    // task-generator: the request, its graph's nodes, its model call, the view.
    let post = named(&spans, "task-generator", "POST /generate-task");
    assert_eq!(post.len(), 1, "{}", shown());
    assert_eq!(post[0].kind, SERVER);
    assert_eq!(
        post[0].parent_span_id, client_span,
        "the client's span is the parent"
    );
    assert_eq!(post[0].attribute("http.response.status_code"), Some("200"));
    for name in ["draft", "validate", "publish"] {
        assert_eq!(
            node(&spans, "task-generator", name).len(),
            1,
            "node {name}:\n{}",
            shown()
        );
    }
    let view = named(&spans, "task-generator", "results view: result");
    assert_eq!(view.len(), 1, "{}", shown());
    assert_eq!(view[0].kind, CONSUMER);
    assert_eq!(view[0].attribute("task_id"), Some(task_id.as_str()));

    // task-solver, in its own process: the consumer span, a span per graph node, one
    // per model call with the GenAI attributes.
    let consumers: Vec<_> = spans
        .iter()
        .filter(|s| s.service == "task-solver" && s.kind == CONSUMER)
        .collect();
    assert_eq!(consumers.len(), 1, "{}", shown());
    let consumer = consumers[0];
    let events = &system.settings.kafka.topics.events;
    assert_eq!(consumer.name, format!("process {events}"));
    assert_eq!(consumer.attribute("messaging.system"), Some("kafka"));
    assert_eq!(
        consumer.attribute("messaging.destination.name"),
        Some(events.as_str())
    );
    assert_eq!(
        consumer.attribute("messaging.consumer.group.name"),
        Some("task-solver")
    );
    assert!(
        named(&spans, "task-generator", "publish")
            .iter()
            .any(|p| p.span_id == consumer.parent_span_id),
        "the solver's consumer span is a child of the generator's publish:\n{}",
        shown()
    );
    let process = named(&spans, "task-solver", "process");
    assert_eq!(process.len(), 1, "{}", shown());
    assert_eq!(process[0].attribute("task_id"), Some(task_id.as_str()));
    assert_eq!(process[0].parent_span_id, consumer.span_id);
    for name in ["plan", "solve", "format"] {
        assert_eq!(
            node(&spans, "task-solver", name).len(),
            1,
            "node {name}:\n{}",
            shown()
        );
    }
    let calls: Vec<_> = spans
        .iter()
        .filter(|s| s.service == "task-solver" && s.kind == CLIENT)
        .collect();
    assert_eq!(calls.len(), 2, "plan and solve ask the model:\n{}", shown());
    for call in &calls {
        assert_eq!(call.name, "chat stand-in");
        assert_eq!(call.attribute("gen_ai.operation.name"), Some("chat"));
        assert_eq!(call.attribute("gen_ai.request.model"), Some("stand-in"));
        assert_eq!(call.attribute("gen_ai.usage.input_tokens"), Some("10"));
        assert_eq!(call.attribute("gen_ai.usage.output_tokens"), Some("5"));
        let name = call.attribute("langgraph.node").expect("node");
        let parent = node(&spans, "task-solver", name);
        assert_eq!(
            parent.first().map(|p| p.span_id.as_str()),
            Some(call.parent_span_id.as_str()),
            "the model call of {name} is a child of its node's span:\n{}",
            shown()
        );
    }
    let draft_call = named(&spans, "task-generator", "chat stand-in");
    assert_eq!(draft_call.len(), 1, "{}", shown());
    assert_eq!(draft_call[0].attribute("langgraph.node"), Some("draft"));

    // One tree: every parent is a span of the trace, or the client's.
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    for span in &spans {
        assert!(
            span.parent_span_id == client_span || ids.contains(span.parent_span_id.as_str()),
            "{} {} has a parent outside the trace:\n{}",
            span.service,
            span.name,
            shown()
        );
    }
    drop(solver);
}
