//! Layered settings: defaults → optional TOML file → environment variables.
//!
//! Every field of [`Settings`] is read from the environment variable of the same name in
//! upper case (`kafka_bootstrap_servers` ← `KAFKA_BOOTSTRAP_SERVERS`); the file named by
//! `CONFIG_FILE`, when set, may hold the same keys in lower case. A bad value stops the
//! process with a message naming the variable. Secrets (`OPENAI_API_KEY`,
//! `KAFKA_SASL_PASSWORD`) are [`SecretString`]s: never logged, never returned by `/health`.
//!
//! Numbers and booleans are parsed from the environment's text, except in credentials and
//! paths (`KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD`, `KAFKA_SSL_CA_LOCATION`,
//! `OPENAI_API_KEY`), which are taken as written: a password `0123` stays `0123`. An empty
//! credential or path counts as not set.
//!
//! The variables of the Python system keep their meaning (`KAFKA_BOOTSTRAP_SERVERS`,
//! `KAFKA_TOPIC`, `KAFKA_RESULTS_TOPIC`, `OPENAI_API_KEY`); the README's configuration
//! table lists them all.

use std::{collections::HashMap, path::Path, time::Duration};

use secrecy::SecretString;
use serde::Deserialize;

use self::parse::{check_toml, name_the_variable, non_empty, non_empty_secret};
use crate::{
    Error, Result,
    http::HttpLimits,
    kafka::{SaslMechanism, SecurityProtocol, Topics},
};

/// Settings read as the text given, never parsed as a number or boolean (the
/// environment source parses `0123` as the number 123 and `TRUE` as `true`).
const VERBATIM: [&str; 5] = [
    "api_keys",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_ca_location",
    "openai_api_key",
];

