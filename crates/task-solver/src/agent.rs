//! task-solver as an agent over Kafka ([`agent_runtime::agents`]): every replica
//! registers agent type [`AGENT_TYPE`] — a request carrying a [`Task`] is solved and its
//! [`TaskResult`] is the reply (synchronous solving over Kafka, e.g. agent-comms'
//! `POST /request`) — and answers `describe` broadcasts.
//!
//! A request is solved as a task of the events topic is (same graph, thread id = task
//! id, deadline `TASK_DEADLINE_SECS`, result bounded by `MAX_RESULT_BYTES`), but its
//! result goes to the caller, not to the results topic. Error replies:
//!
//! | code | when |
//! |---|---|
//! | `invalid_task` | the value is not a valid task (the reason follows) |
//! | `task_conflict` | its `task_id` already names a different task |
//! | `review_unsupported` | it asks for `human_review`: a caller waiting on a reply does not wait days for a person; such a task goes through the events topic |
//! | `unavailable` | the checkpoint store failed; try again |
//!
//! A task that fails to solve (the model failed, the deadline passed) is no error reply:
//! its `failed` result is the reply, as it would be on the results topic.

use agent_core::{
    graph::RunConfig,
    task::{Task, TaskResult},
};
use agent_runtime::{
    agents::{AgentDescription, AgentError, AgentMessage, AgentRuntime, RuntimeOptions},
    kafka::KafkaSettings,
};
use chrono::Utc;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{
    SERVICE,
    progress::RunProgress,
    worker::{self, Deps, InFlight, conflict, count_result, result_of, solve, timed},
};

/// The agent type every solver replica registers.
pub const AGENT_TYPE: &str = "task-solver";

/// What a solver says of itself in answer to `describe`.
#[derive(Debug, Clone)]
pub struct Describe {
    /// The model it asks.
    pub model: String,
    /// The most tasks it works on at once (`SOLVER_CONCURRENCY`).
    pub concurrency: usize,
}

impl Describe {
    /// The description: `in_flight` is the tasks worked on now (events topic and agent
    /// requests).
    pub fn describe(&self) -> AgentDescription {
        AgentDescription {
            agent_type: AGENT_TYPE.into(),
            agent_id: String::new(),
            service: SERVICE.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            model: Some(self.model.clone()),
            in_flight: worker::in_flight(),
            concurrency: self.concurrency as u64,
        }
    }
}

/// Runs the solver's agent runtime until `shutdown` fires: starts it (trying again while
/// the broker does not answer), registers [`AGENT_TYPE`] and answers `describe`. Logs,
/// rather than returns, what stops it: the solver's own loop goes on without it.
pub async fn serve(
    deps: Deps,
    settings: KafkaSettings,
    options: RuntimeOptions,
    describe: Describe,
    shutdown: CancellationToken,
) {
    let instance_id = deps.solver_id.clone();
    let register = |runtime: &AgentRuntime| {
        let runtime = runtime.clone();
        async move {
            runtime
                .register(AGENT_TYPE, move |request| {
                    let deps = deps.clone();
                    async move { solve_request(&deps, request).await }
                })
                .await
        }
    };
    AgentRuntime::run_service(
        &settings,
        &instance_id,
        options,
        shutdown,
        register,
        move |_| describe.describe(),
    )
    .await;
}

/// Solves the task a request carries; its [`TaskResult`] as JSON. See the [module
/// docs](self) for the error replies.
///
/// # Errors
/// An [`AgentError`] with one of the codes of the module docs.
pub async fn solve_request(deps: &Deps, request: AgentMessage) -> Result<Value, AgentError> {
    let _in_flight = InFlight::enter();
    let bytes = serde_json::to_vec(&request.value)
        .map_err(|err| AgentError::new("invalid_task", err.to_string()))?;
    let id = || Task::id_for_offset(&request.topic, request.partition, request.offset);
    let task = Task::from_json(&bytes, id)
        .map_err(|err| AgentError::new("invalid_task", format!("not a valid task: {err}")))?;
    if task.human_review {
        return Err(AgentError::new(
            "review_unsupported",
            "a task with human_review waits for a person, for days if need be: send it \
             through the events topic (POST /generate-task, POST /send_event), not as a \
             request whose caller waits for the reply",
        ));
    }
    let thread = RunConfig::thread(task.task_id.to_string());
    let unavailable = |err: agent_runtime::Error| {
        tracing::warn!(error = %err, "agent request: checkpoint store failed");
        AgentError::new(
            "unavailable",
            "the solver's checkpoint store failed; try again",
        )
    };
    if let Some(reason) = conflict(deps, &task, &thread).await.map_err(unavailable)? {
        return Err(AgentError::new("task_conflict", reason));
    }
    tracing::info!(task_id = %task.task_id, task_name = %task.task_name, correlation_id = %request.correlation_id, "solving an agent request");
    let started_at = Utc::now();
    let mut progress = RunProgress::silent(task.task_id);
    let ran = timed(deps, solve(deps, &task, &thread, &mut progress))
        .await
        .map_err(unavailable)?;
    let (result, failure) = result_of(deps, &task, ran, started_at);
    count_result(&result, &task, failure);
    if result.status.is_final()
        && let Some(saver) = &deps.memory_saver
    {
        saver.delete_thread(&task.task_id.to_string());
    }
    reply(&result)
}

fn reply(result: &TaskResult) -> Result<Value, AgentError> {
    serde_json::to_value(result).map_err(|err| AgentError::new("reply_not_json", err.to_string()))
}
