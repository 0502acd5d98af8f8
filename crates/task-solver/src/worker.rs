//! One message's work: [`process`].

use agent_core::{
    graph::{CompiledGraph, GraphError, RunConfig},
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
}

/// Handles one message of the events topic.
///
/// - Not a task (not JSON, wrong shape, invalid fields): [`Outcome::DeadLetter`] with the
///   reason.
/// - A task: runs the solver graph (thread id = task id); a graph failure (the LLM failed
///   after its retries) becomes a `failed` result carrying the reason. The result is
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
    let run = deps
        .graph
        .invoke_with(
            SolverState::new(task.clone()),
            RunConfig::thread(task.task_id.to_string()),
        )
        .await;
    let result = match run {
        Ok(state) => TaskResult::completed(
            &task,
            state.result.unwrap_or_default(),
            &deps.solver_id,
            started_at,
            state.usage,
        ),
        Err(err) => {
            let reason = match &err {
                GraphError::Node { node, error } => format!("{node}: {error}"),
                other => other.to_string(),
            };
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
    Ok(Outcome::Done)
}
