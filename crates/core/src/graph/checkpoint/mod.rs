//! Checkpoints: the state of a run after each superstep, saved under a thread id.
//!
//! As LangGraph's checkpointers: a [`Checkpointer`] stores [`Checkpoint`]s per thread
//! (each with its parent, so a thread's history is a chain that forks when an earlier
//! checkpoint is resumed — time travel) and the *pending writes* of tasks that finished in
//! a superstep that did not (a node failed or interrupted): on resume those tasks are not
//! run again. [`InMemorySaver`] (in `memory.rs`) keeps them in memory; `agent-runtime` has
//! a PostgreSQL one.
//!
//! Checkpoints are stored as versioned JSON ([`Checkpoint::encode`]); a corrupt or
//! incompatible one is a [`CheckpointError`], never a panic.

mod memory;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Interrupt;

pub use memory::InMemorySaver;

/// The checkpoint format version this build writes and reads.
pub const CHECKPOINT_VERSION: u32 = 1;

/// Why a checkpoint could not be saved or loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The storage failed (connection lost, query refused, …).
    #[error("checkpoint storage failed: {0}")]
    Backend(String),
    /// The stored bytes are not a checkpoint, or the state does not decode.
    #[error("corrupt checkpoint: {0}")]
    Corrupt(String),
    /// The checkpoint was written by an incompatible format version.
    #[error(
        "checkpoint format version {found} is not supported (this build reads version {expected})"
    )]
    Incompatible {
        /// The version found.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
}

/// Why a checkpoint was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointSource {
    /// The run's input, before the first superstep.
    Input,
    /// After a superstep.
    Loop,
    /// [`CompiledGraph::update_state`](super::CompiledGraph::update_state).
    Update,
}

/// A task to run in the next superstep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// `{step}:{node}:{index}`, unique within a thread's step.
    pub id: String,
    /// The node.
    pub node: String,
    /// Its own input state (a [`Send`](super::Send)), encoded; `None` reads the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg: Option<Value>,
}

/// The state of a run between two supersteps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version ([`CHECKPOINT_VERSION`]).
    pub v: u32,
    /// Unique and time-ordered (a v7 UUID).
    pub id: String,
    /// The checkpoint this one follows.
    pub parent_id: Option<String>,
    /// Supersteps done before this checkpoint in this run.
    pub step: usize,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// Why it was written.
    pub source: CheckpointSource,
    /// The state, encoded.
    pub state: Value,
    /// The tasks of the next superstep (empty: the run is done).
    pub next: Vec<TaskSpec>,
    /// For each fan-in edge, the sources that finished since its target last ran.
    #[serde(default)]
    pub joins: Vec<Vec<String>>,
    /// Resume values given so far to interrupted tasks of the next superstep, by task id.
    #[serde(default)]
    pub resumes: BTreeMap<String, Vec<Value>>,
}

impl Checkpoint {
    /// A new checkpoint id: a v7 UUID, so ids sort by time.
    pub fn new_id() -> String {
        uuid::Uuid::now_v7().to_string()
    }

    /// The stored form: JSON bytes carrying the format version.
    ///
    /// # Errors
    /// [`CheckpointError::Corrupt`] if the value cannot be encoded (not expected).
    pub fn encode(&self) -> Result<Vec<u8>, CheckpointError> {
        serde_json::to_vec(self).map_err(|e| CheckpointError::Corrupt(e.to_string()))
    }

    /// Reads a stored checkpoint.
    ///
    /// # Errors
    /// [`CheckpointError::Incompatible`] for another format version,
    /// [`CheckpointError::Corrupt`] for bytes that are not a checkpoint.
    pub fn decode(bytes: &[u8]) -> Result<Self, CheckpointError> {
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let version: Version = serde_json::from_slice(bytes)
            .map_err(|e| CheckpointError::Corrupt(format!("no format version: {e}")))?;
        if version.v != CHECKPOINT_VERSION {
            return Err(CheckpointError::Incompatible {
                found: version.v,
                expected: CHECKPOINT_VERSION,
            });
        }
        serde_json::from_slice(bytes).map_err(|e| CheckpointError::Corrupt(e.to_string()))
    }
}

