//! Wiring: [`App::build`] and [`App::run_until_stopped`].

use std::{net::SocketAddr, time::Duration};

use agent_core::task::{Task, TaskResult};
use agent_runtime::{
    Result,
    config::Settings,
    http::{self, Health},
    kafka::{self, BrokerWatch, KafkaSettings, Producer, TopicReader},
    llm::LlmClient,
};
use rdkafka::{Message, Offset};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    DEFAULT_PORT, SERVICE,
    generation::{self, Deps},
    routes::{self, AppState},
    view::{LogPosition, ResultsView},
};

/// A built task-generator: its port is bound, nothing runs until
/// [`App::run_until_stopped`].
pub struct App {
    settings: Settings,
    listener: TcpListener,
    router: axum::Router,
    producer: Producer,
    view: ResultsView,
    watch_stop: CancellationToken,
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
    /// A configuration error (no model configured, bad Kafka settings) or a port that
    /// cannot be bound.
    pub async fn build(settings: Settings) -> Result<Self> {
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
        let view = ResultsView::new();
        let health = Health::new(
            SERVICE,
            watch,
            topics,
            json!({"model": llm.model(), "llm_endpoint": llm.endpoint()}),
        )
        .with_live({
            let llm = llm.clone();
            move || json!({"llm_concurrency": llm.concurrency()})
        });
        let request_timeout = settings.llm.timeout * 4 + Duration::from_secs(30);
        let router = routes::router(
            AppState {
                graph,
                view: view.clone(),
                api_keys: http::ApiKeys::from_settings(&settings.http)?,
                rate_limit: http::RateLimit::from_settings(&settings.http),
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
            view,
            watch_stop,
        })
    }

    /// The bound address (its port is the real one when `PORT=0`).
    ///
    /// # Errors
    /// Only if the OS cannot say.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The results view (tests read it directly).
    pub fn view(&self) -> ResultsView {
        self.view.clone()
    }

    /// Creates the topics (retrying until the broker answers), starts the view's readers
    /// and serves HTTP until `shutdown` fires; then lets requests in flight finish within
    /// `HTTP_SHUTDOWN_GRACE_SECS`.
    ///
    /// # Errors
    /// Only if the OS cannot say the bound address.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<()> {
        let Self {
            settings,
            listener,
            router,
            producer,
            view,
            watch_stop,
        } = self;
        tracing::info!(address = %listener.local_addr()?, "task-generator listening");
        let topics = settings.kafka.topics.clone();
        let background = {
            let settings = settings.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                kafka::ensure_service_topics(&settings.kafka, &shutdown).await;
                let events = follow(&settings.kafka, &topics.events, &shutdown, {
                    let view = view.clone();
                    move |message| {
                        let id = || {
                            Task::id_for_offset(
                                message.topic(),
                                message.partition(),
                                message.offset(),
                            )
                        };
                        if let Ok(task) = Task::from_json(message.payload().unwrap_or_default(), id)
                        {
                            view.record_task(&task);
                        }
                    }
                });
                let results = follow(&settings.kafka, &topics.results, &shutdown, {
                    let view = view.clone();
                    move |message| record_result(&view, message)
                });
                tokio::join!(events, results);
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

/// Applies one record of the results topic to `view`: a valid result keyed by its own
/// `task_id`, at its position in the partition (see [`ResultsView::record_result`]). A
/// result under another key is skipped: the key puts every result of a task in one
/// partition, which is what makes positions comparable.
fn record_result<M: Message>(view: &ResultsView, message: &M) {
    let offset = message.offset();
    match TaskResult::from_json(message.payload().unwrap_or_default()) {
        Ok(result) if message.key() == Some(result.task_id.to_string().as_bytes()) => {
            view.record_result(
                result,
                LogPosition {
                    partition: message.partition(),
                    offset,
                },
            );
        }
        Ok(result) => tracing::warn!(
            offset,
            task_id = %result.task_id,
            "skipping a result not keyed by its task_id"
        ),
        Err(err) => tracing::warn!(offset, error = %err, "skipping an invalid result"),
    }
}

/// Reads every partition of `topic` from the beginning ([`TopicReader`]), calling `apply`
/// on each record, until `shutdown` fires.
async fn follow(
    settings: &KafkaSettings,
    topic: &str,
    shutdown: &CancellationToken,
    apply: impl Fn(&rdkafka::message::BorrowedMessage<'_>),
) {
    let reader =
        match TopicReader::open(settings, topic, Offset::Beginning, SERVICE, shutdown).await {
            Ok(Some(reader)) => reader,
            Ok(None) => return,
            Err(err) => {
                tracing::error!(topic, error = %err, "cannot read topic for the results view");
                return;
            }
        };
    tracing::info!(topic, "results view reading");
    reader.follow(shutdown, apply).await;
}
