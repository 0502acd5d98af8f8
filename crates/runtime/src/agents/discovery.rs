//! Discovery: which agent instances run now. Every instance that serves a description
//! ([`AgentRuntime::serve_describe`]) answers a `describe` broadcast with an
//! [`AgentDescription`]; [`AgentRuntime::discover`] broadcasts one and gathers the
//! answers that arrive within a window (calfkit's runtime discovery of agents, done as a
//! scatter-gather).
//!
//! Unlike a subscription, where one instance of each type gets a message (the type's
//! consumer group), a `describe` must reach every instance. So each instance reads the
//! describe topic, `{prefix}-agent-describe`, by assignment — no consumer group, nothing
//! committed — from the end partition 0 had when it began, and every broadcast is
//! produced to partition 0. At-most-once is right here: an answer missed is an instance
//! missing from one listing, and a broadcast past its deadline is not answered at all.
//! The topic keeps its records an hour ([`DESCRIBE_TOPIC_CONFIGS`]).

use std::{collections::HashSet, sync::Arc, time::Duration};

use chrono::Utc;
use rdkafka::Message;
use serde::{Deserialize, Serialize};

use super::{
    AgentRuntime, MAX_GATHER_REPLIES,
    envelope::{self, MAX_ID_BYTES, valid_id},
    error::SendError,
    topics,
};
use crate::{
    Error, Result,
    kafka::{
        CloudEvent, PartitionLookup, TopicReader, TopicSpec, ensure_topics,
        headers::{AGENT_REPLY, AGENT_REQUEST},
    },
};

/// The topic configs of the describe topic: records kept one hour (`retention.ms`
/// 3 600 000); a broadcast is worth nothing after its window.
pub const DESCRIBE_TOPIC_CONFIGS: &[(&str, &str)] = &[("retention.ms", "3600000")];

/// The longest `service`, `version` or `model` of a description, in bytes; a longer one
/// makes the answer invalid.
pub const MAX_DESCRIPTION_FIELD_BYTES: usize = 256;

/// What an instance says of itself in answer to a `describe` broadcast, as JSON:
/// `{"agent_type", "agent_id", "service", "version", "model", "in_flight",
/// "concurrency"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentDescription {
    /// The agent type the instance answers for (e.g. `task-solver`); 1 to 128 visible
    /// ASCII characters.
    pub agent_type: String,
    /// The instance's id (e.g. its pod name); set by the runtime to its instance id.
    pub agent_id: String,
    /// The service it is part of (e.g. `task-solver`).
    pub service: String,
    /// The service's version (e.g. `0.1.0`).
    pub version: String,
    /// The model it asks, when it asks one.
    pub model: Option<String>,
    /// Work in flight now, in the service's own unit (tasks being solved, model
    /// requests being made, requests waiting for replies).
    pub in_flight: u64,
    /// How much of that work it takes at once.
    pub concurrency: u64,
}

impl AgentDescription {
    /// Checks a description received from another instance: ids visible ASCII of at
    /// most [`MAX_ID_BYTES`], other strings at most [`MAX_DESCRIPTION_FIELD_BYTES`].
    ///
    /// # Errors
    /// The first field out of bounds, named.
    pub fn check(&self) -> std::result::Result<(), String> {
        for (name, value) in [
            ("agent_type", &self.agent_type),
            ("agent_id", &self.agent_id),
        ] {
            if !valid_id(value) {
                return Err(format!(
                    "{name} must be 1 to {MAX_ID_BYTES} visible ASCII characters"
                ));
            }
        }
        let fields = [
            ("service", Some(&self.service)),
            ("version", Some(&self.version)),
            ("model", self.model.as_ref()),
        ];
        for (name, value) in fields {
            if value.is_some_and(|v| v.len() > MAX_DESCRIPTION_FIELD_BYTES) {
                return Err(format!(
                    "{name} is over {MAX_DESCRIPTION_FIELD_BYTES} bytes"
                ));
            }
        }
        Ok(())
    }
}

/// What [`AgentRuntime::discover`] gathered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// One description per instance (agent type and id) that answered within the
    /// window, in order of arrival.
    pub agents: Vec<AgentDescription>,
    /// Answers dropped as invalid (not a description, or out of bounds).
    pub invalid: usize,
    /// Whether the window ran out (it does unless [`MAX_GATHER_REPLIES`] answered).
    pub timed_out: bool,
}

