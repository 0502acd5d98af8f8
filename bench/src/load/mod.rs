//! What the load generator sends, and when: [`post`] drives the HTTP API, [`topic`]
//! writes tasks straight onto the events topic. Both record every accepted task's send
//! time in a [`Sent`].

pub mod post;
pub mod topic;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
};

/// How tasks enter the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `POST /generate-task` from C concurrent clients: the whole pipeline, generator's
    /// LLM call included.
    Post,
    /// Tasks produced onto the events topic as fast as the producer takes them: the
    /// solver's capacity with a backlog (no HTTP, no generation LLM call).
    Topic,
}

impl Mode {
    /// `post` or `topic`, as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "post",
            Self::Topic => "topic",
        }
    }
}

/// Send times of the accepted tasks and the count of refused ones, shared by the
/// senders and the progress line.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    times: Arc<Mutex<HashMap<String, f64>>>,
    errors: Arc<AtomicUsize>,
}

impl Sent {
    /// Task `id` was accepted; it was sent at `at_ms` (ms since the epoch).
    pub fn accepted(&self, id: String, at_ms: f64) {
        self.lock().insert(id, at_ms);
    }

    /// One task was not accepted.
    pub fn refused(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Accepted tasks so far.
    pub fn accepted_count(&self) -> usize {
        self.lock().len()
    }

    /// Refused tasks so far.
    pub fn errors(&self) -> usize {
        self.errors.load(Ordering::Relaxed)
    }

    /// How many accepted tasks have a timestamp in `seen`.
    pub fn completed_in(&self, seen: &HashMap<String, i64>) -> usize {
        self.lock()
            .keys()
            .filter(|id| seen.contains_key(*id))
            .count()
    }

    /// The send times recorded.
    pub fn times(&self) -> HashMap<String, f64> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, f64>> {
        self.times.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
