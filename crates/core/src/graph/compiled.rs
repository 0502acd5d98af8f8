//! [`CompiledGraph`]: the superstep executor.
//!
//! The loop follows LangGraph's Pregel runtime: a run is a series of supersteps; each runs
//! its tasks concurrently, merges their updates through the state's reducers (in task
//! order, so the outcome does not depend on which finishes first), then computes the next
//! step's tasks from the edges of the nodes that ran, their commands, and `Send`s. With a
//! checkpointer and a thread id, a checkpoint is written after every superstep; a failing
//! or interrupted step records the writes of its finished tasks, so resuming runs only the
//! others.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, atomic::AtomicUsize},
    time::{Duration, Instant},
};

use futures::{FutureExt, future::join_all};
use serde_json::Value;
use tracing::Instrument;

use super::{
    Command, CommandGraph, END, Goto, GraphError, Interrupt, NodeError, Resume, RunContext, START,
    State,
    checkpoint::{
        Checkpoint, CheckpointSource, CheckpointTuple, Checkpointer, Codec, Durability,
        PendingWrite, StateSnapshot, TaskSpec,
    },
    node::{Emitter, NodeFn},
    retry::NodeOptions,
    stream::{DebugEvent, StreamSink},
};

/// Where an edge leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Node by index.
    Node(usize),
    /// The virtual exit.
    End,
}

pub(crate) type Router<S> = Arc<dyn Fn(&S) -> Vec<Goto<S>> + Send + Sync>;

pub(crate) enum Edge<S> {
    Fixed(Target),
    Conditional {
        router: Router<S>,
        /// Route key → target; empty when keys are node names.
        map: Vec<(String, Target)>,
    },
}

/// A fan-in edge: `target` runs once all `sources` finished.
pub(crate) struct Join {
    pub(crate) sources: Vec<usize>,
    pub(crate) target: Target,
}

/// Everything a compiled graph is made of.
pub(crate) struct Spec<S: State> {
    pub(crate) names: Vec<Arc<str>>,
    pub(crate) index: HashMap<String, usize>,
    pub(crate) nodes: Vec<NodeFn<S>>,
    pub(crate) options: Vec<NodeOptions>,
    /// Slot 0: edges from START; slot i + 1: edges from node i.
    pub(crate) edges: Vec<Vec<Edge<S>>>,
    pub(crate) joins: Vec<Join>,
    /// Declared command destinations per node.
    pub(crate) destinations: Vec<Vec<Target>>,
    pub(crate) checkpointer: Option<Arc<dyn Checkpointer>>,
    pub(crate) codec: Option<Codec<S>>,
}

impl<S: State> Spec<S> {
    /// Every node must reach `END`: walk the edges backwards from `END`.
    pub(crate) fn check_paths_to_end(&self) -> Result<(), GraphError> {
        let n = self.names.len();
        let mut reaches = vec![false; n];
        let hits = |t: &Target, reaches: &[bool]| match t {
            Target::End => true,
            Target::Node(i) => reaches[*i],
        };
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..n {
                if reaches[i] {
                    continue;
                }
                let via_edges = self.edges[i + 1].iter().any(|edge| match edge {
                    Edge::Fixed(t) => hits(t, &reaches),
                    // An unmapped router may go anywhere, END included.
                    Edge::Conditional { map, .. } if map.is_empty() => true,
                    Edge::Conditional { map, .. } => map.iter().any(|(_, t)| hits(t, &reaches)),
                });
                let via_commands = self.destinations[i].iter().any(|t| hits(t, &reaches));
                let via_joins = self
                    .joins
                    .iter()
                    .any(|j| j.sources.contains(&i) && hits(&j.target, &reaches));
                if via_edges || via_commands || via_joins {
                    reaches[i] = true;
                    changed = true;
                }
            }
        }
        match reaches.iter().position(|r| !r) {
            Some(i) => Err(GraphError::NoPathToEnd {
                node: self.names[i].to_string(),
            }),
            None => Ok(()),
        }
    }
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Most supersteps a run may take before [`GraphError::RecursionLimit`]; default 25.
    pub recursion_limit: usize,
    /// The conversation thread (LangGraph's `thread_id`): with a checkpointer, the run is
    /// checkpointed under it and can be resumed, inspected and replayed.
    pub thread_id: Option<String>,
    /// Resume from this checkpoint of the thread instead of its newest (time travel); the
    /// run forks a new branch of history from it.
    pub checkpoint_id: Option<String>,
    /// When checkpoints are written.
    pub durability: Durability,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            recursion_limit: 25,
            thread_id: None,
            checkpoint_id: None,
            durability: Durability::Sync,
        }
    }
}

