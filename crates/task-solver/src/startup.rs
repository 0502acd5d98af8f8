//! Wiring: [`App::build`] and [`App::run_until_stopped`].

use std::{net::SocketAddr, sync::Arc, time::Duration};

use agent_core::graph::{Checkpointer, InMemorySaver};
use agent_runtime::checkpoint::{PostgresSaver, SqliteSaver};
use secrecy::ExposeSecret;

use agent_runtime::{
    Result,
    agents::RuntimeOptions,
    config::{CheckpointerKind, Settings},
    http::{self, Health, health_routes},
    kafka::{self, BrokerWatch, ConsumerOptions, ConsumerProgress, Producer, run_at_least_once},
    llm::LlmClient,
};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    CHECKPOINTS_FILE, CONSUMER_GROUP, DEFAULT_PORT, SERVICE, agent,
    progress::ProgressPublisher,
    seen::SeenTasks,
    solver,
    worker::{self, Deps},
};

/// A built task-solver: its health port is bound, nothing runs until
/// [`App::run_until_stopped`].
pub struct App {
    settings: Settings,
    listener: TcpListener,
    router: axum::Router,
    deps: Deps,
    watch_stop: CancellationToken,
    /// The consumer loop's progress per partition, read by `/ready`.
    progress: ConsumerProgress,
    /// What the solver says of itself to `describe` ([`crate::agent`]).
    describe: agent::Describe,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    /// Builds the solver from `settings`: LLM client, solver graph, producer, health
    /// routes; binds `PORT` (default 8002; 0 picks a free port).
    ///
    /// # Errors
    /// A configuration error (no model configured, bad Kafka settings) or a port that
    /// cannot be bound.
    pub async fn build(settings: Settings) -> Result<Self> {
        // The metrics recorder, before anything is counted.
        let _ = agent_runtime::http::metrics::prometheus();
        let topics = settings.kafka.topics.clone();
        let llm = LlmClient::new(&settings.llm)?;
        let solver_id = settings.instance_id(SERVICE);
        let producer = Producer::new(&settings.kafka, &solver_id)?;
        let watch_stop = CancellationToken::new();
        let progress = ConsumerProgress::default();
        let publisher =
            ProgressPublisher::new(&settings.kafka, &solver_id, settings.solver.stream_chunk)?;
        let watch =
            BrokerWatch::spawn(producer.clone(), Duration::from_secs(5), watch_stop.clone());
        let health = Health::new(
            SERVICE,
            watch,
            topics.clone(),
            json!({
                "model": llm.model(),
                "llm_endpoint": llm.endpoint(),
                "consumer_group": CONSUMER_GROUP,
                "concurrency": settings.solver.concurrency,
                "task_deadline_secs": settings.solver.task_deadline.as_secs(),
                "solver_id": solver_id,
                "checkpointer": settings.solver.checkpointer.as_str(),
            }),
        )
        .with_live({
            let llm = llm.clone();
            let publisher = publisher.clone();
            move || json!({"llm_concurrency": llm.concurrency(), "progress": publisher.stats()})
        })
        .with_check("stalled_partitions", {
            let progress = progress.clone();
            let after = settings.solver.consumer_stall;
            move || {
                let stalls = progress.stalled(after);
                (!stalls.is_empty()).then(|| json!(stalls))
            }
        });
        let deadline = settings.solver.task_deadline;
        let max_result_bytes = settings.solver.max_result_bytes;
        let describe = agent::Describe {
            model: llm.model().to_owned(),
            concurrency: settings.solver.concurrency,
        };
        let (checkpointer, memory_saver) = checkpointer(&settings).await?;
        let checkpointed = checkpointer.is_some();
        let graph = solver::graph(llm, checkpointer)
            .map_err(|err| agent_runtime::Error::Task(err.into()))?;
        let router = http::with_common_layers(
            health_routes(health).merge(http::openapi::routes(crate::openapi::document())),
            Duration::from_secs(10),
            http::Cors::from_settings(&settings.http)?,
        );
        let listener = http::bind(
            &settings.http.bind_address,
            settings.http.port_or(DEFAULT_PORT),
        )
        .await?;
        Ok(Self {
            settings,
            listener,
            router,
            deps: Deps {
                graph,
                producer,
                results_topic: topics.results,
                solver_id,
                checkpointed,
                memory_saver,
                deadline,
                max_result_bytes,
                seen: SeenTasks::default(),
                progress: Some(publisher),
                review_locks: Default::default(),
            },
            watch_stop,
            progress,
            describe,
        })
    }

