//! The end-to-end tests, one module per area, in one test binary (so the harness and the
//! three services are linked once, not sixteen times). Each test starts its own Tansu
//! broker on a free port, an OpenAI stand-in where it needs one, and the three services
//! in-process (see the `e2e` harness crate: `Broker`, `LlmStandIn`, `System`).
//!
//! nextest names a test `<module>::<test>` (e.g. `crash::sigterm_under_load_…`);
//! `.config/nextest.toml` selects the crash tests with `test(/^crash::/)`.

mod access;
mod agent_requests;
mod agents;
mod bad_input;
mod broker_down;
mod broker_pause;
mod browser;
mod contract;
mod crash;
mod examples;
mod faults;
mod hostile_model;
mod http_limits;
mod human_review;
mod last_message;
mod llm_faults;
mod llm_stream;
mod local_model;
mod metrics;
mod pipeline;
mod results_view;
mod review;
mod secure_kafka;
mod streams;
mod task_identity;
mod traces;
