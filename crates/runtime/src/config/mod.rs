//! Layered settings: defaults → optional TOML file → environment variables.
//!
//! [`Settings`] has one typed section a concern, each owned by the module that uses it
//! and passed to it alone: [`HttpSettings`] (`PORT`, `BIND_ADDRESS`, `HTTP_*`, `API_KEYS`,
//! `RATE_LIMIT_*`, `CORS_ALLOW_ORIGINS`), [`KafkaSettings`] (`KAFKA_*`), [`LlmSettings`]
//! (`OPENAI_*`), [`SolverSettings`] (the solver's) and [`CommsSettings`] (agent-comms').
//! Each field's doc names its variable. The variables are read flat (a private layer,
//! `flat`, one field a variable in lower case, `kafka_bootstrap_servers` ←
//! `KAFKA_BOOTSTRAP_SERVERS`), then sorted into the sections; the file named by
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

use std::{collections::HashMap, time::Duration};

use secrecy::{ExposeSecret, SecretString};

use self::{
    flat::{Flat, VERBATIM},
    parse::{check_toml, name_the_variable},
};
use crate::{
    Error, Result, http::HttpSettings, kafka::KafkaSettings, llm::LlmSettings, telemetry::LogFormat,
};

/// Every service's settings, in sections; each service reads the sections it needs.
///
/// [`Settings::default`] is what an empty environment gives.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The HTTP server: port, address, limits, API keys, rate limit, CORS origins.
    pub http: HttpSettings,
    /// The Kafka clients: brokers, topics, timeouts, security.
    pub kafka: KafkaSettings,
    /// The model: server, key, model, timeouts, retries, concurrency.
    pub llm: LlmSettings,
    /// task-solver's own settings.
    pub solver: SolverSettings,
    /// agent-comms' own settings.
    pub comms: CommsSettings,
    /// task-generator's results view.
    pub view: ViewSettings,
    /// `DATABASE_URL`: PostgreSQL for `CHECKPOINTER=postgres` and
    /// `RESULTS_STORE=postgres`, e.g. `postgres://user:password@host:5432/db` (secret).
    pub database_url: Option<SecretString>,
    /// `DATA_DIR`: the folder of a service's SQLite files, created when missing — the
    /// solver's checkpoints with `CHECKPOINTER=sqlite` (`checkpoints.sqlite`) and
    /// task-generator's results view with `RESULTS_STORE=sqlite`
    /// (`results-<events topic>.sqlite`); default `data` under the working directory
    /// (the chart mounts a volume at `/data`). Shared by the sections as `DATABASE_URL`
    /// is, since one variable names the folder for both.
    pub data_dir: std::path::PathBuf,
    /// `LOG_FORMAT`: `pretty` (default) or `json`.
    pub log_format: LogFormat,
    /// `SHUTDOWN_DRAIN_SECS`: how long work in flight may finish after SIGTERM; default
    /// 20 s.
    pub shutdown_drain: Duration,
    /// `HOSTNAME`: set by Kubernetes to the pod name.
    pub hostname: Option<String>,
}

/// task-solver's section of the settings.
#[derive(Debug, Clone)]
pub struct SolverSettings {
    /// `SOLVER_ID`: this solver's name in results; default `$HOSTNAME` or `task-solver`
    /// ([`Settings::instance_id`]).
    pub id: Option<String>,
    /// `SOLVER_CONCURRENCY`: tasks one solver works on at once (at least 1); default
    /// 1024. A task in flight mostly waits on the model (~60 KB each, measured with the
    /// solver graph's two LLM calls); the model itself is asked at most
    /// `OPENAI_MAX_CONCURRENCY` requests at once, under the adaptive limit.
    pub concurrency: usize,
    /// `TASK_DEADLINE_SECS`: how long one delivery of a task may work before it ends as
    /// `failed` with a deadline reason (at least 1 s); default 600 s.
    pub task_deadline: Duration,
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
    /// its offset advancing before `/ready` fails and `/health` names it (at least 1 s);
    /// default 900 s, above `TASK_DEADLINE_SECS` (600), since one task may hold its
    /// partition's offset that long.
    pub consumer_stall: Duration,
    /// `STREAM_CHUNK_MS`: how long the solver gathers a model's output into one `token`
    /// progress event before publishing it (0 to 5000 ms; 0 publishes each piece as it
    /// comes); default 50 ms. A chunk also ends at its node's end.
    pub stream_chunk: Duration,
    /// `CHECKPOINTER` and `DISABLECHECKPOINTER`: where the solver checkpoints each task's
    /// graph (with `sqlite`, a file under [`Settings::data_dir`]).
    pub checkpointer: CheckpointerKind,
}