impl RunConfig {
    /// The default config with `thread_id` set.
    pub fn thread(thread_id: impl Into<String>) -> Self {
        Self {
            thread_id: Some(thread_id.into()),
            ..Self::default()
        }
    }

    /// The same config resuming from `checkpoint_id`.
    #[must_use]
    pub fn at_checkpoint(mut self, checkpoint_id: impl Into<String>) -> Self {
        self.checkpoint_id = Some(checkpoint_id.into());
        self
    }

    /// The same config with `durability`.
    #[must_use]
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
}

/// What a run starts from.
pub enum Input<S: State> {
    /// A new run from `START` with this state (on a thread: a new run after its last
    /// checkpoint).
    State(S),
    /// Continue the thread's run from its newest checkpoint (or `checkpoint_id`), resuming
    /// interrupts with the command's resume values, if any.
    Resume(Command<S>),
}

impl<S: State> From<S> for Input<S> {
    fn from(state: S) -> Self {
        Self::State(state)
    }
}

impl<S: State> From<Command<S>> for Input<S> {
    fn from(command: Command<S>) -> Self {
        Self::Resume(command)
    }
}

/// How a run ended.
#[derive(Debug)]
pub enum RunOutcome<S> {
    /// No task was left: the final state.
    Done(S),
    /// One or more nodes called [`RunContext::interrupt`]: the state so far and what they
    /// ask. Resume with [`Command::resume`] on the same thread.
    Interrupted {
        /// The state before the interrupted superstep.
        state: S,
        /// The interrupts, in task order.
        interrupts: Vec<Interrupt>,
    },
}

/// A validated graph, ready to run any number of times, concurrently. Cheap to clone.
pub struct CompiledGraph<S: State> {
    pub(crate) spec: Arc<Spec<S>>,
}

impl<S: State> Clone for CompiledGraph<S> {
    fn clone(&self) -> Self {
        Self {
            spec: Arc::clone(&self.spec),
        }
    }
}

/// One task of a superstep.
struct Task<S> {
    id: String,
    node: usize,
    arg: Option<S>,
}

/// The loop's state between supersteps.
struct Cursor<S: State> {
    state: S,
    tasks: Vec<Task<S>>,
    joins: Vec<Vec<usize>>,
    resumes: BTreeMap<String, Vec<Value>>,
    /// Outputs of this step's tasks recorded before (a resumed step).
    done: HashMap<String, Command<S>>,
    step: usize,
    checkpoint_id: Option<String>,
    /// The nodes run, step by step (for the recursion-limit error).
    path: Vec<Vec<usize>>,
    /// Interrupts recorded against the checkpoint resumed from.
    pending_interrupts: Vec<Interrupt>,
}

type TaskResult<S> = Result<Command<S>, NodeError>;

impl<S: State> CompiledGraph<S> {
    pub(crate) fn new(spec: Spec<S>) -> Self {
        Self {
            spec: Arc::new(spec),
        }
    }

