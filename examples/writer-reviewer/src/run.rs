//! [`run`]: a writer, a reviewer and a caller, each its own agent runtime (its own Kafka
//! clients and instance id) in this process, and one commission from the caller to the
//! writer; [`commission`]: the caller's half alone, for writers and reviewers running
//! elsewhere.

use std::time::Duration;

use agent_runtime::{
    agents::{AgentRuntime, RuntimeOptions},
    config::Settings,
    kafka::{KafkaSettings, Topics},
};
use tokio_util::sync::CancellationToken;

use crate::{
    Error, Result,
    brief::Brief,
    reviewer::register_reviewer,
    writer::{Commission, MAX_ROUNDS, Outcome, WRITER, register_writer},
};

/// The service named in the runtimes' CloudEvents `ce_source`.
const SERVICE: &str = "writer-reviewer";

/// How a run goes. [`RunOptions::default`] gives the values below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// The most drafts the reviewer reviews, 1 to [`MAX_ROUNDS`]; default 5. The writer
    /// stops there, approved or not.
    pub max_rounds: u32,
    /// How long the writer waits for each review; default 30 s. The first review also
    /// waits for the reviewer's consumer group to form (a few seconds on Tansu, at most
    /// about `KAFKA_SESSION_TIMEOUT_MS`).
    pub review_timeout: Duration,
    /// How long the three runtimes of [`run`] may take to start (to create their topics and
    /// find their reply partitions: the broker must answer by then); default 30 s.
    pub start_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            max_rounds: 5,
            review_timeout: Duration::from_secs(30),
            start_timeout: Duration::from_secs(30),
        }
    }
}

impl RunOptions {
    /// How long the caller waits for the writer's outcome: (`max_rounds` + 1) ×
    /// `review_timeout` — every review the writer may wait for, and one more for the
    /// writer's own consumer group to form.
    pub fn write_timeout(&self) -> Duration {
        self.review_timeout.saturating_mul(self.max_rounds + 1)
    }

    /// Checks the ranges.
    ///
    /// # Errors
    /// [`Error::Options`] naming the option: `max_rounds` not from 1 to [`MAX_ROUNDS`], a
    /// zero `review_timeout` or `start_timeout`.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_ROUNDS).contains(&self.max_rounds) {
            return Err(Error::Options(format!(
                "max_rounds must be 1 to {MAX_ROUNDS}, not {}",
                self.max_rounds
            )));
        }
        if self.review_timeout.is_zero() {
            return Err(Error::Options("review_timeout must be above 0".into()));
        }
        if self.start_timeout.is_zero() {
            return Err(Error::Options("start_timeout must be above 0".into()));
        }
        Ok(())
    }
}

/// The Kafka settings of the `writer-reviewer` command: the `KAFKA_*` variables of the
/// environment (security, timeouts, partitions; read by [`Settings::load`]), with
/// `brokers` and `topic_prefix` in place of `KAFKA_BOOTSTRAP_SERVERS` and
/// `KAFKA_TOPIC_PREFIX` (the topic names follow the prefix).
///
/// # Errors
/// [`Error::Runtime`] with [`agent_runtime::Error::Config`] naming the variable of a value
/// that does not parse or is out of range.
pub fn kafka_settings(brokers: &str, topic_prefix: &str) -> Result<KafkaSettings> {
    let mut kafka = Settings::load()?.kafka;
    kafka.bootstrap_servers = brokers.to_owned();
    if kafka.topic_prefix != topic_prefix {
        kafka.topics = Topics::new(topic_prefix, None, None, None, None);
        kafka.topic_prefix = topic_prefix.to_owned();
    }
    kafka.validate()?;
    Ok(kafka)
}

