//! The Pregel runtime: how a compiled graph runs, in supersteps — split as LangGraph's
//! `langgraph/pregel` package is.
//!
//! # Layout
//!
//! - [`compiled`]: [`CompiledGraph`] and its methods, [`RunConfig`], [`Input`],
//!   [`RunOutcome`] — the public API (`pregel/main.py`).
//! - [`spec`]: [`Spec`], the frozen graph: nodes by index, edges by [`Source`], joins.
//! - [`validate`]: compile-time checks: node names, entry point, paths to `END`
//!   (`_validate.py`).
//! - [`superstep`]: the superstep loop, one method per step, and its [`Cursor`](superstep::Cursor)
//!   (`_loop.py`).
//! - [`algo`]: which tasks run next, and merging writes through the reducers
//!   (`_algo.py`).
//! - [`runner`]: a step's tasks run concurrently, each with retries and a timeout
//!   (`_runner.py`, `_retry.py`).
//! - [`checkpoint_codec`]: the loop's cursor to a checkpoint and back, pending writes
//!   (`_checkpoint.py`).

mod algo;
mod checkpoint_codec;
mod compiled;
mod runner;
mod spec;
mod superstep;
mod validate;

pub(crate) use checkpoint_codec::Codec;
pub use compiled::{CompiledGraph, Input, RunConfig, RunOutcome};
pub(crate) use spec::{Edge, Join, Router, Source, Spec, Target};
pub(crate) use validate::{node_index, validate_graph};
