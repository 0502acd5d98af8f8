//! [`InMemorySaver`]: a [`Checkpointer`] keeping its threads in memory (LangGraph's
//! `langgraph.checkpoint.memory.InMemorySaver`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use futures::future::BoxFuture;

use super::{
    CHECKPOINT_VERSION, Checkpoint, CheckpointError, CheckpointTuple, Checkpointer, PendingWrite,
};

/// One thread's checkpoints and the pending writes recorded against them.
#[derive(Default)]
struct Thread {
    /// Checkpoints, oldest first.
    checkpoints: Vec<Checkpoint>,
    writes: HashMap<String, Vec<PendingWrite>>,
}

/// A [`Checkpointer`] in memory (LangGraph's `InMemorySaver`): for tests, and for runs
/// that must survive an interrupt but not the process. Keeps the checkpoints as values
/// (no byte encoding) but checks their format version on load, as a database-backed
/// saver does. Cheap to clone; clones share the store.
///
/// ```
/// use std::sync::Arc;
/// use agent_core::graph::{Command, END, InMemorySaver, RunConfig, START, StateGraph, reducer::{Append, Overwrite}};
/// agent_core::state! {
///     /// Example state.
///     pub struct S / U {
///         /// Inputs.
///         pub items: Vec<u32> => Overwrite,
///         /// One input.
///         pub x: u32 => Overwrite,
///         /// Outputs, appended.
///         pub out: Vec<String> => Append,
///     }
/// }
/// # futures::executor::block_on(async {
/// let mut g = StateGraph::new();
/// g.add_node("a", |_: S, _| async { Ok(U::default().out(vec!["a".to_owned()])) })
///     .add_node("b", |_: S, _| async { Ok(U::default().out(vec!["b".to_owned()])) })
///     .add_edge(START, "a")
///     .add_edge("a", "b")
///     .add_edge("b", END);
/// let app = g.compile_with_checkpointer(Arc::new(InMemorySaver::new()))?;
/// let thread = RunConfig::thread("conversation-1");
/// app.invoke_with(S::default(), thread.clone()).await?;
///
/// // Input, after `a`, after `b`: newest first.
/// let history = app.get_state_history(&thread).await?;
/// assert_eq!(history.len(), 3);
/// assert_eq!(history[0].values.out, ["a", "b"]);
///
/// // Time travel: edit the state after `a`, then run on from there (a fork).
/// let after_a = thread.clone().at_checkpoint(history[1].checkpoint_id.clone());
/// let edited = app.update_state(&after_a, U::default().out(vec!["edited".to_owned()]), None).await?;
/// let out = app.invoke_with(Command::default(), thread.clone().at_checkpoint(edited)).await?;
/// assert_eq!(out.out, ["a", "edited", "b"]);
/// # Ok::<(), agent_core::graph::GraphError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct InMemorySaver {
    threads: Arc<Mutex<HashMap<String, Thread>>>,
}

impl std::fmt::Debug for InMemorySaver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemorySaver").finish_non_exhaustive()
    }
}

impl InMemorySaver {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut HashMap<String, Thread>) -> Result<T, CheckpointError>,
    ) -> Result<T, CheckpointError> {
        let mut threads = self
            .threads
            .lock()
            .map_err(|_| CheckpointError::Backend("in-memory store poisoned".into()))?;
        f(&mut threads)
    }

    /// Forgets everything stored for `thread_id` (a finished task's thread, say).
    pub fn delete_thread(&self, thread_id: &str) {
        let _ = self.with(|threads| {
            threads.remove(thread_id);
            Ok(())
        });
    }

    /// How many threads are stored.
    pub fn thread_count(&self) -> usize {
        self.with(|threads| Ok(threads.len())).unwrap_or(0)
    }

    /// Edits the newest stored checkpoint of `thread_id` in place (tests of corrupt or
    /// incompatible data).
    pub fn tamper(&self, thread_id: &str, edit: impl FnOnce(&mut Checkpoint)) {
        let _ = self.with(|threads| {
            if let Some(last) = threads
                .get_mut(thread_id)
                .and_then(|t| t.checkpoints.last_mut())
            {
                edit(last);
            }
            Ok(())
        });
    }
}

impl Checkpointer for InMemorySaver {
    fn put(
        &self,
        thread_id: &str,
        checkpoint: Checkpoint,
    ) -> BoxFuture<'static, Result<(), CheckpointError>> {
        let result = self.with(|threads| {
            threads
                .entry(thread_id.to_owned())
                .or_default()
                .checkpoints
                .push(checkpoint);
            Ok(())
        });
        Box::pin(futures::future::ready(result))
    }

    fn put_writes(
        &self,
        thread_id: &str,
        checkpoint_id: &str,
        writes: Vec<PendingWrite>,
    ) -> BoxFuture<'static, Result<(), CheckpointError>> {
        let result = self.with(|threads| {
            let stored = threads
                .entry(thread_id.to_owned())
                .or_default()
                .writes
                .entry(checkpoint_id.to_owned())
                .or_default();
            for write in writes {
                stored.retain(|w| w.task_id != write.task_id);
                stored.push(write);
            }
            Ok(())
        });
        Box::pin(futures::future::ready(result))
    }

    fn get(
        &self,
        thread_id: &str,
        checkpoint_id: Option<&str>,
    ) -> BoxFuture<'static, Result<Option<CheckpointTuple>, CheckpointError>> {
        let result = self.with(|threads| {
            let Some(thread) = threads.get(thread_id) else {
                return Ok(None);
            };
            let found = match checkpoint_id {
                Some(id) => thread.checkpoints.iter().rev().find(|c| c.id == id),
                None => thread.checkpoints.last(),
            };
            match found {
                None => Ok(None),
                Some(checkpoint) => Ok(Some(CheckpointTuple {
                    checkpoint: checked(checkpoint)?,
                    pending_writes: thread
                        .writes
                        .get(&checkpoint.id)
                        .cloned()
                        .unwrap_or_default(),
                })),
            }
        });
        Box::pin(futures::future::ready(result))
    }

    fn list(
        &self,
        thread_id: &str,
        limit: Option<usize>,
    ) -> BoxFuture<'static, Result<Vec<Checkpoint>, CheckpointError>> {
        let result = self.with(|threads| {
            let Some(thread) = threads.get(thread_id) else {
                return Ok(Vec::new());
            };
            thread
                .checkpoints
                .iter()
                .rev()
                .take(limit.unwrap_or(usize::MAX))
                .map(checked)
                .collect()
        });
        Box::pin(futures::future::ready(result))
    }
}

/// A copy of `checkpoint` if this build reads its format version.
fn checked(checkpoint: &Checkpoint) -> Result<Checkpoint, CheckpointError> {
    if checkpoint.v == CHECKPOINT_VERSION {
        Ok(checkpoint.clone())
    } else {
        Err(CheckpointError::Incompatible {
            found: checkpoint.v,
            expected: CHECKPOINT_VERSION,
        })
    }
}
