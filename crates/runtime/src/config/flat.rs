//! The private flat layer: every variable of today as one field, read by `config`, then
//! sorted into [`Settings`]' typed sections. Keeping it flat keeps every variable's name
//! and meaning unchanged whatever section it lands in.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::{
    CheckpointerKind, CommsSettings, Settings, SolverSettings, ViewSettings,
    parse::{non_empty, non_empty_secret},
};
use crate::{
    Result,
    http::{HttpLimits, HttpSettings, RateLimitSettings},
    kafka::{KafkaSettings, SaslMechanism, SecurityProtocol, Topics},
    llm::LlmSettings,
};

/// Settings read as the text given, never parsed as a number or boolean (the
/// environment source parses `0123` as the number 123 and `TRUE` as `true`).
pub(super) const VERBATIM: [&str; 5] = [
    "api_keys",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_ca_location",
    "openai_api_key",
];

/// Every setting of every service, flat, as read from the environment: one field a
/// variable, named as the variable in lower case. [`Flat::into_settings`] sorts them
/// into the typed sections of [`Settings`]; the sections' fields document them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub(super) struct Flat {
    pub(super) port: Option<u16>,
    pub(super) bind_address: String,
    pub(super) log_format: String,
    pub(super) shutdown_drain_secs: u64,

    pub(super) http_header_read_timeout_secs: u64,
    pub(super) http_keep_alive_timeout_secs: u64,
    pub(super) http_body_read_timeout_secs: u64,
    pub(super) http_max_connections: usize,
    pub(super) http_shutdown_grace_secs: u64,

    pub(super) kafka_bootstrap_servers: String,
    pub(super) kafka_topic_prefix: String,
    pub(super) kafka_topic: Option<String>,
    pub(super) kafka_results_topic: Option<String>,
    pub(super) kafka_dead_letter_topic: Option<String>,
    pub(super) kafka_progress_topic: Option<String>,
    pub(super) kafka_partitions: i32,
    pub(super) kafka_replication_factor: i32,
    pub(super) kafka_session_timeout_ms: u32,
    pub(super) kafka_produce_timeout_ms: u32,
    pub(super) kafka_fetch_wait_max_ms: u32,
    pub(super) kafka_linger_ms: u32,
    pub(super) kafka_security_protocol: SecurityProtocol,
    pub(super) kafka_sasl_mechanism: Option<SaslMechanism>,
    #[serde(deserialize_with = "non_empty")]
    pub(super) kafka_sasl_username: Option<String>,
    #[serde(deserialize_with = "non_empty_secret")]
    pub(super) kafka_sasl_password: Option<SecretString>,
    #[serde(deserialize_with = "non_empty")]
    pub(super) kafka_ssl_ca_location: Option<String>,

    pub(super) openai_api_key: Option<SecretString>,
    pub(super) openai_base_url: Option<String>,
    pub(super) openai_model: String,
    pub(super) openai_timeout_secs: u64,
    pub(super) openai_max_retries: u32,
    pub(super) openai_initial_concurrency: usize,
    pub(super) openai_max_concurrency: usize,
    pub(super) openai_max_response_bytes: usize,

    pub(super) disablecheckpointer: bool,
    pub(super) checkpointer: String,
    pub(super) comms_publish_topics: Option<String>,
    pub(super) comms_read_topics: Option<String>,
    pub(super) comms_request_agents: Option<String>,
    pub(super) rate_limit_per_second: u32,
    pub(super) rate_limit_burst: u32,
    pub(super) rate_limit_loopback: bool,
    #[serde(deserialize_with = "non_empty_secret")]
    pub(super) api_keys: Option<SecretString>,
    #[serde(deserialize_with = "non_empty")]
    pub(super) cors_allow_origins: Option<String>,
    pub(super) database_url: Option<SecretString>,

    pub(super) solver_id: Option<String>,
    pub(super) solver_concurrency: usize,
    pub(super) task_deadline_secs: u64,
    pub(super) max_result_bytes: usize,
    pub(super) consumer_max_attempts: u32,
    pub(super) consumer_stall_secs: u64,
    pub(super) stream_chunk_ms: u64,
    pub(super) hostname: Option<String>,
    pub(super) results_store: String,
    pub(super) data_dir: String,
    pub(super) results_retention_days: u32,
    pub(super) review_timeout_secs: u64,
}

