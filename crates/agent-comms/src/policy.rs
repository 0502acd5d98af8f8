//! [`TopicPolicy`]: which topics the bridge publishes to and reads from.
//!
//! An HTTP client of agent-comms is not a Kafka principal: without a policy it could
//! write results no solver produced, create topics at will, or read any topic the
//! service account can. So:
//!
//! - `COMMS_PUBLISH_TOPICS` (comma-separated; default: the events topic) lists the topics
//!   `POST /send_event` may publish to;
//! - `COMMS_READ_TOPICS` (default: the events and results topics) lists those
//!   `GET /last_message` may read;
//! - Kafka's internal topics (`__*`) and the dead-letter topic are refused whatever the
//!   lists say (a list naming one is a configuration error);
//! - `COMMS_REQUEST_AGENTS` (default: `task-solver`) lists the agent types
//!   `POST /request` may ask ([`agent_runtime::agents`]).
//!
//! A refused topic or agent type is a 403 naming the setting. The listed topics are created at
//! start-up, like the service topics; no client creates a topic
//! (`allow.auto.create.topics=false` on every client).

use agent_runtime::{
    Error, Result,
    config::CommsSettings,
    http::ApiError,
    kafka::{Topics, valid_topic_name},
};

/// The topics of the bridge, checked on every request.
#[derive(Debug, Clone)]
pub struct TopicPolicy {
    publish: Vec<String>,
    read: Vec<String>,
    request: Vec<String>,
    dead_letter: String,
}

/// The agent types `POST /request` may ask when `COMMS_REQUEST_AGENTS` is unset.
pub const DEFAULT_REQUEST_AGENTS: &[&str] = &["task-solver"];

impl TopicPolicy {
    /// The policy of `settings`: `COMMS_PUBLISH_TOPICS`, `COMMS_READ_TOPICS` and
    /// `COMMS_REQUEST_AGENTS`, or their defaults (made of the service `topics`).
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting when a name is not a valid topic name, or is
    /// an internal or the dead-letter topic, or is not a valid agent type.
    pub fn from_settings(settings: &CommsSettings, topics: &Topics) -> Result<Self> {
        let publish = list(
            "COMMS_PUBLISH_TOPICS",
            settings.publish_topics.as_deref(),
            vec![topics.events.clone()],
            topics,
        )?;
        let read = list(
            "COMMS_READ_TOPICS",
            settings.read_topics.as_deref(),
            vec![topics.events.clone(), topics.results.clone()],
            topics,
        )?;
        let request = agent_types(settings.request_agents.as_deref())?;
        Ok(Self {
            publish,
            read,
            request,
            dead_letter: topics.dead_letter.clone(),
        })
    }

    /// The topics `POST /send_event` may publish to.
    pub fn publish_topics(&self) -> &[String] {
        &self.publish
    }

    /// The topics `GET /last_message` may read.
    pub fn read_topics(&self) -> &[String] {
        &self.read
    }

    /// Every topic of the policy, once each: what start-up makes sure exists.
    pub fn all_topics(&self) -> Vec<String> {
        let mut all = self.publish.clone();
        for topic in &self.read {
            if !all.contains(topic) {
                all.push(topic.clone());
            }
        }
        all
    }

    /// Whether `topic` may be published to.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] naming `COMMS_PUBLISH_TOPICS`.
    pub fn check_publish(&self, topic: &str) -> std::result::Result<(), ApiError> {
        self.check(topic, &self.publish, "COMMS_PUBLISH_TOPICS", "published to")
    }

    /// Whether `topic` may be read.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] naming `COMMS_READ_TOPICS`.
    pub fn check_read(&self, topic: &str) -> std::result::Result<(), ApiError> {
        self.check(topic, &self.read, "COMMS_READ_TOPICS", "read")
    }

    /// The agent types `POST /request` may ask.
    pub fn request_agents(&self) -> &[String] {
        &self.request
    }

    /// Whether `agent_type` may be asked by `POST /request`.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] naming `COMMS_REQUEST_AGENTS`.
    pub fn check_request(&self, agent_type: &str) -> std::result::Result<(), ApiError> {
        if self.request.iter().any(|t| t == agent_type) {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "agent type {agent_type} is not in COMMS_REQUEST_AGENTS, the agent types \
             agent-comms may ask: {}",
            self.request.join(", ")
        )))
    }

    fn check(
        &self,
        topic: &str,
        allowed: &[String],
        setting: &str,
        verb: &str,
    ) -> std::result::Result<(), ApiError> {
        if topic.starts_with("__") {
            return Err(ApiError::Forbidden(format!(
                "topic {topic} is internal to Kafka: never {verb} through agent-comms"
            )));
        }
        if topic == self.dead_letter {
            return Err(ApiError::Forbidden(format!(
                "topic {topic} is the dead-letter topic: never {verb} through agent-comms"
            )));
        }
        if allowed.iter().any(|t| t == topic) {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "topic {topic} is not in {setting}, the topics agent-comms may have {verb}: {}",
            allowed.join(", ")
        )))
    }
}