impl AgentRuntime {
    /// Answers every `describe` broadcast ([`AgentRuntime::discover`]) from now on with
    /// `describe()`, its `agent_id` set to this instance's id: creates the describe
    /// topic when missing and reads its partition 0 from its end (see the [module
    /// docs](self)). A broadcast that is no valid request, or past its deadline, is not
    /// answered. `Ok(false)` when shutdown came first.
    ///
    /// # Errors
    /// [`Error::Kafka`] when a Kafka client cannot be created or the broker does not
    /// answer for the topic's partition 0; [`Error::Config`] when the topic has none.
    pub async fn serve_describe<F>(&self, describe: F) -> Result<bool>
    where
        F: Fn() -> AgentDescription + Send + Sync + 'static,
    {
        let inner = &self.inner;
        let topic = topics::describe_topic(&inner.settings.topic_prefix);
        let spec = TopicSpec {
            name: &topic,
            configs: DESCRIBE_TOPIC_CONFIGS,
        };
        if !ensure_topics(&inner.settings, &[spec], &inner.shutdown).await? {
            return Ok(false);
        }
        let client_id = format!("agent-{}-describe", inner.instance_id);
        let reader = open_from_end(&inner.settings, &topic, &client_id).await?;
        let replies = inner.reply_topic.clone();
        let producer = inner.producer.clone();
        let (instance_id, service) = (inner.instance_id.clone(), inner.options.service.clone());
        let describe = Arc::new(describe);
        let shutdown = inner.shutdown.clone();
        let task = tokio::spawn(async move {
            reader
                .follow(&shutdown, |message| {
                    let incoming = match envelope::parse_incoming(message, true, &replies) {
                        Ok(incoming) => incoming,
                        Err(reason) => {
                            tracing::debug!(
                                offset = message.offset(),
                                reason,
                                "not a describe request; ignored"
                            );
                            return;
                        }
                    };
                    if incoming.deadline.is_some_and(|d| d <= Utc::now()) {
                        return;
                    }
                    let Some(reply_to) = incoming.reply_to else {
                        return;
                    };
                    let mut description = describe();
                    description.agent_id.clone_from(&instance_id);
                    let event = CloudEvent::new(&service, AGENT_REPLY, incoming.trace);
                    let headers = envelope::reply_headers(
                        &event,
                        &incoming.correlation_id,
                        &instance_id,
                        &description.agent_type,
                    );
                    let producer = producer.clone();
                    tokio::spawn(async move {
                        let payload = serde_json::to_vec(&description).unwrap_or_default();
                        let sent = producer
                            .send_to_partition(
                                &reply_to.topic,
                                reply_to.partition,
                                Some(&incoming.correlation_id),
                                &payload,
                                headers,
                            )
                            .await;
                        if let Err(err) = sent {
                            tracing::warn!(error = %err, "describe answer not sent");
                        }
                    });
                })
                .await;
        });
        inner.lock_tasks().push(task);
        tracing::info!(topic, "answering describe broadcasts");
        Ok(true)
    }

