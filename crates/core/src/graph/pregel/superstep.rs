//! The superstep loop (LangGraph's `pregel/_loop.py`): one run, from its input or a
//! checkpoint to its end, an interrupt or an error.
//!
//! [`CompiledGraph::execute`] reads as the loop it is: while tasks are left, enter the
//! step (recursion limit), run its tasks, stop on a failure or interrupt (saving the
//! finished tasks' writes), apply the writes through the reducers, prepare the next
//! step's tasks, checkpoint. Each step is a method of [`PregelLoop`]; the pure parts are
//! in [`algo`], the running in [`runner`], the encoding in
//! [`checkpoint_codec`](super::checkpoint_codec).
//!
//! The small per-step functions here, in [`algo`] and in [`runner`] are `#[inline]`: left
//! to the compiler, splitting them out of one function cost a 10-node chain about 4% more
//! instructions per run (callgrind); with the hints, about 2%.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use futures::future::BoxFuture;
use serde_json::Value;

use super::{
    algo::{self, Finished, PregelTask},
    checkpoint_codec::{Codec, interrupt_write},
    compiled::{CompiledGraph, Input, RunConfig, RunOutcome},
    runner::{self, RunScope, StepWrites},
    spec::{Source, Spec},
};
use crate::graph::{
    Command, GraphError, Interrupt, NodeError, Resume, State,
    checkpoint::{CheckpointError, CheckpointSource, Checkpointer, Durability},
    stream::StreamSink,
};

/// Where a run stands between two supersteps: what a checkpoint records, and what the
/// loop keeps besides.
pub(crate) struct Cursor<S: State> {
    pub(crate) state: S,
    /// The tasks of the next superstep.
    pub(crate) tasks: Vec<PregelTask<S>>,
    /// For each fan-in join of the spec, the sources seen since its target last ran.
    pub(crate) joins: Vec<Vec<usize>>,
    /// Resume values for interrupted tasks of the next superstep, by task id.
    pub(crate) resumes: BTreeMap<String, Vec<Value>>,
    /// Outputs of this step's tasks recorded before (a resumed step), by task id.
    pub(crate) done: HashMap<String, Command<S>>,
    /// Supersteps done.
    pub(crate) step: usize,
    /// The checkpoint this cursor was saved as or loaded from.
    pub(crate) checkpoint_id: Option<String>,
    /// The nodes run, step by step (for the recursion-limit error).
    pub(crate) path: Vec<Vec<usize>>,
    /// Interrupts recorded against the checkpoint resumed from.
    pub(crate) pending_interrupts: Vec<Interrupt>,
}

/// Where a run saves its checkpoints: set for a graph with a checkpointer run with a
/// thread id.
struct Saving<S: State> {
    saver: Arc<dyn Checkpointer>,
    codec: Codec<S>,
    thread: String,
}

/// One run's loop (LangGraph's `PregelLoop`): its config, where it saves, what its tasks
/// share. Its async steps take `&mut self`: the pending save is `Send`, not `Sync`.
struct PregelLoop<'a, S: State> {
    spec: &'a Spec<S>,
    config: RunConfig,
    saving: Option<Saving<S>>,
    scope: RunScope<S>,
    /// A checkpoint still being written while the next step runs (durability `Async`).
    pending_save: Option<BoxFuture<'static, Result<(), CheckpointError>>>,
}

impl<S: State> CompiledGraph<S> {
    /// Runs the graph from `input` to its end or an interrupt, reporting events to `sink`.
    ///
    /// # Errors
    /// As [`CompiledGraph::invoke_with`], except interrupts, which are a [`RunOutcome`].
    pub(crate) async fn execute(
        &self,
        input: Input<S>,
        config: RunConfig,
        sink: Option<StreamSink<S>>,
    ) -> Result<RunOutcome<S>, GraphError> {
        let mut run = PregelLoop::new(&self.spec, config, sink);
        let mut cursor = run.start(input).await?;
        while !cursor.tasks.is_empty() {
            run.enter_step(&mut cursor)?;
            let mut writes = run.run_tasks(&mut cursor).await?;
            if let Some(command) = writes.take_parent_command() {
                return Err(GraphError::ParentCommand(NodeError::parent(command)));
            }
            if writes.stops_the_run() {
                run.save_pending_writes(&mut cursor, &mut writes).await?;
                return run.interrupt_or_fail(cursor, writes);
            }
            let finished = run.apply_writes(&mut cursor, writes.commands)?;
            run.prepare_next_tasks(&mut cursor, finished)?;
            run.checkpoint(&mut cursor).await?;
        }
        run.finish(cursor).await
    }
}

impl<'a, S: State> PregelLoop<'a, S> {
    /// The loop of one run of `spec`: it saves when the graph has a checkpointer and
    /// `config` a thread id.
    fn new(spec: &'a Spec<S>, config: RunConfig, sink: Option<StreamSink<S>>) -> Self {
        let saving = match (&spec.checkpointer, spec.codec, &config.thread_id) {
            (Some(saver), Some(codec), Some(thread)) => Some(Saving {
                saver: Arc::clone(saver),
                codec,
                thread: thread.clone(),
            }),
            _ => None,
        };
        let scope = RunScope {
            thread_id: config.thread_id.as_deref().map(Arc::from),
            emitter: sink.as_ref().and_then(StreamSink::emitter),
            sink,
            keep_args: saving.is_some(),
        };
        Self {
            spec,
            config,
            saving,
            scope,
            pending_save: None,
        }
    }

