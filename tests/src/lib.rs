//! Test harness for the end-to-end tests: a real Kafka-protocol broker (Tansu) on a free
//! port, an OpenAI stand-in (wiremock) where a test needs exact answers or faults, and the
//! three services started in-process on port 0.
//!
//! The tests themselves are modules of one test binary, one per area:
//! `tests/tests/e2e/main.rs` and `tests/tests/e2e/<area>.rs`.
//!
//! # Layout
//!
//! - [`Broker`]: a Tansu broker process, killed on drop; it can be paused (SIGSTOP) and
//!   resumed (SIGCONT) to play a broker outage.
//! - [`LlmStandIn`]: an OpenAI-compatible HTTP stand-in with canned answers or faults.
//! - [`System`]: task-generator, agent-comms and task-solver running against a broker and
//!   a model, with an HTTP client; [`test_settings`] for a test that runs a service
//!   itself.
//! - [`routes`]: a method of [`System`] per route (`generate_task`, `task_result`,
//!   `task_results`, `send_event`, `last_message`, `health`, `ready`, and polls of the
//!   results view), each answering an [`Answer`] with the status, the JSON body and the
//!   body read as the route's type ([`TaskView`], [`LastMessage`], …).
//! - [`start_agent`] and [`agent_settings`]: an agent runtime on a test broker.
//! - [`raw`]: raw HTTP/1.1 on a socket, for requests no well-behaved client sends.
//! - [`OtlpReceiver`]: an in-process OTLP/HTTP trace receiver, keeping the spans the
//!   services export.
//! - [`Browser`]: headless Chromium over WebDriver (chromedriver), skipped loudly when it
//!   is not installed (a failure under `CI=true`); [`artifacts_dir`] for the screenshots
//!   a test leaves.
//!
//! Tansu comes from the project's venv (`scripts/bootstrap.sh`, run by `make test`):
//! `$TANSU_BIN`, else `$LGK_VENV` or `<repo>/.venv`.

mod agents;
mod broker;
mod browser;
mod host;
mod kafka;
mod llm;
mod otlp;
mod postgres;
pub mod raw;
pub mod routes;
mod solver_process;
pub mod sse;
mod system;

pub use agents::{agent_settings, start_agent};
pub use broker::Broker;
pub use browser::{Browser, artifacts_dir};
pub use host::{free_port, repo_root, site_package_file, venv, wait_for_port};
pub use kafka::{produce_tasks, read_topic, read_topic_settled};
pub use llm::{LlmStandIn, STANDIN_ANSWER, STANDIN_TASK, completion, event_stream, openai_error};
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use postgres::{FreshDatabase, postgres_or_skip};
pub use routes::{
    Answer, BrokerCheck, Delivery, GeneratedTask, Health, LastMessage, Resuming, TaskResults,
    TaskView, get_json,
};
pub use solver_process::{ServiceProcess, SolverProcess, service_binary, solver_binary};
pub use system::{System, scratch_dir, test_settings, wait_until_healthy};