    /// The node names, in the order they were added.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.spec.names.iter().map(|n| n.as_ref())
    }

    /// Runs the graph to its end with the default [`RunConfig`] and returns the final
    /// state.
    ///
    /// # Errors
    /// See [`CompiledGraph::invoke_with`].
    pub async fn invoke(&self, input: impl Into<Input<S>>) -> Result<S, GraphError> {
        self.invoke_with(input, RunConfig::default()).await
    }

    /// Runs the graph and returns the final state.
    ///
    /// # Errors
    /// [`GraphError::Interrupted`] when a node interrupted (use [`run`](Self::run) to get
    /// the state too), [`GraphError::Node`] for the first failing task of a step,
    /// [`GraphError::UnknownRoute`] for a route nobody declared,
    /// [`GraphError::RecursionLimit`] past `config.recursion_limit` supersteps,
    /// [`GraphError::Checkpoint`] when the checkpointer fails, and whatever the state's
    /// reducers return.
    pub async fn invoke_with(
        &self,
        input: impl Into<Input<S>>,
        config: RunConfig,
    ) -> Result<S, GraphError> {
        match self.run(input, config).await? {
            RunOutcome::Done(state) => Ok(state),
            RunOutcome::Interrupted { interrupts, .. } => {
                Err(GraphError::Interrupted { interrupts })
            }
        }
    }

    /// Runs the graph until it ends or is interrupted.
    ///
    /// # Errors
    /// As [`invoke_with`](Self::invoke_with), except interrupts, which are a
    /// [`RunOutcome`].
    pub async fn run(
        &self,
        input: impl Into<Input<S>>,
        config: RunConfig,
    ) -> Result<RunOutcome<S>, GraphError> {
        self.execute(input.into(), config, None).await
    }

    /// Runs on `state` without a thread (a subgraph inside a node), forwarding `custom`
    /// events to `emitter`.
    pub(crate) async fn run_detached(
        &self,
        state: S,
        config: RunConfig,
        emitter: Option<Emitter>,
    ) -> Result<S, GraphError> {
        let sink = emitter.map(StreamSink::custom_only);
        match self.execute(Input::State(state), config, sink).await? {
            RunOutcome::Done(state) => Ok(state),
            RunOutcome::Interrupted { interrupts, .. } => {
                Err(GraphError::Interrupted { interrupts })
            }
        }
    }

    fn checkpointing(
        &self,
        config: &RunConfig,
    ) -> Option<(Arc<dyn Checkpointer>, Codec<S>, String)> {
        match (&self.spec.checkpointer, self.spec.codec, &config.thread_id) {
            (Some(saver), Some(codec), Some(thread)) => {
                Some((Arc::clone(saver), codec, thread.clone()))
            }
            _ => None,
        }
    }

    pub(crate) async fn execute(
        &self,
        input: Input<S>,
        config: RunConfig,
        sink: Option<StreamSink<S>>,
    ) -> Result<RunOutcome<S>, GraphError> {
        let spec = &*self.spec;
        let saving = self.checkpointing(&config);
        let thread_id: Option<Arc<str>> = config.thread_id.as_deref().map(Arc::from);
        let mut cursor = self.start(input, &config, saving.as_ref()).await?;
        let emitter = sink.as_ref().and_then(StreamSink::emitter);
        let mut pending_save: Option<
            futures::future::BoxFuture<'static, Result<(), super::CheckpointError>>,
        > = None;

        while !cursor.tasks.is_empty() {
            cursor
                .path
                .push(cursor.tasks.iter().map(|t| t.node).collect());
            if cursor.step >= config.recursion_limit {
                return Err(GraphError::RecursionLimit {
                    limit: config.recursion_limit,
                    path: cursor
                        .path
                        .iter()
                        .map(|step| {
                            step.iter()
                                .map(|&i| spec.names[i].as_ref())
                                .collect::<Vec<_>>()
                                .join("|")
                        })
                        .collect(),
                });
            }
            let step = cursor.step;
            let keep_args = saving.is_some();
            let runs = cursor.tasks.iter_mut().map(|task| {
                if !cursor.done.is_empty()
                    && let Some(done) = cursor.done.remove(&task.id)
                {
                    return futures::future::ready(Ok(done)).boxed();
                }
                let ctx = RunContext {
                    node: Arc::clone(&spec.names[task.node]),
                    step,
                    thread_id: thread_id.clone(),
                    task_id: Arc::from(task.id.as_str()),
                    attempt: 1,
                    resumes: cursor
                        .resumes
                        .get(&task.id)
                        .map(|r| Arc::from(r.as_slice())),
                    interrupts_seen: AtomicUsize::new(0),
                    emitter: emitter.clone(),
                };
                // Without a checkpointer nothing needs a task's input after it ran.
                let input = match &mut task.arg {
                    Some(_) if !keep_args => {
                        task.arg.take().unwrap_or_else(|| cursor.state.clone())
                    }
                    Some(arg) => arg.clone(),
                    None => cursor.state.clone(),
                };
                run_task(spec, task.node, input, ctx, sink.clone())
            });
            let ran = async move {
                let mut runs: Vec<_> = runs.collect();
                if runs.len() == 1 {
                    let only = runs.pop();
                    match only {
                        Some(run) => vec![run.await],
                        None => Vec::new(),
                    }
                } else {
                    join_all(runs).await
                }
            };
            let outputs = match pending_save.take() {
                Some(save) => {
                    let (saved, outputs) = futures::join!(save, ran);
                    saved?;
                    outputs
                }
                None => ran.await,
            };

            // Sort the outputs: commands, interrupts, failures.
            let mut commands: Vec<(usize, Command<S>)> = Vec::new();
            let mut interrupts: Vec<(usize, Interrupt)> = Vec::new();
            let mut failure: Option<GraphError> = None;
            for (i, output) in outputs.into_iter().enumerate() {
                match output {
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
                                        node: spec.names[cursor.tasks[i].node].to_string(),
                                        error: err,
                                    });
                                }
                            }
                        },
                    },
                }
            }
            if let Some((i, _)) = commands
                .iter()
                .find(|(_, c)| c.graph == CommandGraph::Parent)
            {
                let at = commands
                    .iter()
                    .position(|(j, _)| j == i)
                    .unwrap_or_default();
                let (_, command) = commands.swap_remove(at);
                return Err(GraphError::ParentCommand(NodeError::parent(command)));
            }
            if failure.is_some() || !interrupts.is_empty() {
                if let Some((saver, codec, thread)) = &saving {
                    // Durability `Exit` saved nothing yet: save where this step started.
                    if config.durability == Durability::Exit {
                        let checkpoint =
                            self.encode_cursor(&cursor, codec, CheckpointSource::Loop)?;
                        cursor.checkpoint_id = Some(checkpoint.id.clone());
                        saver.put(thread, checkpoint).await?;
                    }
                    let mut writes = Vec::new();
                    for (i, command) in &commands {
                        writes.push(encode_write(&cursor.tasks[*i], spec, codec, command)?);
                    }
                    for (i, interrupt) in &interrupts {
                        let task = &cursor.tasks[*i];
                        writes.push(PendingWrite {
                            task_id: task.id.clone(),
                            node: spec.names[task.node].to_string(),
                            update: None,
                            goto: Vec::new(),
                            interrupt: Some(interrupt.clone()),
                        });
                    }
                    if let Some(id) = &cursor.checkpoint_id {
                        saver.put_writes(thread, id, writes).await?;
                    }
                }
                if let Some(failure) = failure {
                    return Err(failure);
                }
                let interrupts: Vec<Interrupt> = interrupts.into_iter().map(|(_, i)| i).collect();
                if let Some(sink) = &sink {
                    sink.interrupted(&interrupts);
                }
                return Ok(RunOutcome::Interrupted {
                    state: cursor.state,
                    interrupts,
                });
            }

            // Merge, then route.
            let mut updates = Vec::with_capacity(commands.len());
            let mut gotos: Vec<(usize, Vec<Goto<S>>)> = Vec::with_capacity(commands.len());
            for (i, command) in commands {
                let node = cursor.tasks[i].node;
                if let Some(update) = command.update {
                    if let Some(sink) = &sink {
                        sink.update(&spec.names[node], &update);
                    }
                    updates.push(update);
                }
                gotos.push((node, command.goto));
            }
            cursor.state.apply_step(updates).map_err(|err| match err {
                GraphError::InvalidUpdate { node, reason } if node.is_empty() => {
                    GraphError::InvalidUpdate {
                        node: cursor
                            .path
                            .last()
                            .map(|step| {
                                step.iter()
                                    .map(|&i| spec.names[i].as_ref())
                                    .collect::<Vec<_>>()
                                    .join("|")
                            })
                            .unwrap_or_default(),
                        reason,
                    }
                }
                other => other,
            })?;
            cursor.tasks = self.next_tasks(step + 1, &cursor.state, gotos, &mut cursor.joins)?;
            cursor.step += 1;
            cursor.resumes.clear();
            if let Some(sink) = &sink {
                sink.values(&cursor.state);
            }
            if let Some((saver, codec, thread)) = &saving
                && config.durability != Durability::Exit
            {
                let checkpoint = self.encode_cursor(&cursor, codec, CheckpointSource::Loop)?;
                cursor.checkpoint_id = Some(checkpoint.id.clone());
                let save = saver.put(thread, checkpoint);
                if config.durability == Durability::Sync {
                    save.await?;
                } else {
                    pending_save = Some(save);
                }
            }
        }
        if let Some(save) = pending_save {
            save.await?;
        }
        if let Some((saver, codec, thread)) = &saving
            && config.durability == Durability::Exit
        {
            let checkpoint = self.encode_cursor(&cursor, codec, CheckpointSource::Loop)?;
            saver.put(thread, checkpoint).await?;
        }
        Ok(RunOutcome::Done(cursor.state))
    }

    /// Sets up the cursor: from the input, or from a checkpoint.
    async fn start(
        &self,
        input: Input<S>,
        config: &RunConfig,
        saving: Option<&(Arc<dyn Checkpointer>, Codec<S>, String)>,
    ) -> Result<Cursor<S>, GraphError> {
        let stored = match saving {
            Some((saver, _, thread)) => saver.get(thread, config.checkpoint_id.as_deref()).await?,
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
                let tasks =
                    self.next_tasks(0, &state, vec![(usize::MAX, Vec::new())], &mut joins)?;
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
                if let Some((saver, codec, thread)) = saving
                    && config.durability != Durability::Exit
                {
                    let checkpoint = self.encode_cursor(&cursor, codec, CheckpointSource::Input)?;
                    cursor.checkpoint_id = Some(checkpoint.id.clone());
                    saver.put(thread, checkpoint).await?;
                }
                Ok(cursor)
            }
            Input::Resume(command) => {
                let Some((_, codec, thread)) = saving else {
                    return Err(GraphError::NothingToResume(
                        "resuming needs a checkpointer and a thread id".into(),
                    ));
                };
                let Some(stored) = stored else {
                    return Err(GraphError::NothingToResume(format!(
                        "thread {thread} has no checkpoint"
                    )));
                };
                let mut cursor = self.decode_cursor(stored, codec)?;
                if let Some(resume) = command.resume {
                    self.apply_resume(&mut cursor, resume)?;
                }
                Ok(cursor)
            }
        }
    }

    /// Hands resume values to the interrupted tasks of the cursor's step.
    fn apply_resume(&self, cursor: &mut Cursor<S>, resume: Resume) -> Result<(), GraphError> {
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

    /// The tasks of step `step` after `finished` nodes (with their gotos) ran over `state`.
    /// `usize::MAX` stands for START.
    fn next_tasks(
        &self,
        step: usize,
        state: &S,
        finished: Vec<(usize, Vec<Goto<S>>)>,
        joins: &mut [Vec<usize>],
    ) -> Result<Vec<Task<S>>, GraphError> {
        let spec = &*self.spec;
        let mut triggered: Vec<usize> = Vec::new();
        let mut sends: Vec<(usize, S)> = Vec::new();
        let name_of = |node: usize| {
            if node == usize::MAX {
                START.to_owned()
            } else {
                spec.names[node].to_string()
            }
        };
        let follow = |triggered: &mut Vec<usize>,
                      sends: &mut Vec<(usize, S)>,
                      from: usize,
                      goto: Goto<S>,
                      map: Option<&[(String, Target)]>|
         -> Result<(), GraphError> {
            match goto {
                Goto::Node(key) => {
                    let target = match map {
                        Some(map) if !map.is_empty() => {
                            map.iter().find(|(k, _)| *k == key).map(|(_, t)| *t)
                        }
                        _ if key == END => Some(Target::End),
                        _ => spec.index.get(&key).map(|&i| Target::Node(i)),
                    };
                    match target {
                        Some(Target::Node(i)) => triggered.push(i),
                        Some(Target::End) => {}
                        None => {
                            return Err(GraphError::UnknownRoute {
                                node: name_of(from),
                                route: key,
                            });
                        }
                    }
                }
                Goto::Send(send) => match spec.index.get(&send.node) {
                    Some(&i) => sends.push((i, send.arg)),
                    None => {
                        return Err(GraphError::UnknownRoute {
                            node: name_of(from),
                            route: send.node,
                        });
                    }
                },
            }
            Ok(())
        };
        for (node, gotos) in finished {
            let slot = if node == usize::MAX { 0 } else { node + 1 };
            for edge in &spec.edges[slot] {
                match edge {
                    Edge::Fixed(Target::Node(i)) => triggered.push(*i),
                    Edge::Fixed(Target::End) => {}
                    Edge::Conditional { router, map } => {
                        for goto in router(state) {
                            follow(&mut triggered, &mut sends, node, goto, Some(map))?;
                        }
                    }
                }
            }
            for goto in gotos {
                follow(&mut triggered, &mut sends, node, goto, None)?;
            }
            if node != usize::MAX {
                for (j, join) in spec.joins.iter().enumerate() {
                    if join.sources.contains(&node) && !joins[j].contains(&node) {
                        joins[j].push(node);
                        if joins[j].len() == join.sources.len() {
                            joins[j].clear();
                            if let Target::Node(i) = join.target {
                                triggered.push(i);
                            }
                        }
                    }
                }
            }
        }
        triggered.sort_unstable();
        triggered.dedup();
        let mut tasks: Vec<Task<S>> = triggered
            .into_iter()
            .map(|node| Task {
                id: String::new(),
                node,
                arg: None,
            })
            .collect();
        tasks.extend(sends.into_iter().map(|(node, arg)| Task {
            id: String::new(),
            node,
            arg: Some(arg),
        }));
        for (i, task) in tasks.iter_mut().enumerate() {
            task.id = format!("{step}:{}:{i}", spec.names[task.node]);
        }
        Ok(tasks)
    }

    fn encode_cursor(
        &self,
        cursor: &Cursor<S>,
        codec: &Codec<S>,
        source: CheckpointSource,
    ) -> Result<Checkpoint, GraphError> {
        let spec = &*self.spec;
        let corrupt = |e: serde_json::Error| {
            GraphError::Checkpoint(super::CheckpointError::Corrupt(e.to_string()))
        };
        let mut next = Vec::with_capacity(cursor.tasks.len());
        for task in &cursor.tasks {
            next.push(TaskSpec {
                id: task.id.clone(),
                node: spec.names[task.node].to_string(),
                arg: task
                    .arg
                    .as_ref()
                    .map(codec.encode_state)
                    .transpose()
                    .map_err(corrupt)?,
            });
        }
        Ok(Checkpoint {
            v: super::checkpoint::CHECKPOINT_VERSION,
            id: Checkpoint::new_id(),
            parent_id: cursor.checkpoint_id.clone(),
            step: cursor.step,
            created_at: chrono::Utc::now(),
            source,
            state: (codec.encode_state)(&cursor.state).map_err(corrupt)?,
            next,
            joins: cursor
                .joins
                .iter()
                .map(|seen| seen.iter().map(|&i| spec.names[i].to_string()).collect())
                .collect(),
            resumes: cursor.resumes.clone(),
        })
    }

    fn decode_cursor(
        &self,
        stored: CheckpointTuple,
        codec: &Codec<S>,
    ) -> Result<Cursor<S>, GraphError> {
        let spec = &*self.spec;
        let CheckpointTuple {
            checkpoint,
            pending_writes,
        } = stored;
        let corrupt = |what: &str, e: String| {
            GraphError::Checkpoint(super::CheckpointError::Corrupt(format!(
                "{what} of checkpoint {}: {e}",
                checkpoint.id
            )))
        };
        let node_index = |name: &str| {
            spec.index
                .get(name)
                .copied()
                .ok_or_else(|| corrupt("node", format!("this graph has no node {name:?}")))
        };
        let state = (codec.decode_state)(checkpoint.state.clone())
            .map_err(|e| corrupt("state", e.to_string()))?;
        let mut tasks = Vec::new();
        for t in &checkpoint.next {
            let arg = match &t.arg {
                Some(arg) => Some(
                    (codec.decode_state)(arg.clone())
                        .map_err(|e| corrupt("task input", e.to_string()))?,
                ),
                None => None,
            };
            tasks.push(Task {
                id: t.id.clone(),
                node: node_index(&t.node)?,
                arg,
            });
        }
        let mut joins = Vec::new();
        for seen in &checkpoint.joins {
            joins.push(
                seen.iter()
                    .map(|n| node_index(n))
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        joins.resize(spec.joins.len(), Vec::new());
        let mut done = HashMap::new();
        let mut pending_interrupts = Vec::new();
        for write in pending_writes {
            if let Some(interrupt) = write.interrupt {
                pending_interrupts.push(interrupt);
                continue;
            }
            let update = match write.update {
                Some(u) => Some(
                    (codec.decode_update)(u)
                        .map_err(|e| corrupt("pending write", e.to_string()))?,
                ),
                None => None,
            };
            let mut goto = Vec::new();
            for (node, arg) in write.goto {
                goto.push(match arg {
                    Some(arg) => Goto::Send(super::Send::new(
                        node,
                        (codec.decode_state)(arg)
                            .map_err(|e| corrupt("pending send", e.to_string()))?,
                    )),
                    None => Goto::Node(node),
                });
            }
            done.insert(
                write.task_id,
                Command {
                    update,
                    goto,
                    ..Command::default()
                },
            );
        }
        Ok(Cursor {
            state,
            tasks,
            joins,
            resumes: checkpoint.resumes.clone(),
            done,
            step: checkpoint.step,
            checkpoint_id: Some(checkpoint.id.clone()),
            path: Vec::new(),
            pending_interrupts,
        })
    }
}

/// Runs one task under its node's retry policy and timeout, reporting debug events.
/// Runs one task: straight when the node has no retry policy or timeout and nobody
/// streams debug events; otherwise under its policy, reporting debug events.
fn run_task<'a, S: State>(
    spec: &'a Spec<S>,
    node: usize,
    input: S,
    ctx: RunContext,
    sink: Option<StreamSink<S>>,
) -> futures::future::BoxFuture<'a, TaskResult<S>> {
    let options = &spec.options[node];
    let plain = options.retry.is_none()
        && options.timeout.is_none()
        && sink.as_ref().is_none_or(|s| !s.debugging());
    if plain && !tracing::enabled!(tracing::Level::DEBUG) {
        return (spec.nodes[node])(input, ctx);
    }
    let span = tracing::debug_span!("graph.node", node = %spec.names[node], step = ctx.step, task_id = %ctx.task_id);
    run_task_with_options(spec, node, input, ctx, sink)
        .instrument(span)
        .boxed()
}