    /// Broadcasts a `describe` on the describe topic and gathers, for `window`, the
    /// descriptions of the instances that answer ([`AgentRuntime::serve_describe`]): one
    /// per agent type and id, at most [`MAX_GATHER_REPLIES`]. Answers that are no valid
    /// description are counted in [`Discovered::invalid`] and dropped.
    ///
    /// # Errors
    /// [`SendError::Invalid`] for a zero window; [`SendError::Busy`],
    /// [`SendError::Closed`] as for [`AgentRuntime::send_message`];
    /// [`SendError::Runtime`] when the broker refuses the broadcast within the window.
    pub async fn discover(&self, window: Duration) -> Result<Discovered, SendError> {
        if window.is_zero() {
            return Err(SendError::Invalid("the window must be above 0".into()));
        }
        let inner = &self.inner;
        let topic = topics::describe_topic(&inner.settings.topic_prefix);
        let id = uuid::Uuid::new_v4().to_string();
        let mut waiting = inner.pending.wait(&id, MAX_GATHER_REPLIES)?;
        let deadline = Utc::now() + window;
        let mut found = Discovered {
            agents: Vec::new(),
            invalid: 0,
            timed_out: true,
        };
        let mut seen: HashSet<(String, String)> = HashSet::new();
        let collect = async {
            inner
                .ensure_known(TopicSpec {
                    name: &topic,
                    configs: DESCRIBE_TOPIC_CONFIGS,
                })
                .await?;
            let event = CloudEvent::new(&inner.options.service, AGENT_REQUEST, None);
            let headers = envelope::request_headers(
                &event,
                &id,
                &inner.instance_id,
                Some(&inner.reply),
                Some(deadline),
            );
            let body =
                serde_json::to_vec(&serde_json::json!({"describe": true})).map_err(Error::from)?;
            inner
                .producer
                .send_to_partition(&topic, 0, Some(&id), &body, headers)
                .await?;
            while let Some(routed) = waiting.replies.recv().await {
                let description = routed.and_then(|record| {
                    let value = record.body.map_err(|e| e.to_string())?;
                    let mut description: AgentDescription =
                        serde_json::from_value(value).map_err(|e| e.to_string())?;
                    description.agent_id = record.agent_id;
                    description.check()?;
                    Ok(description)
                });
                match description {
                    Ok(description) => {
                        let key = (description.agent_type.clone(), description.agent_id.clone());
                        if seen.insert(key) {
                            found.agents.push(description);
                        }
                    }
                    Err(reason) => {
                        tracing::warn!(reason, "invalid describe answer; dropped");
                        found.invalid += 1;
                    }
                }
                if found.agents.len() + found.invalid >= MAX_GATHER_REPLIES {
                    found.timed_out = false;
                    return Ok(());
                }
            }
            Err(SendError::Closed)
        };
        match tokio::time::timeout(window, collect).await {
            Ok(Err(err)) => Err(err),
            Ok(Ok(())) | Err(_) => Ok(found),
        }
    }
}

/// A reader of partition 0 of `topic` from the end it has now: a record produced after
/// this returns is read, whenever the reader starts fetching.
///
/// # Errors
/// [`Error::Kafka`] when a client cannot be created or the broker does not answer;
/// [`Error::Config`] when the topic has no partition.
pub(crate) async fn open_from_end(
    settings: &crate::kafka::KafkaSettings,
    topic: &str,
    client_id: &str,
) -> Result<TopicReader> {
    let lookup = PartitionLookup::new(settings, topic, client_id)?;
    let found = async {
        if lookup.partitions().await? < 1 {
            return Err(Error::Config(format!(
                "the topic {topic} has no partitions"
            )));
        }
        lookup.bounds(0).await
    }
    .await;
    // Destroying a librdkafka client blocks: not on the async workers.
    tokio::task::spawn_blocking(move || drop(lookup));
    let (_, end) = found?;
    TopicReader::open_partition(settings, topic, 0, rdkafka::Offset::Offset(end), client_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description() -> AgentDescription {
        AgentDescription {
            agent_type: "task-solver".into(),
            agent_id: "pod-1".into(),
            service: "task-solver".into(),
            version: "0.1.0".into(),
            model: Some("gpt-4o-mini".into()),
            in_flight: 2,
            concurrency: 1024,
        }
    }

    #[test]
    fn a_description_is_checked_field_by_field() {
        assert_eq!(description().check(), Ok(()));
        let spaced = AgentDescription {
            agent_type: "a b".into(),
            ..description()
        };
        assert!(spaced.check().expect_err("refused").contains("agent_type"));
        let long = AgentDescription {
            model: Some("m".repeat(MAX_DESCRIPTION_FIELD_BYTES + 1)),
            ..description()
        };
        assert!(long.check().expect_err("refused").contains("model"));
        let json = serde_json::to_value(description()).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"agent_type": "task-solver", "agent_id": "pod-1", "service": "task-solver",
                "version": "0.1.0", "model": "gpt-4o-mini", "in_flight": 2, "concurrency": 1024})
        );
        let extra = serde_json::json!({"agent_type": "x", "agent_id": "y", "service": "s", "version": "v",
            "model": null, "in_flight": 0, "concurrency": 1, "admin": true});
        assert!(serde_json::from_value::<AgentDescription>(extra).is_err());
    }
}
