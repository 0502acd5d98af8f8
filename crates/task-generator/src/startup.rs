//! Wiring: [`App::build`] and [`App::run_until_stopped`].

use std::{net::SocketAddr, sync::Arc, time::Duration};

use agent_runtime::{
    Result,
    agents::{AgentDescription, AgentRuntime, RuntimeOptions},
    config::{ResultsStoreKind, Settings},
    http::{self, Health},
    kafka::{self, BrokerWatch, Producer},
    llm::LlmClient,
};
use secrecy::ExposeSecret;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    DEFAULT_PORT, SERVICE,
    generation::{self, Deps},
    reader::{CatchUp, ViewReader},
    routes::{self, AppState},
    store::{MemoryStore, PostgresStore, SqliteStore, StoreError, ViewStore},
    streams::Streams,
};

/// How often finished tasks past `RESULTS_RETENTION_DAYS` are pruned from the view.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// A built task-generator: its port is bound, nothing runs until
/// [`App::run_until_stopped`].
pub struct App {
    settings: Settings,
    listener: TcpListener,
    router: axum::Router,
    producer: Producer,
    store: Arc<dyn ViewStore>,
    catch_up: CatchUp,
    watch_stop: CancellationToken,
    streams_stop: CancellationToken,
    /// The model client, whose load `describe` reports.
    llm: LlmClient,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    /// Builds the service from `settings`: Kafka producer, LLM client, generation graph,
    /// results view and routes; binds `PORT` (default 8001; 0 picks a free port). Does
    /// not need the broker to be up: a missing broker shows as `degraded` on `/health`.
    ///
    /// # Errors
    /// A configuration error (no model configured, bad Kafka settings), a results store
    /// that cannot be opened, or a port that cannot be bound.
    pub async fn build(settings: Settings) -> Result<Self> {
        // The metrics recorder, before anything is counted.
        let _ = agent_runtime::http::metrics::prometheus();
        let topics = settings.kafka.topics.clone();
        let llm = LlmClient::new(&settings.llm)?;
        let producer = Producer::new(&settings.kafka, SERVICE)?;
        let watch_stop = CancellationToken::new();
        let watch =
            BrokerWatch::spawn(producer.clone(), Duration::from_secs(5), watch_stop.clone());
        let graph = generation::graph(Deps {
            llm: llm.clone(),
            producer: producer.clone(),
            events_topic: topics.events.clone(),
        })
        .map_err(|err| agent_runtime::Error::Task(err.into()))?;
        let events_topic = topics.events.clone();
        let store = open_store(&settings).await?;
        let catch_up = CatchUp::default();
        let streams_stop = CancellationToken::new();
        let streams = Arc::new(Streams::new(&settings.kafka, streams_stop.clone())?);
        let health = Health::new(
            SERVICE,
            watch,
            topics,
            json!({
                "model": llm.model(),
                "llm_endpoint": llm.endpoint(),
                "results_store": settings.view.store.as_str(),
            }),
        )
        .with_live({
            let llm = llm.clone();
            let catch_up = catch_up.clone();
            let streams = Arc::clone(&streams);
            move || {
                let mut live = json!({
                    "llm_concurrency": llm.concurrency(),
                    "streams": {"partitions_read": streams.feeds()},
                });
                if let Some((group, partitions)) = catch_up.group() {
                    live["results_view_group"] = json!({"group": group, "partitions": partitions});
                }
                live
            }
        })
        .with_check("results_view", {
            let catch_up = catch_up.clone();
            move || {
                (!catch_up.is_caught_up())
                    .then(|| json!({"catching_up": true, "behind": catch_up.behind()}))
            }
        });
        let request_timeout = settings.llm.timeout * 4 + Duration::from_secs(30);
        let router = routes::router(
            AppState {
                graph,
                producer: producer.clone(),
                events_topic,
                store: Arc::clone(&store),
                catch_up: catch_up.clone(),
                api_keys: http::ApiKeys::from_settings(&settings.http)?,
                rate_limit: http::RateLimit::from_settings(&settings.http),
                cors: http::Cors::from_settings(&settings.http)?,
                streams,
                checkpointer: settings.solver.checkpointer,
            },
            health,
            request_timeout,
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
            producer,
            store,
            catch_up,
            watch_stop,
            streams_stop,
            llm,
        })
    }

    /// The bound address (its port is the real one when `PORT=0`).
    ///
    /// # Errors
    /// Only if the OS cannot say.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Creates the topics (retrying until the broker answers), starts the view's reader
    /// ([`ViewReader`]) and its pruning, and serves HTTP until `shutdown` fires; then lets
    /// requests in flight finish within `HTTP_SHUTDOWN_GRACE_SECS`.
    ///
    /// # Errors
    /// Only if the OS cannot say the bound address.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<()> {
        let Self {
            settings,
            listener,
            router,
            producer,
            store,
            catch_up,
            watch_stop,
            streams_stop,
            llm,
        } = self;
        // Streams end at shutdown (their clients reconnect elsewhere), so that the
        // server's graceful shutdown does not wait on them.
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                streams_stop.cancel();
            }
        });
        tracing::info!(address = %listener.local_addr()?, "task-generator listening");
        let background = {
            let settings = settings.clone();
            let shutdown = shutdown.clone();
            let store = Arc::clone(&store);
            let producer = producer.clone();
            tokio::spawn(async move {
                kafka::ensure_service_topics(&settings.kafka, &shutdown).await;
                let reader = ViewReader::new(Arc::clone(&store), &settings.kafka, catch_up);
                let prune = prune(
                    Arc::clone(&store),
                    settings.view.retention,
                    shutdown.clone(),
                );
                let deadlines = async {
                    if let Some(timeout) = settings.view.review_timeout {
                        crate::deadline::review_deadlines(
                            store,
                            producer,
                            settings.kafka.topics.events.clone(),
                            timeout,
                            shutdown.clone(),
                        )
                        .await;
                    }
                };
                let describe = describe(settings.clone(), llm, shutdown.clone());
                tokio::join!(reader.run(shutdown.clone()), prune, deadlines, describe);
            })
        };
        http::serve(listener, router, &settings.http.limits, shutdown.clone()).await;
        watch_stop.cancel();
        background.abort();
        producer.flush(Duration::from_secs(5));
        tracing::info!("task-generator stopped");
        Ok(())
    }
}