/// The output of a task that finished in a superstep that did not complete, or its
/// interrupt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingWrite {
    /// The task.
    pub task_id: String,
    /// Its node.
    pub node: String,
    /// Its update, encoded.
    #[serde(default)]
    pub update: Option<Value>,
    /// Its command's destinations: node names, with an encoded input for a `Send`.
    #[serde(default)]
    pub goto: Vec<(String, Option<Value>)>,
    /// Set when the task interrupted instead of finishing.
    #[serde(default)]
    pub interrupt: Option<Interrupt>,
}

/// A saved checkpoint with the pending writes recorded against it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointTuple {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// Writes of tasks of its next superstep that finished (or interrupted).
    pub pending_writes: Vec<PendingWrite>,
}

/// Storage of checkpoints by thread id (LangGraph's `BaseCheckpointSaver`).
///
/// Futures are `'static` so a save can run while the next superstep does (durability
/// mode `Async`): implementations clone what they need (a pool, an `Arc`).
pub trait Checkpointer: Send + Sync {
    /// Saves `checkpoint` as the newest of `thread_id`.
    fn put(
        &self,
        thread_id: &str,
        checkpoint: Checkpoint,
    ) -> BoxFuture<'static, Result<(), CheckpointError>>;

    /// Records `writes` against checkpoint `checkpoint_id` of `thread_id` (adding to, or
    /// replacing by task id, those already there).
    fn put_writes(
        &self,
        thread_id: &str,
        checkpoint_id: &str,
        writes: Vec<PendingWrite>,
    ) -> BoxFuture<'static, Result<(), CheckpointError>>;

    /// The checkpoint `checkpoint_id` of `thread_id`, or its newest when `None`, with its
    /// pending writes; `None` when there is none.
    fn get(
        &self,
        thread_id: &str,
        checkpoint_id: Option<&str>,
    ) -> BoxFuture<'static, Result<Option<CheckpointTuple>, CheckpointError>>;

    /// The checkpoints of `thread_id`, newest first, at most `limit`.
    fn list(
        &self,
        thread_id: &str,
        limit: Option<usize>,
    ) -> BoxFuture<'static, Result<Vec<Checkpoint>, CheckpointError>>;
}

/// When checkpoints are written (LangGraph's durability modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After each superstep, before the next starts (the default: a crash loses nothing).
    #[default]
    Sync,
    /// After each superstep, while the next runs (faster; a crash may lose the last step).
    Async,
    /// Only when the run ends, is interrupted or fails (fastest; a crash loses the run).
    Exit,
}

/// A thread's state at one checkpoint (LangGraph's `StateSnapshot`).
#[derive(Debug, Clone)]
pub struct StateSnapshot<S> {
    /// The state.
    pub values: S,
    /// The nodes of the next superstep (empty: done).
    pub next: Vec<String>,
    /// The checkpoint id (resume from it with [`RunConfig::checkpoint_id`](super::RunConfig)).
    pub checkpoint_id: String,
    /// Its parent.
    pub parent_id: Option<String>,
    /// Supersteps done.
    pub step: usize,
    /// Why it was written.
    pub source: CheckpointSource,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Interrupts waiting for a resume value.
    pub interrupts: Vec<Interrupt>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(v: u32) -> Checkpoint {
        Checkpoint {
            v,
            id: Checkpoint::new_id(),
            parent_id: None,
            step: 0,
            created_at: Utc::now(),
            source: CheckpointSource::Input,
            state: serde_json::json!({"a": 1}),
            next: vec![],
            joins: vec![],
            resumes: BTreeMap::new(),
        }
    }

    #[test]
    fn encoding_round_trips_and_checks_the_version() {
        let c = checkpoint(CHECKPOINT_VERSION);
        assert_eq!(
            Checkpoint::decode(&c.encode().expect("encodes")).expect("decodes"),
            c
        );
        let future = checkpoint(CHECKPOINT_VERSION + 1)
            .encode()
            .expect("encodes");
        assert_eq!(
            Checkpoint::decode(&future).expect_err("newer format"),
            CheckpointError::Incompatible {
                found: CHECKPOINT_VERSION + 1,
                expected: CHECKPOINT_VERSION
            }
        );
        for junk in [&b"garbage"[..], b"{}", br#"{"v": 1}"#] {
            assert!(
                matches!(Checkpoint::decode(junk), Err(CheckpointError::Corrupt(_))),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn ids_sort_by_time() {
        let a = Checkpoint::new_id();
        let b = Checkpoint::new_id();
        assert!(a < b);
    }
}
