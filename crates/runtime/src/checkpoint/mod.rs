//! Durable checkpoints: [`PostgresSaver`], a PostgreSQL
//! [`Checkpointer`](agent_core::graph::Checkpointer) (LangGraph's `PostgresSaver`).
//!
//! A graph compiled with it saves one checkpoint per superstep of a run, keyed by
//! thread id, checkpoint id (a v7 UUID) and parent, and the pending writes of the tasks
//! that finished in a superstep that did not, so a crash mid-step does not run them
//! again. Any process connected to the same database can read the thread's state and
//! history, resume an interrupt or travel back in time.
//!
//! The state is not copied whole at every step: it is cut into content-addressed blobs
//! (one per top-level field, array fields in chunks of ~4 KiB), so a 50-message history
//! that does not change is stored once per thread, and an appended message stores only
//! the last chunk of the history again. The schema comes from the crate's
//! `migrations/postgres` ([`PostgresSaver::setup`]).

mod blob;
mod postgres;
mod row;

pub use postgres::PostgresSaver;