/// Answers `describe` broadcasts ([`agent_runtime::agents`]) as agent type
/// `task-generator` until `shutdown` fires: `in_flight` is the model requests being made
/// or waiting, `concurrency` the adaptive limit on them now. Starts its agent runtime
/// once the broker answers; logs, rather than returns, what stops it.
async fn describe(settings: Settings, llm: LlmClient, shutdown: CancellationToken) {
    let options = RuntimeOptions {
        service: SERVICE.to_owned(),
        ..RuntimeOptions::default()
    };
    let model = llm.model().to_owned();
    let describe = move |_: &AgentRuntime| {
        let load = llm.concurrency();
        AgentDescription {
            agent_type: SERVICE.into(),
            agent_id: String::new(),
            service: SERVICE.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            model: Some(model.clone()),
            in_flight: (load.in_flight + load.waiting) as u64,
            concurrency: load.limit as u64,
        }
    };
    let instance_id = settings.instance_id(SERVICE);
    let nothing_to_set_up = |_: &AgentRuntime| async { Ok(true) };
    AgentRuntime::run_service(
        &settings.kafka,
        &instance_id,
        options,
        shutdown,
        nothing_to_set_up,
        describe,
    )
    .await;
}

/// The results store `settings` name (`RESULTS_STORE`).
///
/// # Errors
/// [`agent_runtime::Error::Config`] naming `DATA_DIR` or `DATABASE_URL` when the store
/// cannot be opened.
async fn open_store(settings: &Settings) -> Result<Arc<dyn ViewStore>> {
    let config = |var: &str, err: StoreError| {
        agent_runtime::Error::Config(format!("{var}: cannot open the results store: {err}"))
    };
    Ok(match settings.view.store {
        ResultsStoreKind::Memory => Arc::new(MemoryStore::new()),
        ResultsStoreKind::Sqlite => {
            // One file a set of topics: a view is of the topics it was read from.
            let file = format!("results-{}.sqlite", settings.kafka.topics.events);
            let path = settings.data_dir.join(file);
            Arc::new(
                SqliteStore::open(&path)
                    .await
                    .map_err(|err| config("DATA_DIR", err))?,
            )
        }
        ResultsStoreKind::Postgres => {
            let url = settings.database_url.as_ref().ok_or_else(|| {
                agent_runtime::Error::Config(
                    "DATABASE_URL must be set when RESULTS_STORE=postgres".into(),
                )
            })?;
            Arc::new(
                PostgresStore::connect(url.expose_secret())
                    .await
                    .map_err(|err| config("DATABASE_URL", err))?,
            )
        }
    })
}

/// Removes finished tasks older than `retention` from `store` every [`PRUNE_EVERY`]
/// (first one [`PRUNE_EVERY`] after start), until `shutdown` fires; never when
/// `retention` is zero.
async fn prune(store: Arc<dyn ViewStore>, retention: Duration, shutdown: CancellationToken) {
    if retention.is_zero() {
        return;
    }
    let Ok(retention) = chrono::Duration::from_std(retention) else {
        return;
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
        match store.prune(chrono::Utc::now() - retention).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "results view pruned"),
            Err(err) => tracing::warn!(error = %err, "results view prune failed; next in an hour"),
        }
    }
}
