//! `writer-reviewer`: an example of the agent runtime ([`agent_runtime::agents`]) — two
//! agent types that talk over Kafka until one approves the other's work.
//!
//! A caller sends the `writer` agent a brief ([`Brief`]: a subject, the points the text
//! must mention, a word limit). The writer drafts a text, sends it to the `reviewer`
//! agent with [`send_message`](agent_runtime::agents::AgentRuntime::send_message) — an
//! agent calling an agent, over Kafka, from inside its own handler — and revises the
//! draft from the review, round after round, until the reviewer approves or
//! `max_rounds` reviews have been done. It then replies to its caller with the
//! [`Outcome`]: the last draft, whether it was approved, every round and the agent ids
//! of the reviewers that answered.
//!
//! **There is no language model here.** Both agents follow fixed rules, so that a run is
//! the same every time and a test can check it: the reviewer lists the brief's points the
//! draft does not mention and whether it is over the word limit ([`review`]); the writer
//! starts with a draft that makes only the first point and runs long ([`first_draft`]),
//! then addresses exactly the feedback — adds a sentence per missing point, cuts
//! sentences when told the draft is too long ([`revise`]). The messaging is the real
//! thing: each request and reply is a Kafka record, read by a consumer group, answered
//! at least once. An LLM-backed writer would replace [`first_draft`] and [`revise`] by
//! model calls and keep the rest.
//!
//! ```no_run
//! use agent_runtime::kafka::KafkaSettings;
//! use tokio_util::sync::CancellationToken;
//! use writer_reviewer::{Brief, RunOptions, run};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = KafkaSettings::for_brokers("localhost:9092");
//! let brief: Brief = "Apache Kafka; must mention: partitions, offsets; at most 30 words".parse()?;
//! let outcome = run(&settings, &brief, &RunOptions::default(), CancellationToken::new()).await?;
//! print!("{outcome}"); // each round, then "approved after 2 rounds (writer writer-…)"
//! assert!(outcome.approved);
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - `brief`: [`Brief`], its text form `SUBJECT; must mention: A, B; at most N
//!   words`, and [`BriefError`].
//! - `reviewer`: the `reviewer` agent — its rules ([`review`] → [`Review`]) and
//!   [`register_reviewer`].
//! - `writer`: the `writer` agent — its rules ([`first_draft`], [`revise`]), its loop
//!   ([`write_with_reviews`] → [`Outcome`]) and [`register_writer`].
//! - `run`: [`run`] (the three runtimes in one process, one commission) and
//!   [`commission`] (the caller's half), with [`RunOptions`]; [`kafka_settings`] for the
//!   command.
//! - `error`: [`Error`] and [`Result`].

mod brief;
mod error;
mod reviewer;
mod run;
mod writer;

pub use brief::{Brief, BriefError, MAX_PHRASE_CHARS, MAX_POINTS, MAX_WORDS};
pub use error::{Error, Result};
pub use reviewer::{MAX_DRAFT_BYTES, REVIEWER, Review, ReviewRequest, register_reviewer, review};
pub use run::{RunOptions, commission, kafka_settings, run};
pub use writer::{
    Commission, Draft, MAX_ROUNDS, Outcome, Round, WRITER, first_draft, register_writer, revise,
    write_with_reviews,
};
