//! Topic creation at start-up.

use std::{collections::HashSet, time::Duration};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    types::RDKafkaErrorCode,
};
use tokio_util::sync::CancellationToken;

use crate::{
    Result,
    kafka::{KafkaSettings, Topics},
};

/// The topic configs of the results topic: compacted by key (the task id), so the log
/// keeps at least each task's last result for ever while older results of a task go;
/// `min.compaction.lag.ms` of one day (86 400 000 ms) keeps every fresh result whole for
/// that long, so that replicas and views reading the topic see all of a task's results
/// before compaction may keep only its last one.
pub const RESULTS_TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "compact"),
    ("min.compaction.lag.ms", "86400000"),
];

/// The topic configs of the progress topic: its records (tokens above all) are kept one
/// day (`retention.ms` 86 400 000): long enough to replay a finished task's stream, short
/// enough that the topic stays small.
pub const PROGRESS_TOPIC_CONFIGS: &[(&str, &str)] = &[("retention.ms", "86400000")];

/// A topic to create: its name and the topic configs (`name=value`, Kafka's topic-level
/// configs such as `cleanup.policy`) it is created with; the broker's defaults apply to
/// the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec<'a> {
    /// The topic's name.
    pub name: &'a str,
    /// Topic configs set at creation, as `(name, value)` pairs; empty: none.
    pub configs: &'a [(&'a str, &'a str)],
}

impl<'a> TopicSpec<'a> {
    /// A topic with the broker's default configs.
    pub const fn plain(name: &'a str) -> Self {
        Self { name, configs: &[] }
    }

    /// The four topics of `topics` as the services create them: the events and
    /// dead-letter topics plain, the results topic compacted ([`RESULTS_TOPIC_CONFIGS`]),
    /// the progress topic kept a day ([`PROGRESS_TOPIC_CONFIGS`]).
    pub fn service_topics(topics: &'a Topics) -> [Self; 4] {
        [
            Self::plain(&topics.events),
            Self {
                name: &topics.results,
                configs: RESULTS_TOPIC_CONFIGS,
            },
            Self::plain(&topics.dead_letter),
            Self {
                name: &topics.progress,
                configs: PROGRESS_TOPIC_CONFIGS,
            },
        ]
    }
}

impl<'a> From<&'a str> for TopicSpec<'a> {
    fn from(name: &'a str) -> Self {
        Self::plain(name)
    }
}