impl Default for SolverSettings {
    fn default() -> Self {
        Self {
            id: None,
            concurrency: 1024,
            task_deadline: Duration::from_secs(600),
            max_result_bytes: 512 * 1024,
            consumer_max_attempts: 5,
            consumer_stall: Duration::from_secs(900),
            stream_chunk: Duration::from_millis(50),
            checkpointer: CheckpointerKind::Memory,
        }
    }
}

impl SolverSettings {
    /// Checks ranges.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable.
    pub fn validate(&self) -> Result<()> {
        let bad = |var: &str, why: &str| Err(Error::Config(format!("{var} {why}")));
        if self.concurrency == 0 {
            return bad("SOLVER_CONCURRENCY", "must be at least 1");
        }
        if self.task_deadline < Duration::from_secs(1) {
            return bad("TASK_DEADLINE_SECS", "must be at least 1");
        }
        if !(4 << 10..=crate::kafka::MAX_OWN_RECORD_BYTES).contains(&self.max_result_bytes) {
            return bad(
                "MAX_RESULT_BYTES",
                "must be between 4096 (4 KiB) and 921600 (900 KiB, under the broker's 1 MB limit)",
            );
        }
        if self.consumer_max_attempts == 0 {
            return bad("CONSUMER_MAX_ATTEMPTS", "must be at least 1");
        }
        if self.consumer_stall < Duration::from_secs(1) {
            return bad("CONSUMER_STALL_SECS", "must be at least 1");
        }
        if self.stream_chunk > Duration::from_secs(5) {
            return bad("STREAM_CHUNK_MS", "must be from 0 to 5000");
        }
        Ok(())
    }
}

/// Where the solver checkpoints each task's graph (`CHECKPOINTER`, `DISABLECHECKPOINTER`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CheckpointerKind {
    /// `DISABLECHECKPOINTER=true` (the Python system's switch): no checkpoints.
    Disabled,
    /// `CHECKPOINTER=memory` (the default): in the process; survives retries within it.
    #[default]
    Memory,
    /// `CHECKPOINTER=sqlite`: in an SQLite file under `DATA_DIR`, nothing to install;
    /// survives crashes and restarts of a solver that finds the file again (the same
    /// machine or volume), but is one replica's own.
    Sqlite,
    /// `CHECKPOINTER=postgres`: in PostgreSQL at `DATABASE_URL`; survives crashes and is
    /// shared by every replica.
    Postgres,
}

impl CheckpointerKind {
    /// Whether checkpoints outlive the process (`sqlite`, `postgres`): what a task
    /// paused for human review needs.
    pub fn is_durable(self) -> bool {
        matches!(self, Self::Sqlite | Self::Postgres)
    }
}

impl CheckpointerKind {
    /// `disabled`, `memory`, `sqlite` or `postgres`, as `/health` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Memory => "memory",
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

impl std::str::FromStr for CheckpointerKind {
    type Err = Error;

    /// `memory`, `sqlite` or `postgres`, as `CHECKPOINTER` is written (`disabled` is
    /// `DISABLECHECKPOINTER`'s).
    ///
    /// # Errors
    /// [`Error::Config`] naming `CHECKPOINTER` (the value is not quoted).
    fn from_str(text: &str) -> Result<Self> {
        match text {
            "memory" => Ok(Self::Memory),
            "sqlite" => Ok(Self::Sqlite),
            "postgres" => Ok(Self::Postgres),
            _ => Err(Error::Config(
                "CHECKPOINTER must be `memory`, `sqlite` or `postgres`".into(),
            )),
        }
    }
}

/// task-generator's results view (`RESULTS_STORE`, `RESULTS_RETENTION_DAYS`; its SQLite
/// file is under [`Settings::data_dir`]).
#[derive(Debug, Clone)]
pub struct ViewSettings {
    /// `RESULTS_STORE`: where the view is kept — `sqlite` (default, a file under
    /// `DATA_DIR`), `postgres` or `memory`.
    pub store: ResultsStoreKind,
    /// `RESULTS_RETENTION_DAYS`: finished tasks older than this leave the view; default
    /// 30 days; 0 keeps them for ever.
    pub retention: Duration,
    /// `REVIEW_TIMEOUT_SECS`: how long a task may wait for review before it fails with
    /// `review timed out`; `None` (0, the default): for ever.
    pub review_timeout: Option<Duration>,
}

impl Default for ViewSettings {
    fn default() -> Self {
        Self {
            store: ResultsStoreKind::Sqlite,
            retention: Duration::from_secs(30 * 86_400),
            review_timeout: None,
        }
    }
}

/// Where task-generator keeps its results view (`RESULTS_STORE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResultsStoreKind {
    /// `sqlite` (the default): a file under `DATA_DIR`, the replica's own; it resumes
    /// where it stopped.
    #[default]
    Sqlite,
    /// `postgres`: the database at `DATABASE_URL`, shared by every replica.
    Postgres,
    /// `memory`: in the process, read again from the topics' start at every start.
    Memory,
}

