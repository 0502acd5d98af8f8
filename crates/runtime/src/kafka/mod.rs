//! Kafka: topic names, client properties (TLS and SASL included), producer, at-least-once
//! consumer loop, CloudEvents headers, topic creation and the broker watch behind `/health`.
//!
//! Values are JSON; keys are task ids, so every message of one task lands on one
//! partition, in order. Headers carry CloudEvents binary-mode attributes and a W3C
//! `traceparent` ([`headers`]).

pub mod admin;
pub mod consumer;
pub mod headers;
pub mod offsets;
pub mod producer;
pub mod progress;
pub mod security;
pub mod watch;

pub use admin::{ensure_service_topics, ensure_topics};
pub use consumer::{ConsumerOptions, Outcome, Ownership, run_at_least_once};
pub use headers::CloudEvent;
pub use producer::{Delivery, Producer};
pub use progress::{ConsumerProgress, Stall};
pub use security::{SaslMechanism, SecurityProtocol};
pub use watch::BrokerWatch;

/// The largest record (key, value and headers) the services build on their own account
/// — results and dead-letter records — in bytes (900 KiB): under what the producer
/// accepts ([`Producer::MAX_RECORD_BYTES`], just under 1 MB) with room for the headers
/// added around them.
pub const MAX_OWN_RECORD_BYTES: usize = 900 * 1024;

use rdkafka::ClientConfig;
use secrecy::ExposeSecret;

use crate::config::Settings;

/// The topic names in force (see the README's Kafka contract).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Topics {
    /// Tasks: `KAFKA_TOPIC`, default `{prefix}-langgraph-agent-events`.
    pub events: String,
    /// Results: `KAFKA_RESULTS_TOPIC`, default `{prefix}-langgraph-task-results`.
    pub results: String,
    /// Poison messages: `KAFKA_DEAD_LETTER_TOPIC`, default `{prefix}-langgraph-dead-letter`.
    pub dead_letter: String,
}

impl Topics {
    /// Topic names from a prefix and optional overrides.
    pub fn new(
        prefix: &str,
        events: Option<String>,
        results: Option<String>,
        dead_letter: Option<String>,
    ) -> Self {
        let named = |suffix: &str| {
            if prefix.is_empty() {
                format!("langgraph-{suffix}")
            } else {
                format!("{prefix}-langgraph-{suffix}")
            }
        };
        Self {
            events: events.unwrap_or_else(|| named("agent-events")),
            results: results.unwrap_or_else(|| named("task-results")),
            dead_letter: dead_letter.unwrap_or_else(|| named("dead-letter")),
        }
    }

    /// All three names.
    pub fn all(&self) -> [&str; 3] {
        [&self.events, &self.results, &self.dead_letter]
    }
}