/// The agent types of `COMMS_REQUEST_AGENTS` (`value`), or [`DEFAULT_REQUEST_AGENTS`];
/// each a valid agent type (1 to 100 of `a-z A-Z 0-9 . _ -`).
fn agent_types(value: Option<&str>) -> Result<Vec<String>> {
    let Some(value) = value else {
        return Ok(DEFAULT_REQUEST_AGENTS
            .iter()
            .map(|&t| t.to_owned())
            .collect());
    };
    let mut types: Vec<String> = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !agent_runtime::agents::topics::valid_agent_type(name) {
            return Err(Error::Config(format!(
                "COMMS_REQUEST_AGENTS: {name:?} is not a valid agent type (1 to {} of a-z, A-Z, 0-9, '.', '_', '-')",
                agent_runtime::agents::topics::MAX_AGENT_TYPE_BYTES
            )));
        }
        if !types.iter().any(|t| t == name) {
            types.push(name.to_owned());
        }
    }
    Ok(types)
}

/// The comma-separated `value` of `setting`, or `default`; each name checked.
fn list(
    setting: &str,
    value: Option<&str>,
    default: Vec<String>,
    topics: &Topics,
) -> Result<Vec<String>> {
    let Some(value) = value else {
        return Ok(default);
    };
    let mut names: Vec<String> = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !valid_topic_name(name) {
            return Err(Error::Config(format!(
                "{setting}: {name:?} is not a valid topic name (1 to 249 of a-z, A-Z, 0-9, '.', '_', '-')"
            )));
        }
        if name.starts_with("__") || name == topics.dead_letter {
            return Err(Error::Config(format!(
                "{setting}: {name} is an internal or the dead-letter topic, which agent-comms never opens to clients"
            )));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use agent_runtime::config::Settings;

    use super::*;

    fn policy_of(vars: &[(&str, &str)]) -> Result<TopicPolicy> {
        let settings = Settings::from_vars(vars.iter().copied()).expect("settings");
        TopicPolicy::from_settings(&settings.comms, &settings.kafka.topics)
    }

    #[test]
    fn by_default_clients_publish_events_and_read_events_and_results_only() {
        let policy = policy_of(&[]).expect("policy");
        assert!(policy.check_publish("dev-langgraph-agent-events").is_ok());
        for refused in [
            "dev-langgraph-task-results",
            "attacker-made-topic-1",
            "__consumer_offsets",
            "dev-langgraph-dead-letter",
        ] {
            let err = policy.check_publish(refused).expect_err(refused);
            assert_eq!(err.status(), 403, "{refused}");
        }
        assert!(
            policy
                .check_publish("attacker-made-topic-1")
                .expect_err("refused")
                .to_string()
                .contains("COMMS_PUBLISH_TOPICS")
        );
        assert!(policy.check_read("dev-langgraph-task-results").is_ok());
        let err = policy
            .check_read("secrets")
            .expect_err("refused")
            .to_string();
        assert!(err.contains("COMMS_READ_TOPICS"), "{err}");
    }

    #[test]
    fn clients_ask_the_listed_agent_types_only() {
        let policy = policy_of(&[]).expect("policy");
        assert_eq!(policy.request_agents(), ["task-solver"]);
        assert!(policy.check_request("task-solver").is_ok());
        let err = policy.check_request("billing").expect_err("refused");
        assert_eq!(err.status(), 403);
        assert!(err.to_string().contains("COMMS_REQUEST_AGENTS"));
        let policy = policy_of(&[("COMMS_REQUEST_AGENTS", "echo, reviewer,echo")]).expect("policy");
        assert_eq!(policy.request_agents(), ["echo", "reviewer"]);
        assert!(policy.check_request("task-solver").is_err());
        let err = policy_of(&[("COMMS_REQUEST_AGENTS", "no spaces")])
            .expect_err("invalid")
            .to_string();
        assert!(err.contains("COMMS_REQUEST_AGENTS"), "{err}");
    }

    #[test]
    fn the_lists_are_set_and_never_open_internal_topics() {
        let policy = policy_of(&[
            ("COMMS_PUBLISH_TOPICS", "a, b"),
            ("COMMS_READ_TOPICS", "b,c"),
        ])
        .expect("policy");
        assert_eq!(policy.all_topics(), ["a", "b", "c"]);
        assert!(policy.check_read("a").is_err() && policy.check_publish("c").is_err());
        for bad in [
            "__consumer_offsets",
            "dev-langgraph-dead-letter",
            "no spaces",
        ] {
            let err = policy_of(&[("COMMS_READ_TOPICS", bad)])
                .expect_err(bad)
                .to_string();
            assert!(err.contains("COMMS_READ_TOPICS"), "{err}");
        }
    }
}
