//! The agent runtime on the test broker: [`agent_settings`] and [`start_agent`].

use std::time::Duration;

use agent_runtime::{
    agents::{AgentRuntime, RuntimeOptions},
    kafka::KafkaSettings,
};
use tokio_util::sync::CancellationToken;

use crate::Broker;

/// The Kafka settings of the agent tests: `broker`, with a 3 s session timeout so that a
/// consumer group forms in about 1.5 s on Tansu.
pub fn agent_settings(broker: &Broker) -> KafkaSettings {
    KafkaSettings {
        session_timeout: Duration::from_secs(3),
        ..KafkaSettings::for_brokers(&broker.bootstrap())
    }
}

/// An agent runtime of instance `instance_id` on `broker`, with the default options.
///
/// # Panics
/// When it does not start.
pub async fn start_agent(broker: &Broker, instance_id: &str) -> AgentRuntime {
    AgentRuntime::start(
        &agent_settings(broker),
        instance_id,
        RuntimeOptions::default(),
        CancellationToken::new(),
    )
    .await
    .expect("runtime starts")
    .expect("not shut down")
}