/// Every setting of every service, flat, as read from the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `PORT`: HTTP port; each service has its own default (8001, 8000, 8002). `0` picks a
    /// free port (tests).
    pub port: Option<u16>,
    /// `BIND_ADDRESS`: interface to listen on; default `0.0.0.0`.
    pub bind_address: String,
    /// `LOG_FORMAT`: `pretty` (default) or `json`.
    pub log_format: String,
    /// `SHUTDOWN_DRAIN_SECS`: how long work in flight may finish after SIGTERM; default 20.
    pub shutdown_drain_secs: u64,

    /// `HTTP_HEADER_READ_TIMEOUT_SECS`: how long a client may take to send a request head,
    /// from the connection's start or the first byte of a later request (at least 1);
    /// default 10. A head cut short gets a JSON 408, then the connection closes.
    pub http_header_read_timeout_secs: u64,
    /// `HTTP_KEEP_ALIVE_TIMEOUT_SECS`: how long a connection may stay idle between
    /// requests (at least 1); default 75, longer than the 60 s idle timeout of common
    /// proxies and load balancers, so that they close first and never reuse a
    /// connection the service is closing.
    pub http_keep_alive_timeout_secs: u64,
    /// `HTTP_BODY_READ_TIMEOUT_SECS`: how long a request body may take to arrive whole,
    /// from the handler's first read (at least 1); default 30 (a 1 MiB body needs 35
    /// KB/s). Over it the answer is a JSON 408.
    pub http_body_read_timeout_secs: u64,
    /// `HTTP_MAX_CONNECTIONS`: most HTTP connections open at once (1 to 1000000); default
    /// 2048. At the limit a new connection closes the one that has waited longest without
    /// a request in flight; when all have one, new connections wait in the listen
    /// backlog. Lowered to half the open-file limit when that is smaller.
    pub http_max_connections: usize,
    /// `HTTP_SHUTDOWN_GRACE_SECS`: after SIGTERM, how long HTTP requests in flight may
    /// finish before their connections are dropped (idle connections and unfinished
    /// heads are closed at once); default 10.
    pub http_shutdown_grace_secs: u64,

    /// `KAFKA_BOOTSTRAP_SERVERS`: comma-separated `host:port`s; default `localhost:9092`.
    pub kafka_bootstrap_servers: String,
    /// `KAFKA_TOPIC_PREFIX`: prefix of the topic names; default `dev`.
    pub kafka_topic_prefix: String,
    /// `KAFKA_TOPIC`: the events (task) topic; default `{prefix}-langgraph-agent-events`.
    pub kafka_topic: Option<String>,
    /// `KAFKA_RESULTS_TOPIC`: default `{prefix}-langgraph-task-results`.
    pub kafka_results_topic: Option<String>,
    /// `KAFKA_DEAD_LETTER_TOPIC`: default `{prefix}-langgraph-dead-letter`.
    pub kafka_dead_letter_topic: Option<String>,
    /// `KAFKA_PARTITIONS`: partitions of topics created at start-up; default 3.
    pub kafka_partitions: i32,
    /// `KAFKA_REPLICATION_FACTOR`: replication of topics created at start-up; default 1.
    pub kafka_replication_factor: i32,
    /// `KAFKA_SESSION_TIMEOUT_MS`: consumer-group session timeout; default 10000.
    pub kafka_session_timeout_ms: u32,
    /// `KAFKA_PRODUCE_TIMEOUT_MS`: how long a publish may wait for the broker's
    /// acknowledgement before it fails (and `POST /generate-task` answers 503); default
    /// 10000.
    pub kafka_produce_timeout_ms: u32,
    /// `KAFKA_FETCH_WAIT_MAX_MS`: how long the broker may hold the fetch of the solver
    /// (and of agent-comms' last-message view) that finds nothing new (librdkafka's
    /// `fetch.wait.max.ms`, 1 to 5000); default 10.
    /// Kafka answers a waiting fetch as soon as data arrives, so there a longer wait
    /// (500) only saves idle fetches; a broker that answers only when the wait runs out
    /// (Tansu) adds up to this to every task's latency.
    pub kafka_fetch_wait_max_ms: u32,
    /// `KAFKA_LINGER_MS`: how long the producer holds a message to batch it with others
    /// (librdkafka's `linger.ms`); default 0: every publish waits for its
    /// acknowledgement, and under load messages still batch while earlier requests are
    /// in flight.
    pub kafka_linger_ms: u32,
    /// `KAFKA_SECURITY_PROTOCOL`: `PLAINTEXT` (default), `SSL`, `SASL_PLAINTEXT` or
    /// `SASL_SSL`, in any case.
    pub kafka_security_protocol: SecurityProtocol,
    /// `KAFKA_SASL_MECHANISM`: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`, in any case;
    /// only with a `SASL_*` protocol, where it defaults to `SCRAM-SHA-512`
    /// ([`Settings::sasl_mechanism`]).
    pub kafka_sasl_mechanism: Option<SaslMechanism>,
    /// `KAFKA_SASL_USERNAME`: required with a `SASL_*` protocol, refused without one.
    #[serde(deserialize_with = "non_empty")]
    pub kafka_sasl_username: Option<String>,
    /// `KAFKA_SASL_PASSWORD` (secret): required with a `SASL_*` protocol, refused without
    /// one.
    #[serde(deserialize_with = "non_empty_secret")]
    pub kafka_sasl_password: Option<SecretString>,
    /// `KAFKA_SSL_CA_LOCATION`: a PEM CA bundle (file or directory, or librdkafka's
    /// `probe`) to trust instead of the system's CA store; only with `SSL` or `SASL_SSL`.
    #[serde(deserialize_with = "non_empty")]
    pub kafka_ssl_ca_location: Option<String>,

    /// `OPENAI_API_KEY`: key for OpenAI or a compatible server (secret).
    pub openai_api_key: Option<SecretString>,
    /// `OPENAI_BASE_URL`: an OpenAI-compatible server, e.g. `http://127.0.0.1:8080/v1`;
    /// default OpenAI's.
    pub openai_base_url: Option<String>,
    /// `OPENAI_MODEL`: default `gpt-4o-mini`.
    pub openai_model: String,
    /// `OPENAI_TIMEOUT_SECS`: per-request timeout; default 60.
    pub openai_timeout_secs: u64,
    /// `OPENAI_MAX_RETRIES`: retries on 429, 5xx and connection errors (with backoff,
    /// honouring `Retry-After`); default 3.
    pub openai_max_retries: u32,
    /// `OPENAI_INITIAL_CONCURRENCY`: requests to the model at once before the adaptive
    /// limit has learnt anything (at least 1); default 128. Slow start doubles the limit
    /// once per model round trip, so each doubling skipped is a round trip saved on a
    /// backlog; a provider that serves fewer is found in the first burst of refusals.
    pub openai_initial_concurrency: usize,
    /// `OPENAI_MAX_CONCURRENCY`: the most requests to the model at once, however well it
    /// answers; the adaptive limit moves between 1 and this (at least 1); default 1024.
    pub openai_max_concurrency: usize,
    /// `OPENAI_MAX_RESPONSE_BYTES`: the largest response body read from the model server
    /// (4 KiB to 64 MiB); default 1 MiB. The body is read as it streams and the request
    /// abandoned at this size with a clear error, so a runaway answer costs neither
    /// memory nor log space.
    pub openai_max_response_bytes: usize,

    /// `DISABLECHECKPOINTER`: `true` runs the solver graph without checkpoints (the
    /// Python system's switch); default `false`.
    pub disablecheckpointer: bool,
    /// `CHECKPOINTER`: where the solver checkpoints each task's graph — `memory`
    /// (default; survives retries within the process) or `postgres` (survives crashes;
    /// needs `DATABASE_URL`).
    pub checkpointer: String,
    /// `COMMS_PUBLISH_TOPICS`: comma-separated topics agent-comms' `POST /send_event` may
    /// publish to; default the events topic.
    pub comms_publish_topics: Option<String>,
    /// `COMMS_READ_TOPICS`: comma-separated topics agent-comms' `GET /last_message` may
    /// read; default the events and results topics.
    pub comms_read_topics: Option<String>,
    /// `RATE_LIMIT_PER_SECOND`: requests a second each client (its API key, else its
    /// address) may make on the POST routes, on average; 0 turns the limit off; default
    /// 100.
    pub rate_limit_per_second: u32,
    /// `RATE_LIMIT_BURST`: how many requests a client may make at once above the average
    /// (at least 1); default 200.
    pub rate_limit_burst: u32,
    /// `RATE_LIMIT_LOOPBACK`: whether clients on the loopback interface (the host's own
    /// tools, benchmarks, a sidecar proxy) are limited too; default `false`.
    pub rate_limit_loopback: bool,
    /// `API_KEYS` (secret): comma-separated keys (or `sha256:<hex>` digests of keys) that
    /// callers must send as `Authorization: Bearer <key>`; unset leaves the routes open.
    #[serde(deserialize_with = "non_empty_secret")]
    pub api_keys: Option<SecretString>,
    /// `DATABASE_URL`: PostgreSQL for `CHECKPOINTER=postgres`, e.g.
    /// `postgres://user:password@host:5432/db` (secret).
    pub database_url: Option<SecretString>,

    /// `SOLVER_ID`: this solver's name in results; default `$HOSTNAME` or `task-solver`.
    pub solver_id: Option<String>,
    /// `SOLVER_CONCURRENCY`: tasks one solver works on at once (at least 1); default
    /// 1024. A task in flight mostly waits on the model (~60 KB each, measured with the
    /// solver graph's two LLM calls); the model itself is asked at most
    /// `OPENAI_MAX_CONCURRENCY` requests at once, under the adaptive limit.
    pub solver_concurrency: usize,
    /// `TASK_DEADLINE_SECS`: how long one delivery of a task may work before it ends as
    /// `failed` with a deadline reason (at least 1); default 600.
    pub task_deadline_secs: u64,
    /// `MAX_RESULT_BYTES`: the largest result record the solver publishes, as JSON
    /// (4 KiB to 900 KiB, under the broker's 1 MB limit with room for headers); default
    /// 512 KiB. A larger answer ends the task `failed` with a reason naming the sizes
    /// (not cut: a cut answer could read as whole).
    pub max_result_bytes: usize,
    /// `CONSUMER_MAX_ATTEMPTS`: how many times a message whose processing fails for a
    /// reason of its own (not an unreachable broker or database) is tried before it goes
    /// to the dead-letter topic (at least 1); default 5.
    pub consumer_max_attempts: u32,
    /// `CONSUMER_STALL_SECS`: how long a partition with messages in flight may go without
    /// its offset advancing before `/ready` fails and `/health` names it (at least 1);
    /// default 900, above `TASK_DEADLINE_SECS` (600), since one task may hold its
    /// partition's offset that long.
    pub consumer_stall_secs: u64,
    /// `HOSTNAME`: set by Kubernetes to the pod name.
    pub hostname: Option<String>,
}

