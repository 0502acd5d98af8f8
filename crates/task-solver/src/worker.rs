//! One message's work: [`process`].

use std::pin::pin;

use agent_core::{
    graph::{
        Command, CompiledGraph, GraphError, InMemorySaver, Input, RunConfig, StreamEvent,
        StreamMode,
    },
    task::{ResumeRequest, RunStatus, Task, TaskInterrupt, TaskResult, TaskStatus},
};
use agent_runtime::{
    Result,
    kafka::{
        CloudEvent, Outcome, Producer,
        headers::{TASK_FINISHED, header_str, is_resume, trace_of},
    },
};
use chrono::Utc;
use futures::StreamExt;
use rdkafka::{Message, message::OwnedMessage};

use crate::{
    SERVICE,
    progress::{ProgressPublisher, RunProgress},
    seen::{Seen, SeenTasks},
    solver::SolverState,
};

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
    /// The largest result record published, as JSON bytes (`MAX_RESULT_BYTES`).
    pub max_result_bytes: usize,
    /// The task bodies taken so far, by id (one task id, one task).
    pub seen: SeenTasks,
    /// Where runs' progress goes; `None`: nowhere.
    pub progress: Option<ProgressPublisher>,
    /// One resume at a time per task ([`crate::review`]).
    pub review_locks: crate::review::ReviewLocks,
}

impl Deps {
    /// Whether the checkpoints outlive this process (SQLite, PostgreSQL): what a task
    /// paused for review needs.
    pub fn durable(&self) -> bool {
        self.checkpointed && self.memory_saver.is_none()
    }
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps").finish_non_exhaustive()
    }
}

/// Handles one message of the events topic.
///
/// - A resume of a task paused for review ([`is_resume`]): see
///   [`resume`].
/// - A task with `human_review` on a solver whose checkpoints would not outlive it
///   (memory, none): a `failed` result saying so, at once — never a pause no one could
///   resume.
/// - Not a task (not JSON, wrong shape, invalid fields): [`Outcome::DeadLetter`] with the
///   reason.
/// - A task whose id is known with a different body ([`SeenTasks`], and with a durable
///   checkpointer the body in the task's checkpoints): [`Outcome::DeadLetter`] naming
///   the id; the first body stays the task. The same body again is a redelivery.
/// - A task: runs the solver graph (thread id = task id); a graph failure (the LLM failed
///   after its retries) becomes a `failed` result carrying the reason, and so does a run
///   past [`Deps::deadline`] (its checkpoints stay: a later delivery would resume them,
///   but the `failed` result ends the task). A result the view would refuse (an answer
///   over [`MAX_OUTPUT_CHARS`](agent_core::task::MAX_OUTPUT_CHARS)) or larger than
///   [`Deps::max_result_bytes`] as JSON becomes a `failed` result naming the sizes (see
///   [`bounded_result`]). The result is published keyed by `task_id`, continuing the
///   task's trace, and [`Outcome::Done`] returned only once the broker acknowledged it.
///
/// # Errors
/// The result could not be published (the loop retries the message).
#[tracing::instrument(skip_all, fields(task_id, topic = message.topic(), partition = message.partition(), offset = message.offset()))]
pub async fn process(deps: &Deps, message: OwnedMessage) -> Result<Outcome> {
    let _in_flight = InFlight::enter();
    if is_resume(
        header_str(message.headers(), "ce_type"),
        message.payload().unwrap_or_default(),
    ) {
        return resume(deps, &message).await;
    }
    let payload = message.payload().unwrap_or_default();
    let id = || Task::id_for_offset(message.topic(), message.partition(), message.offset());
    let task = match Task::from_json(payload, id) {
        Ok(task) => task,
        Err(err) => return Ok(Outcome::DeadLetter(format!("not a valid task: {err}"))),
    };
    tracing::Span::current().record("task_id", tracing::field::display(task.task_id));
    let thread = RunConfig::thread(task.task_id.to_string());
    if let Some(reason) = conflict(deps, &task, &thread).await? {
        return Ok(Outcome::DeadLetter(reason));
    }
    let trace = trace_of(message.headers());
    let started_at = Utc::now();
    let mut progress = match &deps.progress {
        Some(publisher) => publisher.run(task.task_id, trace),
        None => RunProgress::silent(task.task_id),
    };
    if task.human_review && !deps.durable() {
        // A pause that no other process could resume, nor this one after a restart.
        let reason = "human_review needs a durable checkpointer (CHECKPOINTER=sqlite or \
                      postgres): with this solver's the task could never be resumed"
            .to_owned();
        return finish(
            deps,
            &task,
            Ran::Failed("review_unsupported", reason),
            started_at,
            trace,
            progress,
        )
        .await;
    }
    // A redelivered reviewed task and a resume of it never run the thread at once.
    let _one_at_a_time = match task.human_review {
        true => Some(deps.review_locks.lock(task.task_id).await),
        false => None,
    };
    tracing::info!(task_name = %task.task_name, human_review = task.human_review, "solving task");
    progress.status(RunStatus::Running, None);
    let ran = timed(deps, solve(deps, &task, &thread, &mut progress)).await?;
    finish(deps, &task, ran, started_at, trace, progress).await
}

