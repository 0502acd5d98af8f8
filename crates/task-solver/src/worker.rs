//! One message's work: [`process`].

use agent_core::{
    graph::{Command, CompiledGraph, GraphError, InMemorySaver, RunConfig},
    task::{Task, TaskResult},
};
use agent_runtime::{
    Result,
    kafka::{
        CloudEvent, Outcome, Producer,
        headers::{TASK_FINISHED, trace_of},
    },
};
use chrono::Utc;
use rdkafka::{Message, message::OwnedMessage};

use crate::{SERVICE, solver::SolverState};

/// What [`process`] needs.
#[derive(Clone)]
pub struct Deps {
    /// The solver graph.
    pub graph: CompiledGraph<SolverState>,
    /// The producer for results.
    pub producer: Producer,
    /// The results topic.
    pub results_topic: String,
    /// This solver's id, written into results.
    pub solver_id: String,
    /// Whether the graph is checkpointed (a redelivered task then resumes).
    pub checkpointed: bool,
    /// The in-memory checkpointer, when that is the one in use: a task's thread is
    /// dropped from it once its result is acknowledged, so memory stays bounded.
    pub memory_saver: Option<InMemorySaver>,
    /// How long one delivery of a task may work before it ends as `failed`
    /// (`TASK_DEADLINE_SECS`).
    pub deadline: std::time::Duration,
}

/// Handles one message of the events topic.
///
/// - Not a task (not JSON, wrong shape, invalid fields): [`Outcome::DeadLetter`] with the
///   reason.
/// - A task: runs the solver graph (thread id = task id); a graph failure (the LLM failed
///   after its retries) becomes a `failed` result carrying the reason, and so does a run
///   past [`Deps::deadline`] (its checkpoints stay: a later delivery would resume them,
///   but the `failed` result ends the task). The result is
///   published keyed by `task_id`, continuing the task's trace, and [`Outcome::Done`]
///   returned only once the broker acknowledged it.
///
/// # Errors
/// The result could not be published (the loop retries the message).
#[tracing::instrument(skip_all, fields(task_id, topic = message.topic(), partition = message.partition(), offset = message.offset()))]
pub async fn process(deps: &Deps, message: OwnedMessage) -> Result<Outcome> {
    let payload = message.payload().unwrap_or_default();
    let id = || Task::id_for_offset(message.topic(), message.partition(), message.offset());
    let task = match Task::from_json(payload, id) {
        Ok(task) => task,
        Err(err) => return Ok(Outcome::DeadLetter(format!("not a valid task: {err}"))),
    };
    tracing::Span::current().record("task_id", tracing::field::display(task.task_id));
    let trace = trace_of(message.headers());
    let started_at = Utc::now();
    tracing::info!(task_name = %task.task_name, "solving task");
    let thread = RunConfig::thread(task.task_id.to_string());
    // The run's final state, or why the task failed.
    let run = match tokio::time::timeout(deps.deadline, solve(deps, &task, &thread)).await {
        Ok(Err(GraphError::Checkpoint(err))) => {
            // The checkpoint store is down: not the task's fault. Retry the message later.
            return Err(agent_runtime::Error::Task(agent_core::Error::Graph(
                GraphError::Checkpoint(err),
            )));
        }
        Ok(run) => run.map_err(|err| match err {
            GraphError::Node { node, error } => format!("{node}: {error}"),
            other => other.to_string(),
        }),
        Err(_elapsed) => Err(format!(
            "deadline: the task did not finish within TASK_DEADLINE_SECS ({} s)",
            deps.deadline.as_secs()
        )),
    };
    let result = match run {
        Ok(state) => TaskResult::completed(
            &task,
            state.result.unwrap_or_default(),
            &deps.solver_id,
            started_at,
            state.usage,
        ),
        Err(reason) => {
            tracing::warn!(reason = %reason, "task failed");
            TaskResult::failed(
                &task,
                reason,
                &deps.solver_id,
                started_at,
                Default::default(),
            )
        }
    };
    let event = CloudEvent::new(SERVICE, TASK_FINISHED, trace);
    let delivery = deps
        .producer
        .send_json(
            &deps.results_topic,
            &task.task_id.to_string(),
            &result,
            &event,
        )
        .await?;
    tracing::info!(
        status = result.status.as_str(),
        result_partition = delivery.partition,
        result_offset = delivery.offset,
        trace_id = %event.trace.trace_id_hex(),
        "result published"
    );
    if let Some(saver) = &deps.memory_saver {
        saver.delete_thread(&task.task_id.to_string());
    }
    Ok(Outcome::Done)
}