impl ResultsStoreKind {
    /// `sqlite`, `postgres` or `memory`, as `/health` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Memory => "memory",
        }
    }
}

impl std::str::FromStr for ResultsStoreKind {
    type Err = Error;

    /// `sqlite`, `postgres` or `memory`.
    ///
    /// # Errors
    /// [`Error::Config`] naming `RESULTS_STORE` (the value is not quoted).
    fn from_str(text: &str) -> Result<Self> {
        match text {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" => Ok(Self::Postgres),
            "memory" => Ok(Self::Memory),
            _ => Err(Error::Config(
                "RESULTS_STORE must be `sqlite`, `postgres` or `memory`".into(),
            )),
        }
    }
}

/// agent-comms' section of the settings: which topics its routes may touch (checked and
/// made into a policy by agent-comms).
#[derive(Debug, Clone, Default)]
pub struct CommsSettings {
    /// `COMMS_PUBLISH_TOPICS`: comma-separated topics `POST /send_event` may publish to;
    /// default the events topic.
    pub publish_topics: Option<String>,
    /// `COMMS_READ_TOPICS`: comma-separated topics `GET /last_message` may read; default
    /// the events and results topics.
    pub read_topics: Option<String>,
    /// `COMMS_REQUEST_AGENTS`: comma-separated agent types `POST /request` may ask;
    /// default `task-solver`.
    pub request_agents: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::default(),
            kafka: KafkaSettings::default(),
            llm: LlmSettings::default(),
            solver: SolverSettings::default(),
            comms: CommsSettings::default(),
            view: ViewSettings::default(),
            database_url: None,
            data_dir: "data".into(),
            log_format: LogFormat::default(),
            shutdown_drain: Duration::from_secs(20),
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
        let flat: Flat = builder
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(config_error)?;
        let settings = flat.into_settings()?;
        settings.validate()?;
        crate::redact::register_secrets(settings.secrets());
        Ok(settings)
    }

    /// Checks every section's ranges and choices the types cannot express.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable.
    pub fn validate(&self) -> Result<()> {
        let bad = |var: &str, why: &str| Err(Error::Config(format!("{var} {why}")));
        if self.solver.checkpointer == CheckpointerKind::Postgres && self.database_url.is_none() {
            return bad("DATABASE_URL", "must be set when CHECKPOINTER=postgres");
        }
        if self.view.store == ResultsStoreKind::Postgres && self.database_url.is_none() {
            return bad("DATABASE_URL", "must be set when RESULTS_STORE=postgres");
        }
        self.solver.validate()?;
        self.http.validate()?;
        self.kafka.validate()?;
        self.llm.validate()
    }

    /// The secrets [`crate::redact`] must remove: `OPENAI_API_KEY`, `KAFKA_SASL_PASSWORD`,
    /// the keys of `API_KEYS` (not their digests), and the passwords of `DATABASE_URL`
    /// and `OPENAI_BASE_URL`.
    fn secrets(&self) -> Vec<String> {
        let mut found: Vec<String> = Vec::new();
        if let Some(key) = &self.llm.api_key {
            found.push(key.expose_secret().to_owned());
        }
        if let Some(password) = &self.kafka.sasl_password {
            found.push(password.expose_secret().to_owned());
        }
        if let Some(url) = &self.database_url {
            found.extend(crate::redact::url_password(url.expose_secret()));
        }
        if let Some(url) = &self.llm.base_url {
            found.extend(crate::redact::url_password(url));
        }
        if let Some(keys) = &self.http.api_keys {
            found.extend(
                keys.expose_secret()
                    .split(',')
                    .map(str::trim)
                    .filter(|key| !key.starts_with("sha256:"))
                    .map(str::to_owned),
            );
        }
        found
    }

    /// This instance's name: `SOLVER_ID`, else `HOSTNAME`, else `default`.
    pub fn instance_id(&self, default: &str) -> String {
        self.solver
            .id
            .clone()
            .or_else(|| self.hostname.clone())
            .unwrap_or_else(|| default.to_owned())
    }
}

mod flat;
mod parse;
#[cfg(test)]
mod tests;