impl Default for Flat {
    fn default() -> Self {
        Self {
            port: None,
            bind_address: "0.0.0.0".into(),
            log_format: "pretty".into(),
            shutdown_drain_secs: 20,
            http_header_read_timeout_secs: 10,
            http_keep_alive_timeout_secs: 75,
            http_body_read_timeout_secs: 30,
            http_max_connections: 2048,
            http_shutdown_grace_secs: 10,
            solver_concurrency: 1024,
            task_deadline_secs: 600,
            kafka_bootstrap_servers: "localhost:9092".into(),
            kafka_topic_prefix: "dev".into(),
            kafka_topic: None,
            kafka_results_topic: None,
            kafka_dead_letter_topic: None,
            kafka_progress_topic: None,
            kafka_partitions: 3,
            kafka_replication_factor: 1,
            kafka_session_timeout_ms: 10_000,
            kafka_produce_timeout_ms: 10_000,
            kafka_linger_ms: 0,
            kafka_fetch_wait_max_ms: 10,
            kafka_security_protocol: SecurityProtocol::Plaintext,
            kafka_sasl_mechanism: None,
            kafka_sasl_username: None,
            kafka_sasl_password: None,
            kafka_ssl_ca_location: None,
            openai_api_key: None,
            openai_base_url: None,
            openai_model: "gpt-4o-mini".into(),
            openai_timeout_secs: 60,
            openai_max_retries: 3,
            openai_initial_concurrency: 128,
            openai_max_concurrency: 1024,
            openai_max_response_bytes: 1 << 20,
            max_result_bytes: 512 * 1024,
            consumer_max_attempts: 5,
            consumer_stall_secs: 900,
            stream_chunk_ms: 50,
            disablecheckpointer: false,
            checkpointer: "memory".into(),
            database_url: None,
            api_keys: None,
            cors_allow_origins: None,
            comms_publish_topics: None,
            rate_limit_per_second: 100,
            rate_limit_burst: 200,
            rate_limit_loopback: false,
            comms_read_topics: None,
            comms_request_agents: None,
            solver_id: None,
            hostname: None,
            results_store: "sqlite".into(),
            data_dir: "data".into(),
            results_retention_days: 30,
            review_timeout_secs: 0,
        }
    }
}

impl Flat {
    /// The typed sections of these values.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) naming `CHECKPOINTER` or `LOG_FORMAT` when
    /// it is not one of their choices. Ranges are checked by [`Settings::validate`].
    pub(super) fn into_settings(self) -> Result<Settings> {
        let checkpointer = match (self.checkpointer.parse()?, self.disablecheckpointer) {
            (_, true) => CheckpointerKind::Disabled,
            (kind, false) => kind,
        };
        Ok(Settings {
            http: HttpSettings {
                port: self.port,
                bind_address: self.bind_address,
                limits: HttpLimits {
                    header_read_timeout: Duration::from_secs(self.http_header_read_timeout_secs),
                    keep_alive_timeout: Duration::from_secs(self.http_keep_alive_timeout_secs),
                    body_read_timeout: Duration::from_secs(self.http_body_read_timeout_secs),
                    max_connections: self.http_max_connections,
                    shutdown_grace: Duration::from_secs(self.http_shutdown_grace_secs),
                },
                api_keys: self.api_keys,
                rate_limit: RateLimitSettings {
                    per_second: self.rate_limit_per_second,
                    burst: self.rate_limit_burst,
                    loopback: self.rate_limit_loopback,
                },
                cors_allow_origins: self.cors_allow_origins,
            },
            kafka: KafkaSettings {
                topics: Topics::new(
                    &self.kafka_topic_prefix,
                    self.kafka_topic,
                    self.kafka_results_topic,
                    self.kafka_dead_letter_topic,
                    self.kafka_progress_topic,
                ),
                topic_prefix: self.kafka_topic_prefix,
                bootstrap_servers: self.kafka_bootstrap_servers,
                partitions: self.kafka_partitions,
                replication_factor: self.kafka_replication_factor,
                session_timeout: millis(self.kafka_session_timeout_ms),
                produce_timeout: millis(self.kafka_produce_timeout_ms),
                fetch_wait_max: millis(self.kafka_fetch_wait_max_ms),
                linger: millis(self.kafka_linger_ms),
                security_protocol: self.kafka_security_protocol,
                sasl_mechanism: self.kafka_sasl_mechanism,
                sasl_username: self.kafka_sasl_username,
                sasl_password: self.kafka_sasl_password,
                ssl_ca_location: self.kafka_ssl_ca_location,
            },
            llm: LlmSettings {
                api_key: self.openai_api_key,
                base_url: self.openai_base_url,
                model: self.openai_model,
                timeout: Duration::from_secs(self.openai_timeout_secs),
                max_retries: self.openai_max_retries,
                initial_concurrency: self.openai_initial_concurrency,
                max_concurrency: self.openai_max_concurrency,
                max_response_bytes: self.openai_max_response_bytes,
            },
            solver: SolverSettings {
                id: self.solver_id,
                concurrency: self.solver_concurrency,
                task_deadline: Duration::from_secs(self.task_deadline_secs),
                max_result_bytes: self.max_result_bytes,
                consumer_max_attempts: self.consumer_max_attempts,
                consumer_stall: Duration::from_secs(self.consumer_stall_secs),
                stream_chunk: Duration::from_millis(self.stream_chunk_ms),
                checkpointer,
            },
            view: ViewSettings {
                store: self.results_store.parse()?,
                retention: Duration::from_secs(u64::from(self.results_retention_days) * 86_400),
                review_timeout: (self.review_timeout_secs > 0)
                    .then(|| Duration::from_secs(self.review_timeout_secs)),
            },
            database_url: self.database_url,
            data_dir: self.data_dir.into(),
            comms: CommsSettings {
                publish_topics: self.comms_publish_topics,
                read_topics: self.comms_read_topics,
                request_agents: self.comms_request_agents,
            },
            log_format: self.log_format.parse()?,
            shutdown_drain: Duration::from_secs(self.shutdown_drain_secs),
            hostname: self.hostname,
        })
    }
}

fn millis(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}