/// Creates the missing ones of `topics` with `KAFKA_PARTITIONS` partitions,
/// `KAFKA_REPLICATION_FACTOR` replicas and each spec's configs; existing topics are left
/// as they are — their configs too: a results topic created before it was compacted
/// stays `cleanup.policy=delete` until altered (`kafka-configs.sh --alter`, see
/// docs/deploy.md).
///
/// Retries every 2 s, logging why, until the broker answers or `shutdown` fires (then
/// returns `Ok(false)`); `Ok(true)` once every topic exists. A principal without the
/// right to create topics (least-privilege ACLs: the chart's topics Job creates them)
/// gets an authorization error: a topic refused so counts as there when the broker's
/// metadata shows it, and is waited for otherwise. A broker that refuses a spec's configs
/// (`INVALID_CONFIG`, `POLICY_VIOLATION`, `UNSUPPORTED_VERSION`) gets that topic without
/// them, with one WARN naming the topic, the configs and the broker's answer: the topic
/// is still needed, and its configs are an optimisation of its retention.
///
/// # Errors
/// [`crate::Error::Kafka`] when the admin client cannot be created.
pub async fn ensure_topics(
    settings: &KafkaSettings,
    topics: &[TopicSpec<'_>],
    shutdown: &CancellationToken,
) -> Result<bool> {
    let admin: AdminClient<DefaultClientContext> =
        settings.client_config("langgraph-kafka-admin").create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    // Topics whose configs the broker refused: created plain from then on.
    let mut without_configs: HashSet<&str> = HashSet::new();
    loop {
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|spec| {
                let topic = NewTopic::new(
                    spec.name,
                    settings.partitions,
                    TopicReplication::Fixed(settings.replication_factor),
                );
                if without_configs.contains(spec.name) {
                    topic
                } else {
                    spec.configs
                        .iter()
                        .fold(topic, |topic, (key, value)| topic.set(key, value))
                }
            })
            .collect();
        let mut refused_configs = false;
        let failure = match admin.create_topics(&new_topics, &options).await {
            Ok(results) => {
                let mut failures = Vec::new();
                for result in results {
                    match result {
                        Ok(name) => {
                            let configs = topics
                                .iter()
                                .find(|spec| spec.name == name)
                                .filter(|_| !without_configs.contains(name.as_str()))
                                .map(|spec| configs_text(spec.configs))
                                .unwrap_or_default();
                            tracing::info!(topic = %name, partitions = settings.partitions, configs = %configs, "topic created");
                        }
                        Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((
                            name,
                            RDKafkaErrorCode::TopicAuthorizationFailed
                            | RDKafkaErrorCode::ClusterAuthorizationFailed,
                        )) if exists(&admin, &name) => {}
                        Err((
                            name,
                            code @ (RDKafkaErrorCode::InvalidConfig
                            | RDKafkaErrorCode::PolicyViolation
                            | RDKafkaErrorCode::UnsupportedVersion),
                        )) if configured(topics, &without_configs, &name).is_some() => {
                            let spec = configured(topics, &without_configs, &name)
                                .expect("checked by the guard");
                            tracing::warn!(
                                topic = %name,
                                configs = %configs_text(spec.configs),
                                error = %code,
                                "the broker refuses the topic's configs; creating it without them"
                            );
                            without_configs.insert(spec.name);
                            refused_configs = true;
                        }
                        Err((name, code)) => failures.push(format!("{name}: {code}")),
                    }
                }
                if failures.is_empty() && !refused_configs {
                    return Ok(true);
                }
                failures.join(", ")
            }
            Err(err) => err.to_string(),
        };
        if refused_configs && failure.is_empty() {
            // Again at once, without the refused configs.
            continue;
        }
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

/// The spec of topic `name` when it still is created with configs.
fn configured<'s, 'a>(
    topics: &'s [TopicSpec<'a>],
    without_configs: &HashSet<&str>,
    name: &str,
) -> Option<&'s TopicSpec<'a>> {
    topics
        .iter()
        .find(|spec| spec.name == name && !spec.configs.is_empty())
        .filter(|spec| !without_configs.contains(spec.name))
}

/// `a=1,b=2`, as `kafka-configs.sh --add-config` takes them.
fn configs_text(configs: &[(&str, &str)]) -> String {
    configs
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
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

/// [`ensure_topics`] for the events, results and dead-letter topics of `settings`
/// ([`TopicSpec::service_topics`]: the results topic compacted), logging a failure
/// instead of returning it: what every service runs at start-up. `true` once the topics
/// exist, `false` when shutdown came first or creation failed.
pub async fn ensure_service_topics(settings: &KafkaSettings, shutdown: &CancellationToken) -> bool {
    match ensure_topics(
        settings,
        &TopicSpec::service_topics(&settings.topics),
        shutdown,
    )
    .await
    {
        Ok(done) => done,
        Err(err) => {
            tracing::error!(error = %err, "cannot create topics");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_results_topic_is_compacted_and_the_progress_topic_kept_a_day() {
        let topics = Topics::new("dev", None, None, None, None);
        let specs = TopicSpec::service_topics(&topics);
        let configs = |name: &str| {
            specs
                .iter()
                .find(|spec| spec.name == name)
                .map(|spec| configs_text(spec.configs))
        };
        assert_eq!(
            configs("dev-langgraph-task-results").as_deref(),
            Some("cleanup.policy=compact,min.compaction.lag.ms=86400000")
        );
        assert_eq!(configs("dev-langgraph-agent-events").as_deref(), Some(""));
        assert_eq!(configs("dev-langgraph-dead-letter").as_deref(), Some(""));
        assert_eq!(
            configs("dev-langgraph-task-progress").as_deref(),
            Some("retention.ms=86400000")
        );
    }
}