impl Default for Settings {
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
            disablecheckpointer: false,
            checkpointer: "memory".into(),
            database_url: None,
            api_keys: None,
            comms_publish_topics: None,
            rate_limit_per_second: 100,
            rate_limit_burst: 200,
            rate_limit_loopback: false,
            comms_read_topics: None,
            solver_id: None,
            hostname: None,
        }
    }
}

impl Settings {
    /// Reads the settings from `CONFIG_FILE` (when set) and the process environment, and
    /// registers their secrets with [`crate::redact`] so that no log line or answer of
    /// this process can carry them.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable of a value that does not parse or is out of
    /// range (never quoting the value), or the line and column of a `CONFIG_FILE` that is
    /// not valid TOML (never quoting the line).
    pub fn load() -> Result<Self> {
        Self::from_environment(None)
    }

    /// Reads the settings from the given variables only (tests and tools), on top of the
    /// defaults.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn from_vars<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let map = vars
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Self::from_environment(Some(map))
    }

    /// `vars`, or the process environment when `None`.
    fn from_environment(vars: Option<HashMap<String, String>>) -> Result<Self> {
        let config_error =
            |err: config::ConfigError| Error::Config(name_the_variable(&err.to_string()));
        let mut builder = config::Config::builder();
        if let Ok(path) = std::env::var("CONFIG_FILE") {
            check_toml(&path)?;
            builder = builder.add_source(config::File::with_name(&path).required(true));
        }
        builder = builder.add_source(
            config::Environment::default()
                .source(vars.clone())
                .try_parsing(true),
        );
        for key in VERBATIM {
            let var = key.to_uppercase();
            let text = match &vars {
                Some(vars) => vars.get(&var).cloned(),
                None => std::env::var(&var).ok(),
            };
            if let Some(text) = text {
                builder = builder.set_override(key, text).map_err(config_error)?;
            }
        }
        let settings: Self = builder
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(config_error)?;
        settings.validate()?;
        crate::redact::register(&settings);
        Ok(settings)
    }

    /// Checks ranges and choices the types cannot express.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable.
    pub fn validate(&self) -> Result<()> {
        let bad = |var: &str, why: &str| Err(Error::Config(format!("{var} {why}")));
        if !matches!(self.checkpointer.as_str(), "memory" | "postgres") {
            return bad("CHECKPOINTER", "must be `memory` or `postgres`");
        }
        if self.checkpointer == "postgres"
            && !self.disablecheckpointer
            && self.database_url.is_none()
        {
            return bad("DATABASE_URL", "must be set when CHECKPOINTER=postgres");
        }
        crate::http::ApiKeys::from_settings(self)?;
        if !matches!(self.log_format.as_str(), "pretty" | "json") {
            return bad("LOG_FORMAT", "must be `pretty` or `json`");
        }
        if self.kafka_bootstrap_servers.trim().is_empty() {
            return bad("KAFKA_BOOTSTRAP_SERVERS", "must not be empty");
        }
        if self.kafka_partitions < 1 {
            return bad("KAFKA_PARTITIONS", "must be at least 1");
        }
        if self.kafka_replication_factor < 1 {
            return bad("KAFKA_REPLICATION_FACTOR", "must be at least 1");
        }
        if self.kafka_session_timeout_ms < 1000 {
            return bad("KAFKA_SESSION_TIMEOUT_MS", "must be at least 1000");
        }
        if self.kafka_produce_timeout_ms < 100 {
            return bad("KAFKA_PRODUCE_TIMEOUT_MS", "must be at least 100");
        }
        if !(1..=5000).contains(&self.kafka_fetch_wait_max_ms) {
            return bad("KAFKA_FETCH_WAIT_MAX_MS", "must be from 1 to 5000");
        }
        if self.kafka_linger_ms > 1000 {
            return bad("KAFKA_LINGER_MS", "must be at most 1000");
        }
        if self.openai_timeout_secs == 0 {
            return bad("OPENAI_TIMEOUT_SECS", "must be at least 1");
        }
        if self.openai_initial_concurrency == 0 {
            return bad("OPENAI_INITIAL_CONCURRENCY", "must be at least 1");
        }
        if self.openai_max_concurrency == 0 {
            return bad("OPENAI_MAX_CONCURRENCY", "must be at least 1");
        }
        if self.solver_concurrency == 0 {
            return bad("SOLVER_CONCURRENCY", "must be at least 1");
        }
        if self.task_deadline_secs == 0 {
            return bad("TASK_DEADLINE_SECS", "must be at least 1");
        }
        if !(4 << 10..=64 << 20).contains(&self.openai_max_response_bytes) {
            return bad(
                "OPENAI_MAX_RESPONSE_BYTES",
                "must be between 4096 (4 KiB) and 67108864 (64 MiB)",
            );
        }
        if !(4 << 10..=crate::kafka::MAX_OWN_RECORD_BYTES).contains(&self.max_result_bytes) {
            return bad(
                "MAX_RESULT_BYTES",
                "must be between 4096 (4 KiB) and 921600 (900 KiB, under the broker's 1 MB limit)",
            );
        }
        if self.rate_limit_per_second > 0 && self.rate_limit_burst == 0 {
            return bad("RATE_LIMIT_BURST", "must be at least 1");
        }
        if self.consumer_max_attempts == 0 {
            return bad("CONSUMER_MAX_ATTEMPTS", "must be at least 1");
        }
        if self.consumer_stall_secs == 0 {
            return bad("CONSUMER_STALL_SECS", "must be at least 1");
        }
        for (var, secs) in [
            (
                "HTTP_HEADER_READ_TIMEOUT_SECS",
                self.http_header_read_timeout_secs,
            ),
            (
                "HTTP_KEEP_ALIVE_TIMEOUT_SECS",
                self.http_keep_alive_timeout_secs,
            ),
            (
                "HTTP_BODY_READ_TIMEOUT_SECS",
                self.http_body_read_timeout_secs,
            ),
        ] {
            if secs == 0 {
                return bad(var, "must be at least 1");
            }
        }
        if !(1..=1_000_000).contains(&self.http_max_connections) {
            return bad("HTTP_MAX_CONNECTIONS", "must be from 1 to 1000000");
        }
        if let Some(url) = &self.openai_base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return bad("OPENAI_BASE_URL", "must start with http:// or https://");
        }
        self.validate_kafka_security()?;
        for (var, topic) in [
            ("KAFKA_TOPIC", &self.kafka_topic),
            ("KAFKA_RESULTS_TOPIC", &self.kafka_results_topic),
            ("KAFKA_DEAD_LETTER_TOPIC", &self.kafka_dead_letter_topic),
        ] {
            if let Some(topic) = topic
                && !crate::kafka::valid_topic_name(topic)
            {
                return bad(
                    var,
                    "must be 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' or '-'",
                );
            }
        }
        Ok(())
    }

    /// `KAFKA_SECURITY_PROTOCOL` and the SASL and TLS settings fit together: credentials
    /// with `SASL_*` and only there, a CA only with TLS and only one that exists.
    fn validate_kafka_security(&self) -> Result<()> {
        let bad = |var: &str, why: String| Err(Error::Config(format!("{var} {why}")));
        let protocol = self.kafka_security_protocol;
        if protocol.is_sasl() {
            if self.kafka_sasl_username.is_none() {
                return bad(
                    "KAFKA_SASL_USERNAME",
                    format!("must be set when KAFKA_SECURITY_PROTOCOL is {protocol}"),
                );
            }
            if self.kafka_sasl_password.is_none() {
                return bad(
                    "KAFKA_SASL_PASSWORD",
                    format!("must be set when KAFKA_SECURITY_PROTOCOL is {protocol}"),
                );
            }
        } else {
            for (var, given) in [
                ("KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism.is_some()),
                ("KAFKA_SASL_USERNAME", self.kafka_sasl_username.is_some()),
                ("KAFKA_SASL_PASSWORD", self.kafka_sasl_password.is_some()),
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
        if let Some(ca) = &self.kafka_ssl_ca_location {
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
    pub fn sasl_mechanism(&self) -> SaslMechanism {
        self.kafka_sasl_mechanism.unwrap_or_default()
    }

    /// The HTTP port: `PORT`, or the service's default.
    pub fn port_or(&self, default: u16) -> u16 {
        self.port.unwrap_or(default)
    }

    /// The topic names in force.
    pub fn topics(&self) -> Topics {
        Topics::new(
            &self.kafka_topic_prefix,
            self.kafka_topic.clone(),
            self.kafka_results_topic.clone(),
            self.kafka_dead_letter_topic.clone(),
        )
    }

    /// How long work in flight may finish after the shutdown signal.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_drain_secs)
    }

    /// The HTTP server's limits (`HTTP_*`).
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_secs(self.http_header_read_timeout_secs),
            keep_alive_timeout: Duration::from_secs(self.http_keep_alive_timeout_secs),
            body_read_timeout: Duration::from_secs(self.http_body_read_timeout_secs),
            max_connections: self.http_max_connections,
            shutdown_grace: Duration::from_secs(self.http_shutdown_grace_secs),
        }
    }

    /// How long one delivery of a task may work (`TASK_DEADLINE_SECS`).
    pub fn task_deadline(&self) -> Duration {
        Duration::from_secs(self.task_deadline_secs)
    }

    /// This instance's name: `SOLVER_ID`, else `HOSTNAME`, else `default`.
    pub fn instance_id(&self, default: &str) -> String {
        self.solver_id
            .clone()
            .or_else(|| self.hostname.clone())
            .unwrap_or_else(|| default.to_owned())
    }
}

mod parse;
#[cfg(test)]
mod tests;