/// Asks a running `writer` agent, from `caller`, for a text on `brief`, and waits up to
/// [`RunOptions::write_timeout`] for its [`Outcome`] — approved, or not after
/// `max_rounds`.
///
/// # Errors
/// - [`Error::Brief`], [`Error::Options`]: an invalid brief or option, before anything
///   is sent;
/// - [`Error::Writer`]: the writer's error (codes at [`register_writer`]) or no outcome
///   within the timeout;
/// - [`Error::InvalidReply`]: the writer answered something that is no [`Outcome`].
pub async fn commission(
    caller: &AgentRuntime,
    brief: &Brief,
    options: &RunOptions,
) -> Result<Outcome> {
    brief.validate()?;
    options.validate()?;
    let commission = Commission {
        brief: brief.clone(),
        max_rounds: options.max_rounds,
    };
    let reply = caller
        .send_message(WRITER, &commission, options.write_timeout())
        .await
        .map_err(Error::Writer)?;
    serde_json::from_value(reply.value).map_err(|err| Error::InvalidReply(err.to_string()))
}

/// Runs the example once on the brokers of `settings`: starts three agent runtimes in
/// this process — `writer-{run}` with the `writer` agent type, `reviewer-{run}` with the
/// `reviewer` agent type, and `caller-{run}` (`{run}` is 8 random hex digits) — has the
/// caller [`commission`] the writer, and shuts the three down, whatever the result.
/// Every message between them goes through Kafka: the caller's commission, each review
/// request the writer sends, and each reply. The topics are those of the runtime
/// (`{prefix}-agent-requests-writer`, `…-reviewer`, `{prefix}-agent-replies`), created
/// when missing.
///
/// In production each agent type would run in its own processes, with
/// [`register_writer`] and [`register_reviewer`]; here they share one, for one
/// command to show them.
///
/// # Errors
/// - [`Error::Brief`], [`Error::Options`]: an invalid brief or option, before anything
///   starts;
/// - [`Error::StartTimeout`]: the runtimes did not start within
///   [`RunOptions::start_timeout`] (the broker does not answer);
/// - [`Error::Runtime`]: a runtime cannot start (a client cannot be created, the broker
///   refuses) or register its agent type;
/// - [`Error::Writer`], [`Error::InvalidReply`]: as for [`commission`];
/// - [`Error::Shutdown`]: `shutdown` fired first.
pub async fn run(
    settings: &KafkaSettings,
    brief: &Brief,
    options: &RunOptions,
    shutdown: CancellationToken,
) -> Result<Outcome> {
    brief.validate()?;
    options.validate()?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut started: Vec<AgentRuntime> = Vec::new();
    let outcome = async {
        let starting = start_agents(settings, &run, options, &shutdown, &mut started);
        let caller = tokio::time::timeout(options.start_timeout, starting)
            .await
            .map_err(|_| Error::StartTimeout {
                brokers: settings.bootstrap_servers.clone(),
                timeout: options.start_timeout,
            })??;
        tokio::select! {
            outcome = commission(&caller, brief, options) => outcome,
            () = shutdown.cancelled() => Err(Error::Shutdown),
        }
    }
    .await;
    for runtime in started {
        runtime.shutdown().await;
    }
    outcome
}

/// Starts the writer's, the reviewer's and the caller's runtimes (each pushed on
/// `started` as it starts, for the caller of this to shut down), registers the two agent
/// types, and answers the caller's runtime.
async fn start_agents(
    settings: &KafkaSettings,
    run: &str,
    options: &RunOptions,
    shutdown: &CancellationToken,
    started: &mut Vec<AgentRuntime>,
) -> Result<AgentRuntime> {
    let mut start = async |role: &str, handler_timeout: Option<Duration>| {
        let defaults = RuntimeOptions::default();
        let runtime_options = RuntimeOptions {
            service: SERVICE.into(),
            handler_timeout: handler_timeout.unwrap_or(defaults.handler_timeout),
            ..defaults
        };
        let id = format!("{role}-{run}");
        let runtime = AgentRuntime::start(settings, &id, runtime_options, shutdown.clone())
            .await?
            .ok_or(Error::Shutdown)?;
        started.push(runtime.clone());
        Ok::<_, Error>(runtime)
    };
    // The writer's handler runs for as long as its caller waits.
    let writer = start("writer", Some(options.write_timeout())).await?;
    let reviewer = start("reviewer", None).await?;
    let caller = start("caller", None).await?;
    if register_writer(&writer, options.review_timeout).await?
        && register_reviewer(&reviewer).await?
    {
        Ok(caller)
    } else {
        Err(Error::Shutdown)
    }
}
