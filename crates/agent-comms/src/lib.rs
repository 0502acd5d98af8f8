//! agent-comms: the HTTP⇄Kafka bridge.
//!
//! # Layout
//!
//! - [`startup`]: [`App::build`](startup::App::build) — producer, topic reader, routes on
//!   port 8000, until the shutdown signal.
//! - [`routes`]: `POST /send_event` (publish any JSON to a topic) and
//!   `GET /last_message` (the newest message of a topic), plus `/health` and `/ready`.
//! - [`last_message`]: finds the newest message of a topic from its partitions'
//!   high-water marks.

pub mod last_message;
pub mod routes;
pub mod startup;

/// The service's name in logs, health and CloudEvents `source`.
pub const SERVICE: &str = "agent-comms";
/// The default HTTP port (the Python system's).
pub const DEFAULT_PORT: u16 = 8000;
