//! Durable checkpoints: two [`Checkpointer`](agent_core::graph::Checkpointer)s of
//! LangGraph's, with one behaviour —
//!
//! - [`SqliteSaver`] (LangGraph's `SqliteSaver`): an SQLite file, nothing to install;
//!   the processes of one machine that open the file share it (`CHECKPOINTER=sqlite`,
//!   `make run-local`'s default);
//! - [`PostgresSaver`] (LangGraph's `PostgresSaver`): a PostgreSQL database, shared by
//!   every replica (`CHECKPOINTER=postgres`).
//!
//! A graph compiled with one saves one checkpoint per superstep of a run, keyed by
//! thread id, checkpoint id (a v7 UUID) and parent, and the pending writes of the tasks
//! that finished in a superstep that did not, so a crash mid-step does not run them
//! again. Any process using the same database can read the thread's state and history,
//! resume an interrupt or travel back in time.
//!
//! The state is not copied whole at every step: it is cut into content-addressed blobs
//! (one per top-level field, array fields in chunks of ~4 KiB), so a 50-message history
//! that does not change is stored once per thread, and an appended message stores only
//! the last chunk of the history again. The schemas come from the crate's
//! `migrations/sqlite` and `migrations/postgres` ([`SqliteSaver::setup`],
//! [`PostgresSaver::setup`]).
//!
//! # Layout
//!
//! - `blob`: how a state is cut into blobs and put back together.
//! - `row`: a checkpoint as the columns of its row, and pending writes as JSON — what
//!   both savers store.
//! - `sqlite`, `postgres`: the savers, each its SQL.

mod blob;
mod postgres;
mod row;
mod sqlite;

pub use postgres::PostgresSaver;
pub use sqlite::SqliteSaver;
