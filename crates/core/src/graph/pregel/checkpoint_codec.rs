//! Checkpoint encoding (LangGraph's `pregel/_checkpoint.py`): the loop's [`Cursor`] to a
//! [`Checkpoint`] and back, a finished task's output to a [`PendingWrite`].
//!
//! The executor has no serde bounds on `S`: [`Codec`] captures the state's and update's
//! serde functions where [`StateGraph::compile_with_checkpointer`] has them. A checkpoint
//! that does not decode (or names a node this graph lacks) is
//! [`CheckpointError::Corrupt`], never a panic.
//!
//! [`StateGraph::compile_with_checkpointer`]: crate::graph::StateGraph::compile_with_checkpointer

use std::collections::HashMap;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::{algo::PregelTask, spec::Spec, superstep::Cursor};
use crate::graph::{
    Command, Goto, GraphError, Interrupt, Send, State,
    checkpoint::{
        CHECKPOINT_VERSION, Checkpoint, CheckpointError, CheckpointSource, CheckpointTuple,
        PendingWrite, TaskSpec,
    },
};

/// Encoders of a state and its updates, captured where their serde bounds hold so the
/// executor needs none.
pub(crate) struct Codec<S: State> {
    pub(crate) encode_state: fn(&S) -> Result<Value, serde_json::Error>,
    pub(crate) decode_state: fn(Value) -> Result<S, serde_json::Error>,
    pub(crate) encode_update: fn(&S::Update) -> Result<Value, serde_json::Error>,
    pub(crate) decode_update: fn(Value) -> Result<S::Update, serde_json::Error>,
}

impl<S: State> Clone for Codec<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S: State> Copy for Codec<S> {}

fn encode<T: Serialize>(value: &T) -> Result<Value, serde_json::Error> {
    serde_json::to_value(value)
}

fn decode<T: DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
    serde_json::from_value(value)
}

impl<S> Codec<S>
where
    S: State + Serialize + DeserializeOwned,
    S::Update: Serialize + DeserializeOwned,
{
    /// The codec of `S` and its update: `serde_json` values.
    pub(crate) fn new() -> Self {
        Self {
            encode_state: encode::<S>,
            decode_state: decode::<S>,
            encode_update: encode::<S::Update>,
            decode_update: decode::<S::Update>,
        }
    }
}

impl<S: State> Codec<S> {
    /// The checkpoint of `cursor` (its state, next tasks, join progress and resume
    /// values), a child of the cursor's checkpoint, with a new id.
    ///
    /// # Errors
    /// [`CheckpointError::Corrupt`] when the state or a task input does not encode.
    pub(crate) fn encode_checkpoint(
        &self,
        spec: &Spec<S>,
        cursor: &Cursor<S>,
        source: CheckpointSource,
    ) -> Result<Checkpoint, GraphError> {
        let corrupt =
            |e: serde_json::Error| GraphError::Checkpoint(CheckpointError::Corrupt(e.to_string()));
        let mut next = Vec::with_capacity(cursor.tasks.len());
        for task in &cursor.tasks {
            next.push(TaskSpec {
                id: task.id.clone(),
                node: spec.names[task.node].to_string(),
                arg: task
                    .arg
                    .as_ref()
                    .map(self.encode_state)
                    .transpose()
                    .map_err(corrupt)?,
            });
        }
        Ok(Checkpoint {
            v: CHECKPOINT_VERSION,
            id: Checkpoint::new_id(),
            parent_id: cursor.checkpoint_id.clone(),
            step: cursor.step,
            created_at: chrono::Utc::now(),
            source,
            state: (self.encode_state)(&cursor.state).map_err(corrupt)?,
            next,
            joins: cursor
                .joins
                .iter()
                .map(|seen| seen.iter().map(|&i| spec.names[i].to_string()).collect())
                .collect(),
            resumes: cursor.resumes.clone(),
        })
    }

    /// The cursor a stored checkpoint describes: its pending writes become the step's
    /// finished outputs (`done`) or its pending interrupts.
    ///
    /// # Errors
    /// [`CheckpointError::Corrupt`] naming the checkpoint when its state, a task input, a
    /// pending write or send does not decode, or it names a node this graph lacks.
    pub(crate) fn decode_checkpoint(
        &self,
        spec: &Spec<S>,
        stored: CheckpointTuple,
    ) -> Result<Cursor<S>, GraphError> {
        let CheckpointTuple {
            checkpoint,
            pending_writes,
        } = stored;
        let corrupt = |what: &str, e: String| {
            GraphError::Checkpoint(CheckpointError::Corrupt(format!(
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
        let state = (self.decode_state)(checkpoint.state.clone())
            .map_err(|e| corrupt("state", e.to_string()))?;
        let mut tasks = Vec::new();
        for t in &checkpoint.next {
            let arg = match &t.arg {
                Some(arg) => Some(
                    (self.decode_state)(arg.clone())
                        .map_err(|e| corrupt("task input", e.to_string()))?,
                ),
                None => None,
            };
            tasks.push(PregelTask {
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
                    (self.decode_update)(u).map_err(|e| corrupt("pending write", e.to_string()))?,
                ),
                None => None,
            };
            let mut goto = Vec::new();
            for (node, arg) in write.goto {
                goto.push(match arg {
                    Some(arg) => Goto::Send(Send::new(
                        node,
                        (self.decode_state)(arg)
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

    /// A finished task's command as a pending write.
    ///
    /// # Errors
    /// [`CheckpointError::Corrupt`] when its update or a `Send`'s input does not encode.
    pub(crate) fn encode_write(
        &self,
        spec: &Spec<S>,
        task: &PregelTask<S>,
        command: &Command<S>,
    ) -> Result<PendingWrite, GraphError> {
        let corrupt =
            |e: serde_json::Error| GraphError::Checkpoint(CheckpointError::Corrupt(e.to_string()));
        let mut goto = Vec::new();
        for g in &command.goto {
            goto.push(match g {
                Goto::Node(n) => (n.clone(), None),
                Goto::Send(send) => (
                    send.node.clone(),
                    Some((self.encode_state)(&send.arg).map_err(corrupt)?),
                ),
            });
        }
        Ok(PendingWrite {
            task_id: task.id.clone(),
            node: spec.names[task.node].to_string(),
            update: command
                .update
                .as_ref()
                .map(self.encode_update)
                .transpose()
                .map_err(corrupt)?,
            goto,
            interrupt: None,
        })
    }
}

/// An interrupted task's pending write: the interrupt, no update.
pub(crate) fn interrupt_write<S: State>(
    spec: &Spec<S>,
    task: &PregelTask<S>,
    interrupt: &Interrupt,
) -> PendingWrite {
    PendingWrite {
        task_id: task.id.clone(),
        node: spec.names[task.node].to_string(),
        update: None,
        goto: Vec::new(),
        interrupt: Some(interrupt.clone()),
    }
}
