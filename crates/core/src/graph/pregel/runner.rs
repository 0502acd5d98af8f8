//! Running a superstep's tasks (LangGraph's `pregel/_runner.py` and `_retry.py`): all
//! concurrently, each under its node's [`RetryPolicy`](crate::graph::RetryPolicy) and
//! timeout, reporting `debug` events; their outcomes sorted into [`StepWrites`].

use std::{
    sync::{Arc, atomic::AtomicUsize},
    time::{Duration, Instant},
};

use futures::{FutureExt, future::BoxFuture, future::join_all};
use tracing::Instrument;

use super::{algo::PregelTask, spec::Spec, superstep::Cursor};
use crate::graph::{
    Command, CommandGraph, GraphError, Interrupt, NodeError, RunContext, State,
    node::Emitter,
    stream::{DebugEvent, StreamSink},
};

/// How one task ended: its node's command, or its error (which may be an engine signal:
/// an interrupt, a command for the parent graph).
pub(crate) type NodeOutcome<S> = Result<Command<S>, NodeError>;

/// What every task of one run shares.
pub(crate) struct RunScope<S: State> {
    /// The run's thread, shown to nodes.
    pub(crate) thread_id: Option<Arc<str>>,
    /// Where nodes' `custom` events go.
    pub(crate) emitter: Option<Emitter>,
    /// Where the run's events go.
    pub(crate) sink: Option<StreamSink<S>>,
    /// Whether a task's own input (a `Send`'s) must outlive its run: with a checkpointer
    /// it is encoded in the step's checkpoint.
    pub(crate) keep_args: bool,
}

/// A superstep's outcomes, sorted (LangGraph's task `writes`): each as the index of its
/// task in the step.
pub(crate) struct StepWrites<S: State> {
    /// Commands of the tasks that finished, in task order.
    pub(crate) commands: Vec<(usize, Command<S>)>,
    /// Interrupts, in task order.
    pub(crate) interrupts: Vec<(usize, Interrupt)>,
    /// The first task failure, as [`GraphError::Node`].
    pub(crate) failure: Option<GraphError>,
}

impl<S: State> StepWrites<S> {
    /// Sorts `outcomes` (one per task of `tasks`, in order): a command for the parent
    /// graph that reached this one from a subgraph becomes a command of the current
    /// graph.
    #[inline]
    fn sort(spec: &Spec<S>, tasks: &[PregelTask<S>], outcomes: Vec<NodeOutcome<S>>) -> Self {
        let mut commands: Vec<(usize, Command<S>)> = Vec::new();
        let mut interrupts: Vec<(usize, Interrupt)> = Vec::new();
        let mut failure: Option<GraphError> = None;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(command) => commands.push((i, command)),
                Err(err) => match err.into_interrupt() {
                    Ok(interrupt) => interrupts.push((i, interrupt)),
                    Err(err) => match err.into_parent::<S>() {
                        Ok(command) => commands.push((
                            i,
                            Command {
                                graph: CommandGraph::Current,
                                ..command
                            },
                        )),
                        Err(err) => {
                            if failure.is_none() {
                                failure = Some(GraphError::Node {
                                    node: spec.names[tasks[i].node].to_string(),
                                    error: err,
                                });
                            }
                        }
                    },
                },
            }
        }
        Self {
            commands,
            interrupts,
            failure,
        }
    }

    /// Removes and returns the first command addressed to the parent graph
    /// ([`Command::to_parent`]), if any.
    #[inline]
    pub(crate) fn take_parent_command(&mut self) -> Option<Command<S>> {
        let at = self
            .commands
            .iter()
            .position(|(_, c)| c.graph == CommandGraph::Parent)?;
        Some(self.commands.swap_remove(at).1)
    }

    /// Whether the run stops here: a task failed or interrupted.
    #[inline]
    pub(crate) fn stops_the_run(&self) -> bool {
        self.failure.is_some() || !self.interrupts.is_empty()
    }
}

