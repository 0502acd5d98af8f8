//! The agent runtime's topic and consumer-group names.

/// The longest agent type, in bytes: its request topic stays a valid topic name.
pub const MAX_AGENT_TYPE_BYTES: usize = 100;

/// Whether `agent_type` may name an agent type: 1 to [`MAX_AGENT_TYPE_BYTES`] of
/// `a-z A-Z 0-9 . _ -`, so that its request topic is a valid topic name.
pub fn valid_agent_type(agent_type: &str) -> bool {
    !agent_type.is_empty()
        && agent_type.len() <= MAX_AGENT_TYPE_BYTES
        && agent_type
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The reply topic every instance shares: `{prefix}-agent-replies` (`agent-replies`
/// without a prefix).
pub fn reply_topic(prefix: &str) -> String {
    named(prefix, "agent-replies")
}

/// The topic of `describe` broadcasts, read by every instance that answers them:
/// `{prefix}-agent-describe` ([`super::discovery`]).
pub fn describe_topic(prefix: &str) -> String {
    named(prefix, "agent-describe")
}

/// The request topic of `agent_type`: `{prefix}-agent-requests-{agent_type}`.
pub fn request_topic(prefix: &str, agent_type: &str) -> String {
    named(prefix, &format!("agent-requests-{agent_type}"))
}

/// The consumer group of `agent_type`'s instances on its request topic:
/// `{prefix}-agent.{agent_type}` (`agent.{agent_type}` without a prefix), so that two
/// deployments with their own prefixes on one cluster never share a group.
pub fn consumer_group(prefix: &str, agent_type: &str) -> String {
    named(prefix, &format!("agent.{agent_type}"))
}

/// The consumer group of `agent_type`'s instances on a subscribed `topic`:
/// `{prefix}-agent.{agent_type}+{topic}` (`+` is in neither name, so two pairs never
/// share a group).
pub fn subscription_group(prefix: &str, agent_type: &str, topic: &str) -> String {
    named(prefix, &format!("agent.{agent_type}+{topic}"))
}

fn named(prefix: &str, suffix: &str) -> String {
    if prefix.is_empty() {
        suffix.to_owned()
    } else {
        format!("{prefix}-{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        assert_eq!(reply_topic("dev"), "dev-agent-replies");
        assert_eq!(reply_topic(""), "agent-replies");
        assert_eq!(describe_topic("dev"), "dev-agent-describe");
        assert_eq!(request_topic("dev", "echo"), "dev-agent-requests-echo");
        assert_eq!(consumer_group("dev", "echo"), "dev-agent.echo");
        assert_eq!(consumer_group("", "echo"), "agent.echo");
        assert_eq!(
            subscription_group("dev", "echo", "news"),
            "dev-agent.echo+news"
        );
    }
}
