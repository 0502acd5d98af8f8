//! Human review: resuming a task paused for review ([`crate::worker::resume`]); a
//! resume is told from a task by [`agent_runtime::kafka::headers::is_resume`].
//!
//! A task with `human_review` pauses after `plan` (the solver graph's `review` node
//! calls `interrupt({"plan": …})`): its checkpoints hold the pause, an `interrupted`
//! result tells the view, its offset is committed and nothing of it stays in memory. A
//! person's [`ResumeRequest`](agent_core::task::ResumeRequest) comes on the events topic keyed by the task id, so the
//! solver that owns the task's partition reads it — whichever replica that is now, and
//! however long after — and runs the thread on from its checkpoint with
//! `Command::resume(review)` (LangGraph's human-in-the-loop).
//!
//! - **Strict.** A request naming an interrupt the task no longer waits at (it was
//!   resumed, or paused again since) takes no effect. One resume of a task runs at a time
//!   on a replica ([`ReviewLocks`]), and the state is read under the lock, so of two
//!   resumes of one interrupt exactly one runs the task on.
//! - **Crash-safe.** A resume redelivered after a crash finds the run past its pause and
//!   carries it on from its last checkpoint (no node that finished runs again); one that
//!   finds the task finished does nothing.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

use uuid::Uuid;

/// One lock per task being resumed on this replica; a task's lock is freed with its
/// last holder.
#[derive(Debug, Clone, Default)]
pub struct ReviewLocks(Arc<Mutex<HashMap<Uuid, Weak<tokio::sync::Mutex<()>>>>>);

impl ReviewLocks {
    /// Waits for `task_id`'s lock.
    pub async fn lock(&self, task_id: Uuid) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            locks.retain(|_, lock| lock.strong_count() > 0);
            match locks.get(&task_id).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(task_id, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}
