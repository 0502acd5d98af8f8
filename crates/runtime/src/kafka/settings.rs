//! [`KafkaSettings`]: the `KAFKA_*` section of the settings, its checks, and the
//! librdkafka properties every client of the services shares.
//!
//! The section is read by [`crate::config`] from the environment (the variables are
//! listed on each field) and passed to every Kafka client: [`Producer`](super::Producer),
//! the consumer loop, the [`TopicReader`](super::TopicReader) and topic creation. Nothing
//! in this module reads the environment itself.

use std::{path::Path, time::Duration};

use rdkafka::ClientConfig;
use secrecy::{ExposeSecret, SecretString};

use super::{SaslMechanism, SecurityProtocol, Topics, valid_topic_name};
use crate::{Error, Result};

/// The Kafka section of the settings (`KAFKA_*`): where the brokers are, the topic names,
/// how topics are created, the clients' timeouts, and how they authenticate.
///
/// [`KafkaSettings::default`] is what an empty environment gives.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `KAFKA_BOOTSTRAP_SERVERS`: comma-separated `host:port`s; default `localhost:9092`.
    pub bootstrap_servers: String,
    /// The topic names in force: `KAFKA_TOPIC`, `KAFKA_RESULTS_TOPIC`,
    /// `KAFKA_DEAD_LETTER_TOPIC`, each defaulting to a name under `KAFKA_TOPIC_PREFIX`
    /// (default `dev`).
    pub topics: Topics,
    /// `KAFKA_TOPIC_PREFIX`: the prefix [`KafkaSettings::topics`] were made from where
    /// not given whole; default `dev`.
    pub topic_prefix: String,
    /// `KAFKA_PARTITIONS`: partitions of topics created at start-up (at least 1); default
    /// 3.
    pub partitions: i32,
    /// `KAFKA_REPLICATION_FACTOR`: replication of topics created at start-up (at least 1);
    /// default 1.
    pub replication_factor: i32,
    /// `KAFKA_SESSION_TIMEOUT_MS`: the consumer-group session timeout (at least 1 s);
    /// default 10 s.
    pub session_timeout: Duration,
    /// `KAFKA_PRODUCE_TIMEOUT_MS`: how long a publish may wait for the broker's
    /// acknowledgement before it fails (and `POST /generate-task` answers 503; at least
    /// 100 ms); default 10 s.
    pub produce_timeout: Duration,
    /// `KAFKA_FETCH_WAIT_MAX_MS`: how long the broker may hold a fetch that finds nothing
    /// new (librdkafka's `fetch.wait.max.ms`, 1 to 5000 ms); default 10 ms.
    /// Kafka answers a waiting fetch as soon as data arrives, so there a longer wait
    /// (500 ms) only saves idle fetches; a broker that answers only when the wait runs out
    /// (Tansu) adds up to this to every task's latency.
    pub fetch_wait_max: Duration,
    /// `KAFKA_LINGER_MS`: how long the producer holds a message to batch it with others
    /// (librdkafka's `linger.ms`, at most 1000 ms); default 0: every publish waits for
    /// its acknowledgement, and under load messages still batch while earlier requests
    /// are in flight.
    pub linger: Duration,
    /// `KAFKA_SECURITY_PROTOCOL`: `PLAINTEXT` (default), `SSL`, `SASL_PLAINTEXT` or
    /// `SASL_SSL`, in any case.
    pub security_protocol: SecurityProtocol,
    /// `KAFKA_SASL_MECHANISM`: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`, in any case;
    /// only with a `SASL_*` protocol, where it defaults to `SCRAM-SHA-512`
    /// ([`KafkaSettings::mechanism`]).
    pub sasl_mechanism: Option<SaslMechanism>,
    /// `KAFKA_SASL_USERNAME`: required with a `SASL_*` protocol, refused without one.
    pub sasl_username: Option<String>,
    /// `KAFKA_SASL_PASSWORD` (secret): required with a `SASL_*` protocol, refused without
    /// one.
    pub sasl_password: Option<SecretString>,
    /// `KAFKA_SSL_CA_LOCATION`: a PEM CA bundle (file or directory, or librdkafka's
    /// `probe`) to trust instead of the system's CA store; only with `SSL` or `SASL_SSL`.
    pub ssl_ca_location: Option<String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            bootstrap_servers: "localhost:9092".into(),
            topics: Topics::new("dev", None, None, None, None),
            topic_prefix: "dev".into(),
            partitions: 3,
            replication_factor: 1,
            session_timeout: Duration::from_secs(10),
            produce_timeout: Duration::from_secs(10),
            fetch_wait_max: Duration::from_millis(10),
            linger: Duration::ZERO,
            security_protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
        }
    }
}