/// Runs the tasks of `cursor`'s step concurrently and sorts their outcomes. A task whose
/// output was recorded before (a resumed step's pending write) is not run again.
pub(crate) async fn run_tasks<S: State>(
    spec: &Spec<S>,
    cursor: &mut Cursor<S>,
    scope: &RunScope<S>,
) -> StepWrites<S> {
    let step = cursor.step;
    let runs = cursor.tasks.iter_mut().map(|task| {
        if !cursor.done.is_empty()
            && let Some(done) = cursor.done.remove(&task.id)
        {
            return futures::future::ready(Ok(done)).boxed();
        }
        let ctx = RunContext {
            node: Arc::clone(&spec.names[task.node]),
            step,
            thread_id: scope.thread_id.clone(),
            task_id: Arc::from(task.id.as_str()),
            attempt: 1,
            resumes: cursor
                .resumes
                .get(&task.id)
                .map(|r| Arc::from(r.as_slice())),
            interrupts_seen: AtomicUsize::new(0),
            emitter: scope.emitter.clone(),
        };
        // Without a checkpointer nothing needs a task's input after it ran.
        let input = match &mut task.arg {
            Some(_) if !scope.keep_args => task.arg.take().unwrap_or_else(|| cursor.state.clone()),
            Some(arg) => arg.clone(),
            None => cursor.state.clone(),
        };
        run_task(spec, task.node, input, ctx, scope.sink.clone())
    });
    let mut runs: Vec<_> = runs.collect();
    let outcomes = if runs.len() == 1 {
        match runs.pop() {
            Some(run) => vec![run.await],
            None => Vec::new(),
        }
    } else {
        join_all(runs).await
    };
    StepWrites::sort(spec, &cursor.tasks, outcomes)
}

/// Runs one task: straight when the node has no retry policy or timeout and nobody
/// streams debug events (nor records spans at `DEBUG`: an exporter of spans may want
/// them when the logs do not); otherwise through [`run_with_retry`] in
/// a `graph.node` span.
fn run_task<'a, S: State>(
    spec: &'a Spec<S>,
    node: usize,
    input: S,
    ctx: RunContext,
    sink: Option<StreamSink<S>>,
) -> BoxFuture<'a, NodeOutcome<S>> {
    let options = &spec.options[node];
    let plain = options.retry.is_none()
        && options.timeout.is_none()
        && sink.as_ref().is_none_or(|s| !s.debugging());
    if plain && !tracing::enabled!(kind: tracing::metadata::Kind::SPAN, tracing::Level::DEBUG) {
        return (spec.nodes[node])(input, ctx);
    }
    // Exported as a span named after the node (`otel.name`), as LangGraph's tracers
    // name a node's run.
    let span = tracing::debug_span!("graph.node", otel.name = %spec.names[node], node = %spec.names[node], step = ctx.step, task_id = %ctx.task_id);
    run_with_retry(spec, node, input, ctx, sink)
        .instrument(span)
        .boxed()
}

/// Runs one task under its node's retry policy and per-attempt timeout (a timed-out
/// attempt fails with a transient error), reporting each attempt's start and end as
/// debug events. Engine signals (interrupts, parent commands) are never retried.
async fn run_with_retry<S: State>(
    spec: &Spec<S>,
    node: usize,
    input: S,
    mut ctx: RunContext,
    sink: Option<StreamSink<S>>,
) -> NodeOutcome<S> {
    let options = &spec.options[node];
    let mut attempt = 1;
    loop {
        ctx.attempt = attempt;
        ctx.interrupts_seen = AtomicUsize::new(0);
        if let Some(sink) = &sink {
            sink.debug(DebugEvent::TaskStart {
                step: ctx.step,
                task_id: ctx.task_id.to_string(),
                node: ctx.node.to_string(),
                attempt,
            });
        }
        let started = Instant::now();
        let call = (spec.nodes[node])(input.clone(), ctx.clone());
        let result = match options.timeout {
            None => call.await,
            Some(limit) => {
                let timer = futures_timer::Delay::new(limit);
                match futures::future::select(call, timer).await {
                    futures::future::Either::Left((result, _)) => result,
                    futures::future::Either::Right(_) => Err(NodeError::transient(format!(
                        "timed out after {} ms",
                        limit.as_millis()
                    ))),
                }
            }
        };
        if let Some(sink) = &sink {
            sink.debug(DebugEvent::TaskEnd {
                step: ctx.step,
                task_id: ctx.task_id.to_string(),
                node: ctx.node.to_string(),
                attempt,
                elapsed: started.elapsed(),
                error: result.as_ref().err().map(ToString::to_string),
            });
        }
        match (result, &options.retry) {
            (Err(err), Some(policy))
                if !err.is_signal() && attempt < policy.max_attempts && (policy.retry_on)(&err) =>
            {
                let wait: Duration = policy.backoff(attempt);
                tracing::warn!(node = %ctx.node, attempt, error = %err, wait_ms = wait.as_millis() as u64, "node failed; retrying");
                futures_timer::Delay::new(wait).await;
                attempt += 1;
            }
            (result, _) => return result,
        }
    }
}
