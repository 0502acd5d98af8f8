//! [`CompiledGraph`]: a validated graph and what a caller does with it — run it
//! ([`invoke`](CompiledGraph::invoke), [`run`](CompiledGraph::run)), and, with a
//! checkpointer, inspect and edit a thread's state ([`get_state`](CompiledGraph::get_state),
//! [`get_state_history`](CompiledGraph::get_state_history),
//! [`update_state`](CompiledGraph::update_state)) — LangGraph's `pregel/main.py`.
//!
//! The run itself is the superstep loop of [`superstep`](super::superstep).

use std::sync::Arc;

use super::{
    algo,
    checkpoint_codec::Codec,
    spec::{Source, Spec},
};
use crate::graph::{
    Command, GraphError, Interrupt, State,
    checkpoint::{CheckpointSource, CheckpointTuple, Checkpointer, Durability, StateSnapshot},
    node::Emitter,
    stream::StreamSink,
};

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

impl<S: State> std::fmt::Debug for Input<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input").finish_non_exhaustive()
    }
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
    /// One or more nodes called [`RunContext::interrupt`](crate::graph::RunContext::interrupt): the state so far and what they
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

impl<S: State> std::fmt::Debug for CompiledGraph<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledGraph").finish_non_exhaustive()
    }
}

impl<S: State> Clone for CompiledGraph<S> {
    fn clone(&self) -> Self {
        Self {
            spec: Arc::clone(&self.spec),
        }
    }
}

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
}

impl<S: State> CompiledGraph<S> {
    /// The checkpointer and codec, for the thread-inspecting methods.
    fn saver(&self) -> Result<(&Arc<dyn Checkpointer>, Codec<S>), GraphError> {
        match (&self.spec.checkpointer, self.spec.codec) {
            (Some(saver), Some(codec)) => Ok((saver, codec)),
            _ => Err(GraphError::NothingToResume(
                "this graph has no checkpointer: compile it with compile_with_checkpointer".into(),
            )),
        }
    }

    /// The snapshot a stored checkpoint describes.
    fn snapshot(
        &self,
        stored: CheckpointTuple,
        codec: &Codec<S>,
    ) -> Result<StateSnapshot<S>, GraphError> {
        let checkpoint = stored.checkpoint.clone();
        let cursor = codec.decode_checkpoint(&self.spec, stored)?;
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
        let mut cursor = codec.decode_checkpoint(&self.spec, stored)?;
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
            cursor.tasks = algo::prepare_next_tasks(
                &self.spec,
                cursor.step,
                &cursor.state,
                vec![(Source::Node(node), Vec::new())],
                &mut cursor.joins,
            )?;
            cursor.resumes.clear();
        }
        let checkpoint = codec.encode_checkpoint(&self.spec, &cursor, CheckpointSource::Update)?;
        let id = checkpoint.id.clone();
        saver.put(thread, checkpoint).await?;
        Ok(id)
    }
}