/// Kafka's rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The librdkafka properties shared by every client: bootstrap servers, client id and
/// security.
///
/// | setting | property |
/// |---|---|
/// | `KAFKA_SECURITY_PROTOCOL` | `security.protocol` (always set; default `PLAINTEXT`) |
/// | `KAFKA_SASL_MECHANISM` | `sasl.mechanism`, with a `SASL_*` protocol (default `SCRAM-SHA-512`) |
/// | `KAFKA_SASL_USERNAME` | `sasl.username`, with a `SASL_*` protocol |
/// | `KAFKA_SASL_PASSWORD` | `sasl.password`, with a `SASL_*` protocol |
/// | `KAFKA_SSL_CA_LOCATION` | `ssl.ca.location`, with `SSL` or `SASL_SSL`; unset, librdkafka trusts the system's CA store |
///
/// The result holds the SASL password: do not log it. (rdkafka leaves `sasl.password`
/// out of `ClientConfig`'s `Debug`; a test here keeps it so.)
pub fn client_config(settings: &Settings, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.kafka_bootstrap_servers)
        .set("client.id", client_id)
        // Topics are made at start-up or by the chart's topics job, never by a client
        // publishing to or reading from a name (librdkafka's producers default to true).
        .set("allow.auto.create.topics", "false")
        // Fail fast on a dead address rather than retrying DNS for minutes.
        .set("socket.connection.setup.timeout.ms", "10000");
    let protocol = settings.kafka_security_protocol;
    config.set("security.protocol", protocol.as_str());
    if protocol.is_sasl() {
        config.set("sasl.mechanism", settings.sasl_mechanism().as_str());
        if let Some(username) = &settings.kafka_sasl_username {
            config.set("sasl.username", username);
        }
        if let Some(password) = &settings.kafka_sasl_password {
            config.set("sasl.password", password.expose_secret());
        }
    }
    if protocol.is_tls()
        && let Some(ca) = &settings.kafka_ssl_ca_location
    {
        config.set("ssl.ca.location", ca);
    }
    config
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rdkafka::producer::BaseProducer;

    use super::*;

    const PASSWORD: &str = "pa55-w0rd-secret";

    fn settings(vars: &[(&str, &str)]) -> Settings {
        let mut all = vec![("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")];
        all.extend_from_slice(vars);
        Settings::from_vars(all).expect("valid settings")
    }

    /// The security properties of `client_config`, in order.
    fn security_properties(settings: &Settings) -> BTreeMap<String, String> {
        let config = client_config(settings, "test");
        [
            "security.protocol",
            "sasl.mechanism",
            "sasl.username",
            "sasl.password",
            "ssl.ca.location",
        ]
        .into_iter()
        .filter_map(|key| config.get(key).map(|v| (key.to_owned(), v.to_owned())))
        .collect()
    }

    fn properties(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn plaintext_sets_only_the_protocol() {
        assert_eq!(
            security_properties(&settings(&[])),
            properties(&[("security.protocol", "PLAINTEXT")])
        );
    }

    #[test]
    fn ssl_sets_the_protocol_and_the_ca_when_given() {
        assert_eq!(
            security_properties(&settings(&[("KAFKA_SECURITY_PROTOCOL", "ssl")])),
            properties(&[("security.protocol", "SSL")])
        );
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        assert_eq!(
            security_properties(&settings(&[
                ("KAFKA_SECURITY_PROTOCOL", "SSL"),
                ("KAFKA_SSL_CA_LOCATION", ca),
            ])),
            properties(&[("security.protocol", "SSL"), ("ssl.ca.location", ca)])
        );
    }

    #[test]
    fn sasl_sets_mechanism_and_credentials() {
        let sasl_ssl = settings(&[
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_USERNAME", "svc"),
            ("KAFKA_SASL_PASSWORD", PASSWORD),
            ("KAFKA_SSL_CA_LOCATION", "probe"),
        ]);
        assert_eq!(
            security_properties(&sasl_ssl),
            properties(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", "svc"),
                ("sasl.password", PASSWORD),
                ("ssl.ca.location", "probe"),
            ])
        );
        let sasl_plaintext = settings(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "plain"),
            ("KAFKA_SASL_USERNAME", "svc"),
            ("KAFKA_SASL_PASSWORD", PASSWORD),
        ]);
        assert_eq!(
            security_properties(&sasl_plaintext),
            properties(&[
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", "PLAIN"),
                ("sasl.username", "svc"),
                ("sasl.password", PASSWORD),
            ])
        );
    }

    #[test]
    fn the_password_stays_out_of_the_client_configs_debug() {
        let s = settings(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_USERNAME", "svc"),
            ("KAFKA_SASL_PASSWORD", PASSWORD),
        ]);
        let config = client_config(&s, "test");
        for shown in [format!("{config:?}"), format!("{:?}", config.config_map())] {
            assert!(shown.contains("SASL_SSL"), "{shown}");
            assert!(!shown.contains(PASSWORD), "secret leaked: {shown}");
        }
    }

    #[test]
    fn librdkafka_is_built_with_tls_plain_and_scram() {
        let native = ClientConfig::new()
            .create_native_config()
            .expect("a native config");
        let features = native.get("builtin.features").expect("builtin.features");
        for feature in ["ssl", "sasl_plain", "sasl_scram"] {
            assert!(
                features.split(',').any(|f| f == feature),
                "librdkafka lacks {feature}: {features}"
            );
        }
    }

    #[test]
    fn librdkafka_accepts_every_protocol_and_mechanism() {
        for protocol in SecurityProtocol::ALL {
            let mechanisms: &[Option<SaslMechanism>] = if protocol.is_sasl() {
                &[
                    Some(SaslMechanism::Plain),
                    Some(SaslMechanism::ScramSha256),
                    Some(SaslMechanism::ScramSha512),
                ]
            } else {
                &[None]
            };
            for mechanism in mechanisms {
                let s = Settings {
                    kafka_bootstrap_servers: "127.0.0.1:1".into(),
                    kafka_security_protocol: protocol,
                    kafka_sasl_mechanism: *mechanism,
                    kafka_sasl_username: protocol.is_sasl().then(|| "svc".into()),
                    kafka_sasl_password: protocol.is_sasl().then(|| PASSWORD.into()),
                    ..Settings::default()
                };
                s.validate().expect("valid settings");
                let created: std::result::Result<BaseProducer, _> =
                    client_config(&s, "test").create();
                if let Err(err) = created {
                    panic!("librdkafka refused {protocol} {mechanism:?}: {err}");
                }
            }
        }
    }
}