    /// Sets up the cursor: a new run from the input (checkpointed as `Input`, unless
    /// durability is `Exit`), or the thread's checkpoint with the command's resume values.
    async fn start(&mut self, input: Input<S>) -> Result<Cursor<S>, GraphError> {
        let config = &self.config;
        let stored = match &self.saving {
            Some(saving) => {
                saving
                    .saver
                    .get(&saving.thread, config.checkpoint_id.as_deref())
                    .await?
            }
            None => None,
        };
        if config.checkpoint_id.is_some() && stored.is_none() {
            return Err(GraphError::NothingToResume(format!(
                "no checkpoint {} on thread {}",
                config.checkpoint_id.as_deref().unwrap_or_default(),
                config.thread_id.as_deref().unwrap_or_default()
            )));
        }
        match input {
            Input::State(state) => {
                let mut joins = vec![Vec::new(); self.spec.joins.len()];
                let tasks = algo::prepare_next_tasks(
                    self.spec,
                    0,
                    &state,
                    vec![(Source::Start, Vec::new())],
                    &mut joins,
                )?;
                let mut cursor = Cursor {
                    state,
                    tasks,
                    joins,
                    resumes: BTreeMap::new(),
                    done: HashMap::new(),
                    step: 0,
                    checkpoint_id: stored.map(|s| s.checkpoint.id),
                    path: Vec::new(),
                    pending_interrupts: Vec::new(),
                };
                if let Some(saving) = &self.saving
                    && config.durability != Durability::Exit
                {
                    let checkpoint = saving.codec.encode_checkpoint(
                        self.spec,
                        &cursor,
                        CheckpointSource::Input,
                    )?;
                    cursor.checkpoint_id = Some(checkpoint.id.clone());
                    saving.saver.put(&saving.thread, checkpoint).await?;
                }
                Ok(cursor)
            }
            Input::Resume(command) => {
                let Some(saving) = &self.saving else {
                    return Err(GraphError::NothingToResume(
                        "resuming needs a checkpointer and a thread id".into(),
                    ));
                };
                let Some(stored) = stored else {
                    return Err(GraphError::NothingToResume(format!(
                        "thread {} has no checkpoint",
                        saving.thread
                    )));
                };
                let mut cursor = saving.codec.decode_checkpoint(self.spec, stored)?;
                if let Some(resume) = command.resume {
                    apply_resume(&mut cursor, resume)?;
                }
                Ok(cursor)
            }
        }
    }

    /// Records the step in the path; past the recursion limit, stops the run.
    #[inline]
    fn enter_step(&self, cursor: &mut Cursor<S>) -> Result<(), GraphError> {
        cursor
            .path
            .push(cursor.tasks.iter().map(|t| t.node).collect());
        if cursor.step >= self.config.recursion_limit {
            return Err(GraphError::RecursionLimit {
                limit: self.config.recursion_limit,
                path: cursor
                    .path
                    .iter()
                    .map(|step| self.spec.step_label(step.iter().copied()))
                    .collect(),
            });
        }
        Ok(())
    }

    /// Runs the step's tasks, while the previous step's checkpoint is still being saved
    /// (durability `Async`).
    async fn run_tasks(&mut self, cursor: &mut Cursor<S>) -> Result<StepWrites<S>, GraphError> {
        let ran = runner::run_tasks(self.spec, cursor, &self.scope);
        match self.pending_save.take() {
            Some(save) => {
                let (saved, writes) = futures::join!(save, ran);
                saved?;
                Ok(writes)
            }
            None => Ok(ran.await),
        }
    }

    /// A step that failed or interrupted: records the writes of its finished and
    /// interrupted tasks against the checkpoint it started from (writing that checkpoint
    /// first under durability `Exit`, which saved nothing yet), so a resume runs only the
    /// others. (`&mut` only so the run's future stays `Send`: `Command<S>` is `Send`, not
    /// `Sync`; nothing is changed.)
    async fn save_pending_writes(
        &mut self,
        cursor: &mut Cursor<S>,
        writes: &mut StepWrites<S>,
    ) -> Result<(), GraphError> {
        let Some(saving) = &self.saving else {
            return Ok(());
        };
        if self.config.durability == Durability::Exit {
            let checkpoint =
                saving
                    .codec
                    .encode_checkpoint(self.spec, cursor, CheckpointSource::Loop)?;
            cursor.checkpoint_id = Some(checkpoint.id.clone());
            saving.saver.put(&saving.thread, checkpoint).await?;
        }
        let mut pending = Vec::new();
        for (i, command) in &writes.commands {
            pending.push(
                saving
                    .codec
                    .encode_write(self.spec, &cursor.tasks[*i], command)?,
            );
        }
        for (i, interrupt) in &writes.interrupts {
            pending.push(interrupt_write(self.spec, &cursor.tasks[*i], interrupt));
        }
        if let Some(id) = &cursor.checkpoint_id {
            saving.saver.put_writes(&saving.thread, id, pending).await?;
        }
        Ok(())
    }