/// Runs the solver graph for `task` on its thread: from the start the first time; from
/// its last checkpoint when an earlier delivery stopped mid-way (nodes that finished are
/// not run again); not at all when an earlier delivery finished but its result was not
/// acknowledged (the final state is reused).
pub async fn solve(
    deps: &Deps,
    task: &Task,
    thread: &RunConfig,
) -> Result<SolverState, GraphError> {
    if !deps.checkpointed {
        return deps
            .graph
            .invoke_with(SolverState::new(task.clone()), thread.clone())
            .await;
    }
    match deps.graph.get_state(thread).await? {
        Some(snapshot) if snapshot.next.is_empty() && snapshot.values.result.is_some() => {
            tracing::info!(checkpoint = %snapshot.checkpoint_id, "task already solved; reusing its result");
            Ok(snapshot.values)
        }
        Some(snapshot) if !snapshot.next.is_empty() => {
            tracing::info!(checkpoint = %snapshot.checkpoint_id, next = ?snapshot.next, "resuming task from its checkpoint");
            deps.graph
                .invoke_with(Command::default(), thread.clone())
                .await
        }
        _ => {
            deps.graph
                .invoke_with(SolverState::new(task.clone()), thread.clone())
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use agent_runtime::{config::Settings, llm::LlmClient};
    use serde_json::json;
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

    use super::*;
    use crate::solver;

    fn answer(text: &str) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        }))
    }

    async fn deps(server: &MockServer, saver: Option<InMemorySaver>) -> Deps {
        let url = format!("{}/v1", server.uri());
        let settings = Settings::from_vars([
            ("OPENAI_BASE_URL", url.as_str()),
            ("OPENAI_MAX_RETRIES", "0"),
            ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"),
        ])
        .expect("settings");
        let llm = LlmClient::new(&settings).expect("llm");
        let checkpointer = saver
            .clone()
            .map(|s| Arc::new(s) as Arc<dyn agent_core::graph::Checkpointer>);
        Deps {
            graph: solver::graph(llm, checkpointer).expect("graph"),
            producer: Producer::new(&settings, "test").expect("producer"),
            results_topic: "results".into(),
            solver_id: "test".into(),
            checkpointed: saver.is_some(),
            memory_saver: saver,
            deadline: std::time::Duration::from_secs(600),
        }
    }

    async fn calls(server: &MockServer) -> usize {
        server
            .received_requests()
            .await
            .map(|r| r.len())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn a_redelivered_task_resumes_after_the_nodes_that_finished() {
        let server = MockServer::start().await;
        // plan answers; solve fails once (a crash mid-graph, as far as the task goes).
        Mock::given(method("POST"))
            .respond_with(answer("1. plan"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {"message": "bad", "type": "invalid_request_error", "param": null, "code": null}})))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(answer("the answer"))
            .mount(&server)
            .await;
        let deps = deps(&server, Some(InMemorySaver::new())).await;
        let task = Task::new("n", "d", "").expect("task");
        let thread = RunConfig::thread(task.task_id.to_string());

        let first = solve(&deps, &task, &thread).await;
        assert!(first.is_err(), "solve failed the first time");
        assert_eq!(calls(&server).await, 2, "plan + a failed solve");

        let state = solve(&deps, &task, &thread).await.expect("resumed");
        assert_eq!(state.result.as_deref(), Some("the answer"));
        assert_eq!(state.plan.as_deref(), Some("1. plan"));
        assert_eq!(calls(&server).await, 3, "only solve ran again, not plan");

        // Solved already (its result not acknowledged, say): no LLM call at all.
        let again = solve(&deps, &task, &thread).await.expect("reused");
        assert_eq!(again.result.as_deref(), Some("the answer"));
        assert_eq!(calls(&server).await, 3);
    }

    fn not_a_completion() -> ResponseTemplate {
        ResponseTemplate::new(200)
            .insert_header("content-type", "text/html")
            .set_body_string("<html>upstream connect error</html>")
    }

    #[tokio::test]
    async fn an_unusable_answer_is_asked_again_and_the_task_completes() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(not_a_completion())
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(answer("fine"))
            .mount(&server)
            .await;
        let deps = deps(&server, None).await;
        let task = Task::new("n", "d", "").expect("task");
        let thread = RunConfig::thread(task.task_id.to_string());
        let state = solve(&deps, &task, &thread).await.expect("solved");
        assert_eq!(state.result.as_deref(), Some("fine"));
        assert_eq!(calls(&server).await, 3, "plan twice, then solve");
    }

    #[tokio::test]
    async fn past_the_limit_an_unusable_answer_fails_the_task_with_the_reason() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(not_a_completion())
            .mount(&server)
            .await;
        let deps = deps(&server, None).await;
        let task = Task::new("n", "d", "").expect("task");
        let thread = RunConfig::thread(task.task_id.to_string());
        let err = solve(&deps, &task, &thread).await.expect_err("unusable");
        assert_eq!(
            calls(&server).await,
            solver::LLM_NODE_ATTEMPTS as usize,
            "plan asked {} times in all, solve never",
            solver::LLM_NODE_ATTEMPTS
        );
        let reason = err.to_string();
        assert!(
            reason.contains("not an OpenAI response") && reason.contains("upstream connect error"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn without_a_checkpointer_every_delivery_starts_over() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(answer("x"))
            .mount(&server)
            .await;
        let deps = deps(&server, None).await;
        let task = Task::new("n", "d", "").expect("task");
        let thread = RunConfig::thread(task.task_id.to_string());
        solve(&deps, &task, &thread).await.expect("solved");
        solve(&deps, &task, &thread).await.expect("solved again");
        assert_eq!(calls(&server).await, 4, "plan and solve, twice");
    }
}