impl KafkaSettings {
    /// Checks ranges, topic names, and that the security settings fit together:
    /// credentials with `SASL_*` and only there, a CA only with TLS and only one that
    /// exists.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable (never quoting a secret).
    pub fn validate(&self) -> Result<()> {
        let bad = |var: &str, why: &str| Err(Error::Config(format!("{var} {why}")));
        if self.bootstrap_servers.trim().is_empty() {
            return bad("KAFKA_BOOTSTRAP_SERVERS", "must not be empty");
        }
        if self.partitions < 1 {
            return bad("KAFKA_PARTITIONS", "must be at least 1");
        }
        if self.replication_factor < 1 {
            return bad("KAFKA_REPLICATION_FACTOR", "must be at least 1");
        }
        if self.session_timeout < Duration::from_secs(1) {
            return bad("KAFKA_SESSION_TIMEOUT_MS", "must be at least 1000");
        }
        if self.produce_timeout < Duration::from_millis(100) {
            return bad("KAFKA_PRODUCE_TIMEOUT_MS", "must be at least 100");
        }
        if !(Duration::from_millis(1)..=Duration::from_millis(5000)).contains(&self.fetch_wait_max)
        {
            return bad("KAFKA_FETCH_WAIT_MAX_MS", "must be from 1 to 5000");
        }
        if self.linger > Duration::from_secs(1) {
            return bad("KAFKA_LINGER_MS", "must be at most 1000");
        }
        self.validate_security()?;
        // A name equal to the one the prefix makes is blamed on the prefix.
        let made = Topics::new(&self.topic_prefix, None, None, None, None);
        for (var, topic, made) in [
            ("KAFKA_TOPIC", &self.topics.events, &made.events),
            ("KAFKA_RESULTS_TOPIC", &self.topics.results, &made.results),
            (
                "KAFKA_DEAD_LETTER_TOPIC",
                &self.topics.dead_letter,
                &made.dead_letter,
            ),
            (
                "KAFKA_PROGRESS_TOPIC",
                &self.topics.progress,
                &made.progress,
            ),
        ] {
            if !valid_topic_name(topic) {
                let var = if topic == made {
                    "KAFKA_TOPIC_PREFIX"
                } else {
                    var
                };
                return bad(
                    var,
                    "must be 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' or '-'",
                );
            }
        }
        Ok(())
    }

    /// The security half of [`KafkaSettings::validate`].
    fn validate_security(&self) -> Result<()> {
        let bad = |var: &str, why: String| Err(Error::Config(format!("{var} {why}")));
        let protocol = self.security_protocol;
        if protocol.is_sasl() {
            if self.sasl_username.is_none() {
                return bad(
                    "KAFKA_SASL_USERNAME",
                    format!("must be set when KAFKA_SECURITY_PROTOCOL is {protocol}"),
                );
            }
            if self.sasl_password.is_none() {
                return bad(
                    "KAFKA_SASL_PASSWORD",
                    format!("must be set when KAFKA_SECURITY_PROTOCOL is {protocol}"),
                );
            }
        } else {
            for (var, given) in [
                ("KAFKA_SASL_MECHANISM", self.sasl_mechanism.is_some()),
                ("KAFKA_SASL_USERNAME", self.sasl_username.is_some()),
                ("KAFKA_SASL_PASSWORD", self.sasl_password.is_some()),
            ] {
                if given {
                    return bad(
                        var,
                        format!(
                            "is set, but KAFKA_SECURITY_PROTOCOL is {protocol}: SASL needs \
                             SASL_PLAINTEXT or SASL_SSL"
                        ),
                    );
                }
            }
        }
        if let Some(ca) = &self.ssl_ca_location {
            if !protocol.is_tls() {
                return bad(
                    "KAFKA_SSL_CA_LOCATION",
                    format!(
                        "is set, but KAFKA_SECURITY_PROTOCOL is {protocol}: a CA is used only \
                         with SSL or SASL_SSL"
                    ),
                );
            }
            if ca != "probe" && !Path::new(ca).exists() {
                return bad(
                    "KAFKA_SSL_CA_LOCATION",
                    format!("names no file or directory: {ca}"),
                );
            }
        }
        Ok(())
    }