    /// The bound address of the health server.
    ///
    /// # Errors
    /// Only if the OS cannot say.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Creates the topics (retrying until the broker answers), then consumes tasks in
    /// group `task-solver` until `shutdown` fires; work in flight gets
    /// `SHUTDOWN_DRAIN_SECS` to finish.
    ///
    /// # Errors
    /// A Kafka configuration error.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<()> {
        let Self {
            settings,
            listener,
            router,
            deps,
            watch_stop,
            progress,
            describe,
        } = self;
        tracing::info!(address = %listener.local_addr()?, solver_id = %deps.solver_id, "task-solver listening");
        let server = tokio::spawn({
            let limits = settings.http.limits;
            let shutdown = shutdown.clone();
            async move { http::serve(listener, router, &limits, shutdown).await }
        });
        let topics = settings.kafka.topics.clone();
        let mut outcome = Ok(());
        let mut agents = None;
        if kafka::ensure_service_topics(&settings.kafka, &shutdown).await {
            // Agent requests of type `task-solver`, and `describe`, beside the tasks.
            let options = RuntimeOptions {
                service: SERVICE.to_owned(),
                concurrency: settings.solver.concurrency,
                max_attempts: settings.solver.consumer_max_attempts,
                drain_timeout: settings.shutdown_drain,
                // The run stops at the task deadline and its failed result is the reply.
                handler_timeout: deps.deadline + Duration::from_secs(5),
                ..RuntimeOptions::default()
            };
            agents = Some(tokio::spawn(agent::serve(
                deps.clone(),
                settings.kafka.clone(),
                options,
                describe,
                shutdown.clone(),
            )));
            let options = ConsumerOptions {
                group_id: CONSUMER_GROUP.to_owned(),
                topics: vec![topics.events.clone()],
                dead_letter_topic: topics.dead_letter.clone(),
                client_id: deps.solver_id.clone(),
                drain_timeout: settings.shutdown_drain,
                concurrency: settings.solver.concurrency,
                max_attempts: settings.solver.consumer_max_attempts,
                progress,
            };
            // The most tasks worked on at once, next to `tasks_in_flight` (worker).
            metrics::gauge!("task_concurrency_limit").set(options.concurrency as f64);
            let producer = deps.producer.clone();
            let worker_deps = deps.clone();
            outcome = run_at_least_once(
                &settings.kafka,
                options,
                producer,
                shutdown.clone(),
                move |message| {
                    let deps = worker_deps.clone();
                    async move { worker::process(&deps, message).await }
                },
            )
            .await;
        }
        shutdown.cancel();
        if let Some(agents) = agents
            && let Err(err) = agents.await
        {
            tracing::error!(error = %err, "agent runtime failed");
        }
        watch_stop.cancel();
        deps.producer.flush(Duration::from_secs(5));
        if let Some(publisher) = &deps.progress {
            publisher.flush(Duration::from_secs(2));
        }
        if let Err(err) = server.await {
            tracing::error!(error = %err, "health server failed");
        }
        tracing::info!("task-solver stopped");
        outcome
    }
}

/// The solver graph's checkpointer from `DISABLECHECKPOINTER`, `CHECKPOINTER` and
/// `DATABASE_URL` or `DATA_DIR`; the in-memory one is also returned to drop finished
/// threads.
///
/// # Errors
/// [`agent_runtime::Error::Config`] naming `DATABASE_URL` or `DATA_DIR` when the
/// checkpoint database cannot be used.
async fn checkpointer(
    settings: &Settings,
) -> Result<(Option<Arc<dyn Checkpointer>>, Option<InMemorySaver>)> {
    match settings.solver.checkpointer {
        CheckpointerKind::Disabled => Ok((None, None)),
        CheckpointerKind::Postgres => {
            let url = settings.database_url.as_ref().ok_or_else(|| {
                agent_runtime::Error::Config(
                    "DATABASE_URL must be set when CHECKPOINTER=postgres".into(),
                )
            })?;
            let saver = PostgresSaver::connect(url.expose_secret())
                .await
                .map_err(|err| {
                    agent_runtime::Error::Config(format!(
                        "DATABASE_URL: cannot use the checkpoint database: {err}"
                    ))
                })?;
            Ok((Some(Arc::new(saver)), None))
        }
        CheckpointerKind::Sqlite => {
            let path = settings.data_dir.join(CHECKPOINTS_FILE);
            let saver = SqliteSaver::open(&path).await.map_err(|err| {
                agent_runtime::Error::Config(format!(
                    "DATA_DIR: cannot use the checkpoint file: {err}"
                ))
            })?;
            tracing::info!(file = %path.display(), "checkpoints in SQLite");
            Ok((Some(Arc::new(saver)), None))
        }
        CheckpointerKind::Memory => {
            let saver = InMemorySaver::new();
            Ok((Some(Arc::new(saver.clone())), Some(saver)))
        }
    }
}
