//! agent-comms: the HTTP⇄Kafka bridge.
//!
//! # Layout
//!
//! - [`startup`]: [`App::build`](startup::App::build) — producer, topic view, routes on
//!   port 8000; [`App::run_until_stopped`](startup::App::run_until_stopped) runs the
//!   view's follower and serves until the shutdown signal.
//! - [`routes`]: `POST /send_event` (publish any JSON to a topic; 413 over the
//!   producer's record limit) and `GET /last_message` (the newest message of a topic,
//!   from memory), plus `/health` and `/ready`.
//! - [`routes::openapi`]: the service's OpenAPI 3.1 document (`GET /openapi.json`, Swagger UI
//!   at `GET /docs`).
//! - [`policy`]: [`TopicPolicy`](policy::TopicPolicy) — `COMMS_PUBLISH_TOPICS` and
//!   `COMMS_READ_TOPICS`; internal and dead-letter topics never; a refusal is a 403.
//! - [`last_message`]: the view behind `GET /last_message` — the newest record of each
//!   followed topic, kept up to date by one background consumer outside any group.
//!   - [`last_message::view`]: [`LastMessages`](last_message::LastMessages), the
//!     request side: a read clones the topic's rendered record out of a `watch`; the
//!     first read of another topic adds it (at most 64) and waits for it to load.
//!   - [`last_message::follower`]: [`Follower`](last_message::Follower), the background
//!     task: looks topics up, assigns their partitions at the last record, follows new
//!     records, stops with the service.

pub mod last_message;
pub mod policy;
pub mod routes;
pub mod startup;

/// The service's name in logs, health and CloudEvents `source`.
pub const SERVICE: &str = "agent-comms";
/// The default HTTP port (the Python system's).
pub const DEFAULT_PORT: u16 = 8000;
