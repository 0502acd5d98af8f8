//! Topic creation at start-up.

use std::time::Duration;

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    types::RDKafkaErrorCode,
};
use tokio_util::sync::CancellationToken;

use crate::{Result, kafka::KafkaSettings};

/// Creates the missing ones of `topics` with `KAFKA_PARTITIONS` partitions and
/// `KAFKA_REPLICATION_FACTOR` replicas; existing topics are left as they are.
///
/// Retries every 2 s, logging why, until the broker answers or `shutdown` fires (then
/// returns `Ok(false)`); `Ok(true)` once every topic exists. A principal without the
/// right to create topics (least-privilege ACLs: the chart's topics Job creates them)
/// gets an authorization error: a topic refused so counts as there when the broker's
/// metadata shows it, and is waited for otherwise.
///
/// # Errors
/// [`crate::Error::Kafka`] when the admin client cannot be created.
pub async fn ensure_topics(
    settings: &KafkaSettings,
    topics: &[&str],
    shutdown: &CancellationToken,
) -> Result<bool> {
    let admin: AdminClient<DefaultClientContext> =
        settings.client_config("langgraph-kafka-admin").create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                settings.partitions,
                TopicReplication::Fixed(settings.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    loop {
        let failure = match admin.create_topics(&new_topics, &options).await {
            Ok(results) => {
                let failures: Vec<String> = results
                    .into_iter()
                    .filter_map(|r| match r {
                        Ok(name) => {
                            tracing::info!(topic = %name, partitions = settings.partitions, "topic created");
                            None
                        }
                        Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => None,
                        Err((
                            name,
                            RDKafkaErrorCode::TopicAuthorizationFailed
                            | RDKafkaErrorCode::ClusterAuthorizationFailed,
                        )) if exists(&admin, &name) => None,
                        Err((name, code)) => Some(format!("{name}: {code}")),
                    })
                    .collect();
                if failures.is_empty() {
                    return Ok(true);
                }
                failures.join(", ")
            }
            Err(err) => err.to_string(),
        };
        tracing::warn!(
            bootstrap = %settings.bootstrap_servers,
            error = %failure,
            "cannot create topics yet; is the broker up? retrying in 2 s"
        );
        tokio::select! {
            () = shutdown.cancelled() => return Ok(false),
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Whether the broker's metadata shows `topic` with partitions (a short blocking call:
/// topic creation runs once at start-up).
fn exists(admin: &AdminClient<DefaultClientContext>, topic: &str) -> bool {
    admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .is_ok_and(|metadata| {
            metadata
                .topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        })
}

/// [`ensure_topics`] for the events, results and dead-letter topics of `settings`,
/// logging a failure instead of returning it: what every service runs at start-up.
/// `true` once the topics exist, `false` when shutdown came first or creation failed.
pub async fn ensure_service_topics(settings: &KafkaSettings, shutdown: &CancellationToken) -> bool {
    let topics = settings.topics.clone();
    match ensure_topics(settings, &topics.all(), shutdown).await {
        Ok(done) => done,
        Err(err) => {
            tracing::error!(error = %err, "cannot create topics");
            false
        }
    }
}