async fn run_task_with_options<S: State>(
    spec: &Spec<S>,
    node: usize,
    input: S,
    mut ctx: RunContext,
    sink: Option<StreamSink<S>>,
) -> TaskResult<S> {
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

/// A finished task's output as a pending write.
fn encode_write<S: State>(
    task: &Task<S>,
    spec: &Spec<S>,
    codec: &Codec<S>,
    command: &Command<S>,
) -> Result<PendingWrite, GraphError> {
    let corrupt = |e: serde_json::Error| {
        GraphError::Checkpoint(super::CheckpointError::Corrupt(e.to_string()))
    };
    let mut goto = Vec::new();
    for g in &command.goto {
        goto.push(match g {
            Goto::Node(n) => (n.clone(), None),
            Goto::Send(send) => (
                send.node.clone(),
                Some((codec.encode_state)(&send.arg).map_err(corrupt)?),
            ),
        });
    }
    Ok(PendingWrite {
        task_id: task.id.clone(),
        node: spec.names[task.node].to_string(),
        update: command
            .update
            .as_ref()
            .map(codec.encode_update)
            .transpose()
            .map_err(corrupt)?,
        goto,
        interrupt: None,
    })
}

impl<S: State> CompiledGraph<S> {
    fn saver(&self) -> Result<(&Arc<dyn Checkpointer>, Codec<S>), GraphError> {
        match (&self.spec.checkpointer, self.spec.codec) {
            (Some(saver), Some(codec)) => Ok((saver, codec)),
            _ => Err(GraphError::NothingToResume(
                "this graph has no checkpointer: compile it with compile_with_checkpointer".into(),
            )),
        }
    }

    fn snapshot(
        &self,
        stored: CheckpointTuple,
        codec: &Codec<S>,
    ) -> Result<StateSnapshot<S>, GraphError> {
        let checkpoint = stored.checkpoint.clone();
        let cursor = self.decode_cursor(stored, codec)?;
        Ok(StateSnapshot {
            values: cursor.state,
            next: checkpoint.next.iter().map(|t| t.node.clone()).collect(),
            checkpoint_id: checkpoint.id,
            parent_id: checkpoint.parent_id,
            step: checkpoint.step,
            source: checkpoint.source,
            created_at: checkpoint.created_at,
            interrupts: cursor.pending_interrupts,
        })
    }

    /// The thread's newest state (or that of `config.checkpoint_id`), LangGraph's
    /// `get_state`; `None` for a thread never run.
    ///
    /// # Errors
    /// [`GraphError::Checkpoint`] when the checkpointer fails or the checkpoint is
    /// corrupt; [`GraphError::NothingToResume`] without a checkpointer.
    pub async fn get_state(
        &self,
        config: &RunConfig,
    ) -> Result<Option<StateSnapshot<S>>, GraphError> {
        let (saver, codec) = self.saver()?;
        let thread = config.thread_id.as_deref().unwrap_or_default();
        match saver.get(thread, config.checkpoint_id.as_deref()).await? {
            Some(stored) => Ok(Some(self.snapshot(stored, &codec)?)),
            None => Ok(None),
        }
    }

    /// The thread's checkpoints, newest first (LangGraph's `get_state_history`).
    ///
    /// # Errors
    /// As [`get_state`](Self::get_state).
    pub async fn get_state_history(
        &self,
        config: &RunConfig,
    ) -> Result<Vec<StateSnapshot<S>>, GraphError> {
        let (saver, codec) = self.saver()?;
        let thread = config.thread_id.as_deref().unwrap_or_default();
        let mut history = Vec::new();
        for checkpoint in saver.list(thread, None).await? {
            history.push(self.snapshot(
                CheckpointTuple {
                    checkpoint,
                    pending_writes: Vec::new(),
                },
                &codec,
            )?);
        }
        Ok(history)
    }

    /// Applies `update` to the thread's newest state (or `config.checkpoint_id`'s) as if
    /// node `as_node` had returned it — the next tasks then follow `as_node`'s edges — or,
    /// with `as_node` `None`, keeping the pending tasks (LangGraph's `update_state`).
    /// Writes a new checkpoint and returns its id.
    ///
    /// # Errors
    /// As [`get_state`](Self::get_state); [`GraphError::NothingToResume`] for a thread
    /// never run; [`GraphError::UnknownNode`] for an unknown `as_node`.
    pub async fn update_state(
        &self,
        config: &RunConfig,
        update: S::Update,
        as_node: Option<&str>,
    ) -> Result<String, GraphError> {
        let (saver, codec) = self.saver()?;
        let thread = config.thread_id.as_deref().unwrap_or_default();
        let stored = saver
            .get(thread, config.checkpoint_id.as_deref())
            .await?
            .ok_or_else(|| {
                GraphError::NothingToResume(format!("thread {thread} has no checkpoint"))
            })?;
        let mut cursor = self.decode_cursor(stored, &codec)?;
        cursor.state.apply_step(vec![update])?;
        if let Some(name) = as_node {
            let node = *self
                .spec
                .index
                .get(name)
                .ok_or_else(|| GraphError::UnknownNode {
                    name: name.to_owned(),
                    context: "update_state as_node".into(),
                })?;
            cursor.tasks = self.next_tasks(
                cursor.step,
                &cursor.state,
                vec![(node, Vec::new())],
                &mut cursor.joins,
            )?;
            cursor.resumes.clear();
        }
        let checkpoint = self.encode_cursor(&cursor, &codec, CheckpointSource::Update)?;
        let id = checkpoint.id.clone();
        saver.put(thread, checkpoint).await?;
        Ok(id)
    }
}