    /// Ends a step that failed (its first failure) or interrupted (the state before the
    /// step, and its interrupts in task order, also streamed).
    fn interrupt_or_fail(
        self,
        cursor: Cursor<S>,
        writes: StepWrites<S>,
    ) -> Result<RunOutcome<S>, GraphError> {
        if let Some(failure) = writes.failure {
            return Err(failure);
        }
        let interrupts: Vec<Interrupt> = writes.interrupts.into_iter().map(|(_, i)| i).collect();
        if let Some(sink) = &self.scope.sink {
            sink.interrupted(&interrupts);
        }
        Ok(RunOutcome::Interrupted {
            state: cursor.state,
            interrupts,
        })
    }

    /// Merges the step's commands into the state; returns each finished node's gotos.
    #[inline]
    fn apply_writes(
        &self,
        cursor: &mut Cursor<S>,
        commands: Vec<(usize, Command<S>)>,
    ) -> Result<Finished<S>, GraphError> {
        algo::apply_writes(
            self.spec,
            &mut cursor.state,
            &cursor.tasks,
            commands,
            self.scope.sink.as_ref(),
        )
    }

    /// Moves the cursor to the next step: its tasks, after the `finished` nodes.
    #[inline]
    fn prepare_next_tasks(
        &self,
        cursor: &mut Cursor<S>,
        finished: Finished<S>,
    ) -> Result<(), GraphError> {
        cursor.tasks = algo::prepare_next_tasks(
            self.spec,
            cursor.step + 1,
            &cursor.state,
            finished,
            &mut cursor.joins,
        )?;
        cursor.step += 1;
        cursor.resumes.clear();
        Ok(())
    }

    /// The step's end: streams the values, then saves a checkpoint — awaited under
    /// durability `Sync`, left running beside the next step under `Async`, none under
    /// `Exit`.
    async fn checkpoint(&mut self, cursor: &mut Cursor<S>) -> Result<(), GraphError> {
        if let Some(sink) = &self.scope.sink {
            sink.values(&cursor.state);
        }
        if let Some(saving) = &self.saving
            && self.config.durability != Durability::Exit
        {
            let checkpoint =
                saving
                    .codec
                    .encode_checkpoint(self.spec, cursor, CheckpointSource::Loop)?;
            cursor.checkpoint_id = Some(checkpoint.id.clone());
            let save = saving.saver.put(&saving.thread, checkpoint);
            if self.config.durability == Durability::Sync {
                save.await?;
            } else {
                self.pending_save = Some(save);
            }
        }
        Ok(())
    }

    /// No task is left: waits for the last save (writing the only checkpoint under
    /// durability `Exit`) and returns the final state.
    async fn finish(self, cursor: Cursor<S>) -> Result<RunOutcome<S>, GraphError> {
        if let Some(save) = self.pending_save {
            save.await?;
        }
        if let Some(saving) = &self.saving
            && self.config.durability == Durability::Exit
        {
            let checkpoint =
                saving
                    .codec
                    .encode_checkpoint(self.spec, &cursor, CheckpointSource::Loop)?;
            saving.saver.put(&saving.thread, checkpoint).await?;
        }
        Ok(RunOutcome::Done(cursor.state))
    }
}

/// Hands resume values to the interrupted tasks of the cursor's step: one value when one
/// interrupt is pending, or values by interrupt id.
///
/// # Errors
/// [`GraphError::NothingToResume`] when no interrupt is pending, when one value is given
/// for several, or for an id that matches none.
fn apply_resume<S: State>(cursor: &mut Cursor<S>, resume: Resume) -> Result<(), GraphError> {
    let pending: Vec<Interrupt> = cursor.pending_interrupts.drain(..).collect();
    let pairs: Vec<(Interrupt, Value)> = match resume {
        Resume::One(value) => match pending.as_slice() {
            [one] => vec![(one.clone(), value)],
            [] => {
                return Err(GraphError::NothingToResume(
                    "no interrupt is pending".into(),
                ));
            }
            many => {
                return Err(GraphError::NothingToResume(format!(
                    "{} interrupts are pending ({}): resume them by id with Command::resume_many",
                    many.len(),
                    many.iter()
                        .map(|i| i.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        },
        Resume::ById(values) => {
            let mut pairs = Vec::new();
            for (id, value) in values {
                let interrupt = pending.iter().find(|i| i.id == id).ok_or_else(|| {
                    GraphError::NothingToResume(format!("no pending interrupt has id {id}"))
                })?;
                pairs.push((interrupt.clone(), value));
            }
            pairs
        }
    };
    for (interrupt, value) in pairs {
        let task_id = interrupt
            .id
            .rsplit_once('#')
            .map_or(interrupt.id.as_str(), |(t, _)| t);
        cursor
            .resumes
            .entry(task_id.to_owned())
            .or_default()
            .push(value);
    }
    Ok(())
}