    /// The SASL mechanism in force: `KAFKA_SASL_MECHANISM`, else `SCRAM-SHA-512`.
    pub fn mechanism(&self) -> SaslMechanism {
        self.sasl_mechanism.unwrap_or_default()
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
    pub fn client_config(&self, client_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", client_id)
            // Topics are made at start-up or by the chart's topics job, never by a client
            // publishing to or reading from a name (librdkafka's producers default to true).
            .set("allow.auto.create.topics", "false")
            // Fail fast on a dead address rather than retrying DNS for minutes.
            .set("socket.connection.setup.timeout.ms", "10000");
        let protocol = self.security_protocol;
        config.set("security.protocol", protocol.as_str());
        if protocol.is_sasl() {
            config.set("sasl.mechanism", self.mechanism().as_str());
            if let Some(username) = &self.sasl_username {
                config.set("sasl.username", username);
            }
            if let Some(password) = &self.sasl_password {
                config.set("sasl.password", password.expose_secret());
            }
        }
        if protocol.is_tls()
            && let Some(ca) = &self.ssl_ca_location
        {
            config.set("ssl.ca.location", ca);
        }
        config
    }

    /// The settings of a client of the brokers at `bootstrap_servers` with every other
    /// setting at its default (tests and tools).
    pub fn for_brokers(bootstrap_servers: &str) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.to_owned(),
            ..Self::default()
        }
    }
}

/// Milliseconds of `duration` as librdkafka wants them, saturating at `u32::MAX`.
pub(crate) fn millis(duration: Duration) -> String {
    u32::try_from(duration.as_millis())
        .unwrap_or(u32::MAX)
        .to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rdkafka::producer::BaseProducer;

    use super::*;

    const PASSWORD: &str = "pa55-w0rd-secret";

    /// Settings of `protocol` with `mechanism`, the test credentials when SASL, and `ca`.
    fn settings(
        protocol: SecurityProtocol,
        mechanism: Option<SaslMechanism>,
        ca: Option<&str>,
    ) -> KafkaSettings {
        KafkaSettings {
            security_protocol: protocol,
            sasl_mechanism: mechanism,
            sasl_username: protocol.is_sasl().then(|| "svc".into()),
            sasl_password: protocol.is_sasl().then(|| PASSWORD.into()),
            ssl_ca_location: ca.map(Into::into),
            ..KafkaSettings::for_brokers("127.0.0.1:1")
        }
    }

    /// The security properties of `client_config`, in order.
    fn security_properties(settings: &KafkaSettings) -> BTreeMap<String, String> {
        let config = settings.client_config("test");
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
            security_properties(&settings(SecurityProtocol::Plaintext, None, None)),
            properties(&[("security.protocol", "PLAINTEXT")])
        );
    }

    #[test]
    fn ssl_sets_the_protocol_and_the_ca_when_given() {
        assert_eq!(
            security_properties(&settings(SecurityProtocol::Ssl, None, None)),
            properties(&[("security.protocol", "SSL")])
        );
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        assert_eq!(
            security_properties(&settings(SecurityProtocol::Ssl, None, Some(ca))),
            properties(&[("security.protocol", "SSL"), ("ssl.ca.location", ca)])
        );
    }

    #[test]
    fn sasl_sets_mechanism_and_credentials() {
        let sasl_ssl = settings(SecurityProtocol::SaslSsl, None, Some("probe"));
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
        let sasl_plaintext = settings(
            SecurityProtocol::SaslPlaintext,
            Some(SaslMechanism::Plain),
            None,
        );
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
        let s = settings(SecurityProtocol::SaslSsl, None, None);
        let config = s.client_config("test");
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
                let s = settings(protocol, *mechanism, None);
                s.validate().expect("valid settings");
                let created: std::result::Result<BaseProducer, _> =
                    s.client_config("test").create();
                if let Err(err) = created {
                    panic!("librdkafka refused {protocol} {mechanism:?}: {err}");
                }
            }
        }
    }
}