/// Tasks being worked on now: messages in [`process`] and agent requests
/// ([`crate::agent`]).
static IN_FLIGHT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many tasks this process works on now (messages of the events topic and agent
/// requests).
pub fn in_flight() -> u64 {
    IN_FLIGHT.load(std::sync::atomic::Ordering::Relaxed)
}

/// One task being worked on: counted in the `tasks_in_flight` gauge (and
/// [`in_flight`]) while it lives.
pub(crate) struct InFlight;

impl InFlight {
    pub(crate) fn enter() -> Self {
        metrics::gauge!("tasks_in_flight").increment(1.0);
        IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("tasks_in_flight").decrement(1.0);
        IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How a run ended.
#[derive(Debug)]
pub(crate) enum Ran {
    /// With its final state.
    Done(SolverState),
    /// Paused for a person at this interrupt.
    Paused(agent_core::graph::Interrupt),
    /// Given up: the `reason` label of `tasks_failed_total` (`node`: a graph node
    /// failed, e.g. the model after its retries; `graph`: the run itself; `deadline`;
    /// `review_unsupported`), and the reason in words.
    Failed(&'static str, String),
}

/// Waits for `run` up to [`Deps::deadline`]: how it ended.
///
/// # Errors
/// The checkpoint store failed: not the task's fault; the message is retried later.
pub(crate) async fn timed(
    deps: &Deps,
    run: impl Future<Output = Result<SolverState, GraphError>>,
) -> Result<Ran> {
    Ok(match tokio::time::timeout(deps.deadline, run).await {
        Ok(Ok(state)) => Ran::Done(state),
        Ok(Err(GraphError::Checkpoint(err))) => {
            return Err(agent_runtime::Error::Task(agent_core::Error::Graph(
                GraphError::Checkpoint(err),
            )));
        }
        Ok(Err(GraphError::Interrupted { mut interrupts })) if !interrupts.is_empty() => {
            Ran::Paused(interrupts.swap_remove(0))
        }
        Ok(Err(GraphError::Node { node, error })) => {
            Ran::Failed("node", format!("{node}: {error}"))
        }
        Ok(Err(other)) => Ran::Failed("graph", other.to_string()),
        Err(_elapsed) => Ran::Failed(
            "deadline",
            format!(
                "deadline: the task did not finish within TASK_DEADLINE_SECS ({} s)",
                deps.deadline.as_secs()
            ),
        ),
    })
}

/// Publishes what became of `task`'s run: a `completed`, `failed` or `interrupted`
/// result keyed by its id, continuing `trace`, and its last progress events; returns
/// [`Outcome::Done`] once the broker acknowledged the result.
///
/// # Errors
/// The result could not be published (the loop retries the message).
pub(crate) async fn finish(
    deps: &Deps,
    task: &Task,
    ran: Ran,
    started_at: chrono::DateTime<Utc>,
    trace: Option<agent_runtime::telemetry::TraceContext>,
    mut progress: RunProgress,
) -> Result<Outcome> {
    let (result, failure) = result_of(deps, task, ran, started_at);
    progress.flush_chunk();
    match (result.status, &result.interrupt) {
        (TaskStatus::Completed, _) => progress.status(RunStatus::Completed, None),
        // Told once the pause is stored (below): a client that sees it may resume.
        (TaskStatus::Interrupted, Some(_)) => {}
        _ => progress.status(RunStatus::Failed, result.error.clone()),
    }
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
    count_result(&result, task, failure);
    if let Some(interrupt) = &result.interrupt {
        progress.interrupted(interrupt);
    }
    if result.status.is_final() {
        progress.result(&result);
        if let Some(saver) = &deps.memory_saver {
            saver.delete_thread(&task.task_id.to_string());
        }
    }
    Ok(Outcome::Done)
}

/// The result of `task`'s run as published (see [`bounded_result`]), and, when it
/// failed, the `reason` label of `tasks_failed_total`.
pub(crate) fn result_of(
    deps: &Deps,
    task: &Task,
    ran: Ran,
    started_at: chrono::DateTime<Utc>,
) -> (TaskResult, Option<&'static str>) {
    let mut failure = None;
    let result = match ran {
        Ran::Done(state) => TaskResult::completed(
            task,
            state.result.unwrap_or_default(),
            &deps.solver_id,
            started_at,
            state.usage,
        ),
        Ran::Paused(interrupt) => {
            tracing::info!(interrupt_id = %interrupt.id, node = %interrupt.node, "task paused for review");
            TaskResult::interrupted(
                task,
                TaskInterrupt {
                    id: interrupt.id,
                    node: interrupt.node,
                    value: interrupt.value,
                },
                &deps.solver_id,
                started_at,
                Default::default(),
            )
        }
        Ran::Failed(kind, reason) => {
            failure = Some(kind);
            let reason = agent_runtime::redact::redact(&reason).into_owned();
            tracing::warn!(reason = %reason, "task failed");
            TaskResult::failed(
                task,
                reason,
                &deps.solver_id,
                started_at,
                Default::default(),
            )
        }
    };
    let result = bounded_result(result, task, deps.max_result_bytes);
    if result.status == TaskStatus::Failed && failure.is_none() {
        failure = Some("result");
    }
    (result, failure)
}

/// Counts a published result: `tasks_solved_total`, `tasks_failed_total{reason}` (see
/// [`Ran::Failed`]; `result`: an answer too large to publish) or
/// `tasks_interrupted_total`, and `task_latency_seconds{status}`, the time from the
/// task's `created_at` to now in seconds (not observed when `created_at` is ahead of
/// this clock).
pub(crate) fn count_result(result: &TaskResult, task: &Task, failure: Option<&'static str>) {
    match result.status {
        TaskStatus::Completed => metrics::counter!("tasks_solved_total").increment(1),
        TaskStatus::Interrupted => metrics::counter!("tasks_interrupted_total").increment(1),
        _ => metrics::counter!("tasks_failed_total", "reason" => failure.unwrap_or("graph"))
            .increment(1),
    }
    if let Ok(latency) = (Utc::now() - task.created_at).to_std() {
        metrics::histogram!("task_latency_seconds", "status" => result.status.as_str())
            .record(latency.as_secs_f64());
    }
}

/// Handles a [`ResumeRequest`] (see [`crate::review`]).
///
/// - Not a valid request, a checkpointer that does not keep the pause, or a task of
///   which there is no checkpoint: [`Outcome::DeadLetter`] with the reason.
/// - Stale, or the task already finished: [`Outcome::Done`], nothing run.
/// - Else the run goes on, and its result (`completed`, `failed`, or `interrupted`
///   again) is published as for a task.
///
/// # Errors
/// The checkpoint store cannot be read, or the result cannot be published (the loop
/// retries the message).
#[tracing::instrument(skip_all, fields(task_id, topic = message.topic(), partition = message.partition(), offset = message.offset()))]
pub async fn resume(deps: &Deps, message: &OwnedMessage) -> Result<Outcome> {
    let request = match ResumeRequest::from_json(message.payload().unwrap_or_default()) {
        Ok(request) => request,
        Err(err) => return Ok(Outcome::DeadLetter(format!("not a valid resume: {err}"))),
    };
    tracing::Span::current().record("task_id", tracing::field::display(request.task_id));
    if !deps.durable() {
        return Ok(Outcome::DeadLetter(
            "a resume needs a durable checkpointer (CHECKPOINTER=sqlite or postgres); this \
             solver's keeps no paused task"
                .into(),
        ));
    }
    let _one_at_a_time = deps.review_locks.lock(request.task_id).await;
    let thread = RunConfig::thread(request.task_id.to_string());
    let snapshot = deps
        .graph
        .get_state(&thread)
        .await
        .map_err(|err| agent_runtime::Error::Task(agent_core::Error::Graph(err)))?;
    let Some(snapshot) = snapshot else {
        return Ok(Outcome::DeadLetter(format!(
            "no checkpoint of task {}: nothing to resume",
            request.task_id
        )));
    };
    let input: Input<SolverState> = if snapshot.interrupts.is_empty() {
        if snapshot.next.is_empty() {
            tracing::info!(
                "resume of a task that is no longer paused (it finished): nothing to do"
            );
            return Ok(Outcome::Done);
        }
        // Resumed before, and stopped mid-way (a crash): carry on from there.
        tracing::info!(next = ?snapshot.next, "carrying on a resumed run from its checkpoint");
        Command::default().into()
    } else if let Some(id) = request
        .interrupt_id
        .as_ref()
        .filter(|id| !snapshot.interrupts.iter().any(|i| &i.id == *id))
    {
        tracing::info!(
            interrupt_id = %id,
            waiting_at = ?snapshot.interrupts.iter().map(|i| &i.id).collect::<Vec<_>>(),
            "stale resume: the task no longer waits at this interrupt; no effect"
        );
        return Ok(Outcome::Done);
    } else {
        tracing::info!(review = %serde_json::Value::from(request.resume.clone()), "resuming task");
        Command::resume(serde_json::Value::from(request.resume.clone())).into()
    };
    let task = snapshot.values.task;
    let trace = trace_of(message.headers());
    let mut progress = match &deps.progress {
        Some(publisher) => publisher.run(task.task_id, trace),
        None => RunProgress::silent(task.task_id),
    };
    progress.status(RunStatus::Running, None);
    let ran = timed(deps, run(deps, input, &thread, &mut progress)).await?;
    finish(deps, &task, ran, Utc::now(), trace, progress).await
}

/// Why `task` may not run under its id, if another body owns the id: in the memory of
/// this replica, or in the task's checkpoints when they are durable (SQLite,
/// PostgreSQL).
///
/// # Errors
/// The checkpoint store cannot be read (the loop retries the message).
pub(crate) async fn conflict(
    deps: &Deps,
    task: &Task,
    thread: &RunConfig,
) -> Result<Option<String>> {
    let refused = || {
        Some(format!(
            "task_id {} already names a different task; a task id names one task (the first \
             body is kept): send a new task under a new id",
            task.task_id
        ))
    };
    if deps.seen.check(task) == Seen::Conflict {
        return Ok(refused());
    }
    if deps.checkpointed && deps.memory_saver.is_none() {
        let snapshot = deps
            .graph
            .get_state(thread)
            .await
            .map_err(|err| agent_runtime::Error::Task(agent_core::Error::Graph(err)))?;
        if snapshot.is_some_and(|s| s.values.task != *task) {
            return Ok(refused());
        }
    }
    Ok(None)
}

/// `result` when it is valid and its JSON is at most `max_bytes`; otherwise a `failed`
/// result for `task` whose `error` gives the reason and the sizes. A failed result is
/// small by construction (its reason is at most a few hundred bytes, the LLM's errors
/// are cut), so it always fits.
pub fn bounded_result(result: TaskResult, task: &Task, max_bytes: usize) -> TaskResult {
    let problem = match result.validate() {
        Err(err) => Some(format!("the result cannot be published: {err}")),
        Ok(()) => {
            let bytes = serde_json::to_vec(&result).map_or(usize::MAX, |json| json.len());
            (bytes > max_bytes).then(|| {
                format!(
                    "the result is {bytes} bytes of JSON, over MAX_RESULT_BYTES ({max_bytes}); \
                     the answer was {} characters",
                    result.result.as_deref().map_or(0, |r| r.chars().count())
                )
            })
        }
    };
    let Some(reason) = problem else {
        return result;
    };
    tracing::warn!(reason = %reason, "result too large; the task fails");
    let mut failed = TaskResult::failed(
        task,
        reason,
        result.solver_id,
        result.started_at,
        result.usage,
    );
    failed.attempts = result.attempts;
    failed
}

/// Runs the solver graph for `task` on its thread: from the start the first time; from
/// its last checkpoint when an earlier delivery stopped mid-way (nodes that finished are
/// not run again); not at all when an earlier delivery finished but its result was not
/// acknowledged (the final state is reused). What the run does goes to `progress`.
pub async fn solve(
    deps: &Deps,
    task: &Task,
    thread: &RunConfig,
    progress: &mut RunProgress,
) -> Result<SolverState, GraphError> {
    if !deps.checkpointed {
        return run(
            deps,
            SolverState::new(task.clone()).into(),
            thread,
            progress,
        )
        .await;
    }
    match deps.graph.get_state(thread).await? {
        Some(snapshot) if snapshot.next.is_empty() && snapshot.values.result.is_some() => {
            tracing::info!(checkpoint = %snapshot.checkpoint_id, "task already solved; reusing its result");
            Ok(snapshot.values)
        }
        Some(snapshot) if !snapshot.next.is_empty() => {
            tracing::info!(checkpoint = %snapshot.checkpoint_id, next = ?snapshot.next, "resuming task from its checkpoint");
            run(deps, Command::default().into(), thread, progress).await
        }
        _ => {
            run(
                deps,
                SolverState::new(task.clone()).into(),
                thread,
                progress,
            )
            .await
        }
    }
}

/// The stream modes a run is watched in: the final state (`values`), and what
/// [`RunProgress`] publishes.
const MODES: [StreamMode; 4] = [
    StreamMode::Values,
    StreamMode::Custom,
    StreamMode::Messages,
    StreamMode::Debug,
];

/// Runs the graph from `input` as a stream, handing its events to `progress` (and
/// publishing a gathered chunk of model output when its time is up); the final state.
async fn run(
    deps: &Deps,
    input: Input<SolverState>,
    thread: &RunConfig,
    progress: &mut RunProgress,
) -> Result<SolverState, GraphError> {
    let mut events = pin!(deps.graph.stream(input, thread.clone(), &MODES));
    let mut last = None;
    loop {
        let event = match progress.chunk_deadline() {
            Some(due) => tokio::select! {
                event = events.next() => event,
                () = tokio::time::sleep_until(due.into()) => {
                    progress.flush_chunk();
                    continue;
                }
            },
            None => events.next().await,
        };
        match event {
            None => break,
            Some(Ok(StreamEvent::Values(state))) => last = Some(state),
            Some(Ok(StreamEvent::Interrupted(interrupts))) => {
                progress.flush_chunk();
                return Err(GraphError::Interrupted { interrupts });
            }
            Some(Ok(event)) => progress.on_event(&event),
            Some(Err(err)) => {
                progress.flush_chunk();
                return Err(err);
            }
        }
    }
    progress.flush_chunk();
    // A run from a state streams it first; a resumed one streams the state after each
    // superstep it runs, and it runs at least one (`solve` reuses finished runs).
    last.ok_or_else(|| GraphError::NothingToResume("the run streamed no state".into()))
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
        let llm = LlmClient::new(&settings.llm).expect("llm");
        let checkpointer = saver
            .clone()
            .map(|s| Arc::new(s) as Arc<dyn agent_core::graph::Checkpointer>);
        Deps {
            graph: solver::graph(llm, checkpointer).expect("graph"),
            producer: Producer::new(&settings.kafka, "test").expect("producer"),
            results_topic: "results".into(),
            solver_id: "test".into(),
            checkpointed: saver.is_some(),
            memory_saver: saver,
            deadline: std::time::Duration::from_secs(600),
            max_result_bytes: 512 * 1024,
            seen: SeenTasks::default(),
            progress: None,
            review_locks: Default::default(),
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

        let first = solve(
            &deps,
            &task,
            &thread,
            &mut RunProgress::silent(task.task_id),
        )
        .await;
        assert!(first.is_err(), "solve failed the first time");
        assert_eq!(calls(&server).await, 2, "plan + a failed solve");

        let state = solve(
            &deps,
            &task,
            &thread,
            &mut RunProgress::silent(task.task_id),
        )
        .await
        .expect("resumed");
        assert_eq!(state.result.as_deref(), Some("the answer"));
        assert_eq!(state.plan.as_deref(), Some("1. plan"));
        assert_eq!(calls(&server).await, 3, "only solve ran again, not plan");

        // Solved already (its result not acknowledged, say): no LLM call at all.
        let again = solve(
            &deps,
            &task,
            &thread,
            &mut RunProgress::silent(task.task_id),
        )
        .await
        .expect("reused");
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
        let state = solve(
            &deps,
            &task,
            &thread,
            &mut RunProgress::silent(task.task_id),
        )
        .await
        .expect("solved");
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
        let err = solve(
            &deps,
            &task,
            &thread,
            &mut RunProgress::silent(task.task_id),
        )
        .await
        .expect_err("unusable");
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

    #[test]
    fn a_result_over_the_limit_becomes_a_failed_result_naming_the_sizes() {
        let task = Task::new("n", "d", "").expect("task");
        let now = Utc::now();
        let small = TaskResult::completed(&task, "short answer", "s", now, Default::default());
        assert_eq!(bounded_result(small.clone(), &task, 4096), small);

        let big = TaskResult::completed(&task, "é".repeat(3000), "s", now, Default::default());
        let failed = bounded_result(big, &task, 4096);
        assert_eq!(failed.status, agent_core::task::TaskStatus::Failed);
        let reason = failed.error.expect("reason");
        assert!(
            reason.contains("over MAX_RESULT_BYTES (4096)") && reason.contains("3000 characters"),
            "{reason}"
        );
        assert!(
            serde_json::to_vec(&TaskResult {
                error: Some(reason),
                ..failed
            })
            .expect("json")
            .len()
                < 4096
        );

        // Over what the view accepts, whatever the byte limit.
        let endless = "x".repeat(agent_core::task::MAX_OUTPUT_CHARS + 1);
        let refused = TaskResult::completed(&task, endless, "s", now, Default::default());
        let failed = bounded_result(refused, &task, usize::MAX);
        assert!(
            failed
                .error
                .is_some_and(|e| e.contains("cannot be published")),
            "an answer the view would refuse fails"
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
        solve(
            &deps,
            &task,
            &thread,
            &mut RunProgress::silent(task.task_id),
        )
        .await
        .expect("solved");
        solve(
            &deps,
            &task,
            &thread,
            &mut RunProgress::silent(task.task_id),
        )
        .await
        .expect("solved again");
        assert_eq!(calls(&server).await, 4, "plan and solve, twice");
    }

    /// The review gate, run in process on an in-memory checkpointer: a task with
    /// `human_review` pauses after `plan` showing the plan; a rejection plans again with
    /// the feedback and pauses at a new interrupt; an edited plan is the one solved.
    #[tokio::test]
    async fn a_reviewed_task_pauses_after_plan_and_goes_where_the_review_says() {
        use agent_core::task::Review;

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(answer("1. plan"))
            .mount(&server)
            .await;
        let deps = deps(&server, Some(InMemorySaver::new())).await;
        let mut task = Task::new("n", "d", "").expect("task");
        task.human_review = true;
        let thread = RunConfig::thread(task.task_id.to_string());
        let mut progress = RunProgress::silent(task.task_id);

        let paused = |ran: Ran| match ran {
            Ran::Paused(interrupt) => interrupt,
            other => panic!("not paused: {other:?}"),
        };
        let first = paused(
            timed(&deps, solve(&deps, &task, &thread, &mut progress))
                .await
                .expect("ran"),
        );
        assert_eq!(first.node, "review");
        assert_eq!(first.value, json!({"plan": "1. plan"}));
        assert_eq!(calls(&server).await, 1, "only plan asked");

        let reject = Review::Rejected {
            feedback: Some("More tests.".into()),
        };
        let input = Command::resume(serde_json::Value::from(reject)).into();
        let second = paused(
            timed(&deps, run(&deps, input, &thread, &mut progress))
                .await
                .expect("ran"),
        );
        assert_ne!(second.id, first.id, "a new pause");
        let requests = server.received_requests().await.unwrap_or_default();
        assert_eq!(requests.len(), 2, "planned again");
        let asked = String::from_utf8_lossy(&requests[1].body).into_owned();
        assert!(
            asked.contains("More tests.") && asked.contains("1. plan"),
            "{asked}"
        );

        let edit = Review::Edited {
            plan: "EDITED PLAN".into(),
        };
        let input = Command::resume(serde_json::Value::from(edit)).into();
        match timed(&deps, run(&deps, input, &thread, &mut progress))
            .await
            .expect("ran")
        {
            Ran::Done(state) => assert_eq!(state.plan.as_deref(), Some("EDITED PLAN")),
            other => panic!("not done: {other:?}"),
        }
        let requests = server.received_requests().await.unwrap_or_default();
        assert_eq!(requests.len(), 3, "solve asked once more, no third plan");
        let solved = String::from_utf8_lossy(&requests[2].body).into_owned();
        assert!(solved.contains("EDITED PLAN"), "{solved}");
    }
}
