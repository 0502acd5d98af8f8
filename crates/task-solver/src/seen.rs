//! [`SeenTasks`]: one task id names one task.
//!
//! A task id is the task's identity everywhere: the thread its checkpoints live under,
//! the key of its result, the row of the results view. Two tasks sent under one id with
//! different bodies would both be solved and the view would show one's body with the
//! other's result. So the solver remembers a digest of each task body it took, by id:
//! the same body again is a redelivery (idempotent, resumed or answered from its
//! checkpoint); a different body is refused — the loop sends it to the dead-letter topic
//! with the reason.
//!
//! The memory is the last [`SEEN_CAPACITY`] task ids this replica took (the oldest
//! forgotten first). Tasks are keyed by id, so every delivery of one id lands on one
//! partition and so on one replica while it owns it. With a durable checkpointer the
//! stored checkpoints also hold each task's body — every replica's tasks with
//! `CHECKPOINTER=postgres`, those solved with the replica's own file with `sqlite` —
//! and a conflict with them is caught whatever this memory has forgotten (see
//! [`crate::worker::process`]).

use std::{
    collections::{HashMap, VecDeque},
    hash::{Hash, Hasher},
    sync::{Arc, Mutex, PoisonError},
};

use agent_core::task::Task;
use uuid::Uuid;

/// How many task ids are remembered (about 40 bytes each: ~4 MB).
pub const SEEN_CAPACITY: usize = 100_000;

/// What [`SeenTasks::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The id was not known; it now is, with this body.
    New,
    /// The id is known with this very body (a redelivery).
    Same,
    /// The id is known with another body.
    Conflict,
}

/// Task id → digest of the body first seen under it, for the last [`SEEN_CAPACITY`]
/// ids. Cheap to clone; clones share the memory.
#[derive(Debug, Clone, Default)]
pub struct SeenTasks {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    digests: HashMap<Uuid, u64>,
    order: VecDeque<Uuid>,
}

impl SeenTasks {
    /// Checks `task` against the body remembered under its id, and remembers it when new.
    pub fn check(&self, task: &Task) -> Seen {
        let digest = digest(task);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match inner.digests.get(&task.task_id) {
            Some(&known) if known == digest => Seen::Same,
            Some(_) => Seen::Conflict,
            None => {
                if inner.order.len() >= SEEN_CAPACITY
                    && let Some(oldest) = inner.order.pop_front()
                {
                    inner.digests.remove(&oldest);
                }
                inner.digests.insert(task.task_id, digest);
                inner.order.push_back(task.task_id);
                Seen::New
            }
        }
    }
}

/// A digest of the task's fields (its canonical JSON, hashed with SipHash).
fn digest(task: &Task) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(task)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_body_again_is_a_redelivery_and_another_body_a_conflict() {
        let seen = SeenTasks::default();
        let task = Task::new("name", "description", "").expect("task");
        assert_eq!(seen.check(&task), Seen::New);
        assert_eq!(seen.check(&task.clone()), Seen::Same);
        let other = Task {
            task_description: "something else".into(),
            ..task.clone()
        };
        assert_eq!(seen.check(&other), Seen::Conflict);
        assert_eq!(
            seen.check(&task),
            Seen::Same,
            "the first body stays the task"
        );
    }
}
