//! Wiring: [`App::build`] and [`App::run_until_stopped`].

use std::{net::SocketAddr, time::Duration};

use agent_runtime::{
    Result,
    agents::{AgentDescription, AgentRuntime, RuntimeOptions},
    config::Settings,
    http::{self, Health},
    kafka::{self, BrokerWatch, Producer},
};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    DEFAULT_PORT, SERVICE,
    last_message::{Follower, LastMessages, ViewOptions},
    policy::TopicPolicy,
    routes::{self, AppState, agents::Agents},
};

/// A built agent-comms: its port is bound, nothing runs until
/// [`App::run_until_stopped`].
pub struct App {
    settings: Settings,
    listener: TcpListener,
    router: axum::Router,
    producer: Producer,
    watch_stop: CancellationToken,
    follower: Follower,
    policy: TopicPolicy,
    agents: Agents,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    /// Builds the bridge from `settings`; binds `PORT` (default 8000; 0 picks a free
    /// port). Needs no LLM.
    ///
    /// # Errors
    /// Bad Kafka settings or a port that cannot be bound.
    pub async fn build(settings: Settings) -> Result<Self> {
        // The metrics recorder, before anything is counted.
        let _ = agent_runtime::http::metrics::prometheus();
        let topics = settings.kafka.topics.clone();
        let producer = Producer::new(&settings.kafka, SERVICE)?;
        let watch_stop = CancellationToken::new();
        let watch =
            BrokerWatch::spawn(producer.clone(), Duration::from_secs(5), watch_stop.clone());
        let health = Health::new(SERVICE, watch, topics.clone(), json!({}));
        let policy = TopicPolicy::from_settings(&settings.comms, &topics)?;
        let (last_messages, follower) = LastMessages::new(
            &settings.kafka,
            ViewOptions {
                on_demand: false,
                ..ViewOptions::new(policy.read_topics().to_vec())
            },
        )?;
        let agents = Agents::default();
        let router = routes::router(
            AppState {
                agents: agents.clone(),
                producer: producer.clone(),
                topics,
                last_messages,
                policy: policy.clone(),
                api_keys: http::ApiKeys::from_settings(&settings.http)?,
                rate_limit: http::RateLimit::from_settings(&settings.http),
                cors: http::Cors::from_settings(&settings.http)?,
            },
            health,
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
            watch_stop,
            follower,
            policy,
            agents,
        })
    }

    /// The bound address.
    ///
    /// # Errors
    /// Only if the OS cannot say.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Creates the topics and follows the readable ones ([`Follower::run`]) in the
    /// background, and serves HTTP until `shutdown` fires; then lets requests in flight
    /// finish within `HTTP_SHUTDOWN_GRACE_SECS`.
    ///
    /// # Errors
    /// Only if the OS cannot say the bound address.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<()> {
        tracing::info!(address = %self.listener.local_addr()?, "agent-comms listening");
        let topics_task = {
            let settings = self.settings.clone();
            let shutdown = shutdown.clone();
            // The service topics as every service creates them (the results topic
            // compacted), then the policy's other topics plain.
            let policy_topics: Vec<String> = self
                .policy
                .all_topics()
                .into_iter()
                .filter(|topic| !settings.kafka.topics.all().contains(&topic.as_str()))
                .collect();
            tokio::spawn(async move {
                let mut specs = kafka::TopicSpec::service_topics(&settings.kafka.topics).to_vec();
                specs.extend(policy_topics.iter().map(|t| kafka::TopicSpec::plain(t)));
                if let Err(err) = kafka::ensure_topics(&settings.kafka, &specs, &shutdown).await {
                    tracing::error!(error = %err, "cannot create topics");
                }
            })
        };
        let follower = tokio::spawn(self.follower.run(shutdown.clone()));
        let agents = tokio::spawn(serve_agents(
            self.settings.clone(),
            self.agents.clone(),
            shutdown.clone(),
        ));
        http::serve(
            self.listener,
            self.router,
            &self.settings.http.limits,
            shutdown.clone(),
        )
        .await;
        topics_task.abort();
        // Stopped by `shutdown` already; it only logs and drops its consumer.
        if tokio::time::timeout(Duration::from_secs(1), follower)
            .await
            .is_err()
        {
            tracing::warn!("the topic view did not stop within 1 s");
        }
        if let Err(err) = agents.await {
            tracing::error!(error = %err, "agent runtime failed");
        }
        self.watch_stop.cancel();
        self.producer.flush(Duration::from_secs(5));
        tracing::info!("agent-comms stopped");
        Ok(())
    }
}

/// Runs agent-comms' agent runtime until `shutdown` fires: starts it (trying again while
/// the broker does not answer), hands it to the routes and answers `describe` as agent
/// type `agent-comms` (`in_flight`: requests waiting for replies; `concurrency`: the
/// most that may wait). Logs, rather than returns, what stops it.
async fn serve_agents(settings: Settings, agents: Agents, shutdown: CancellationToken) {
    let options = RuntimeOptions {
        service: SERVICE.to_owned(),
        ..RuntimeOptions::default()
    };
    let describe = |runtime: &AgentRuntime| AgentDescription {
        agent_type: SERVICE.into(),
        agent_id: String::new(),
        service: SERVICE.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        model: None,
        in_flight: runtime.pending() as u64,
        concurrency: runtime.options().max_pending as u64,
    };
    let hand_to_routes = |runtime: &AgentRuntime| {
        agents.set(runtime.clone());
        async { Ok(true) }
    };
    let instance_id = settings.instance_id(SERVICE);
    AgentRuntime::run_service(
        &settings.kafka,
        &instance_id,
        options,
        shutdown,
        hand_to_routes,
        describe,
    )
    .await;
}
