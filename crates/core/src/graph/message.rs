//! Chat messages in a state, and LangGraph's `add_messages` merge.

use serde::{Deserialize, Serialize};

/// One chat message, with an id so later writes can replace or remove it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Unique within the list; assigned (a v4 UUID) when a message without one is added.
    #[serde(default)]
    pub id: String,
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text.
    pub content: String,
    /// When true, adding this message removes the message with the same id instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remove: bool,
}

impl Message {
    /// A message of `role` with no id yet.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            id: String::new(),
            role: role.into(),
            content: content.into(),
            remove: false,
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }

    /// The same message with `id`.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// A marker that removes the message `id` when added (LangGraph's `RemoveMessage`).
    pub fn remove(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            role: String::new(),
            content: String::new(),
            remove: true,
        }
    }
}

/// Merges `new` into `messages` as LangGraph's `add_messages` does: a message whose id is
/// already present replaces it in place; a removal marker deletes it; any other message
/// is appended (given a fresh id when it has none).
pub fn add_messages(messages: &mut Vec<Message>, new: Vec<Message>) {
    for mut message in new {
        if message.id.is_empty() {
            message.id = uuid::Uuid::new_v4().to_string();
        }
        match messages.iter().position(|m| m.id == message.id) {
            Some(at) if message.remove => {
                messages.remove(at);
            }
            Some(at) => messages[at] = message,
            None if message.remove => {}
            None => messages.push(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_replaces_by_id_and_removes() {
        let mut list = vec![
            Message::user("hi").with_id("1"),
            Message::assistant("hello").with_id("2"),
        ];
        add_messages(
            &mut list,
            vec![
                Message::assistant("hello!").with_id("2"),
                Message::user("bye"),
                Message::remove("1"),
                Message::remove("unknown"),
            ],
        );
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].content, "hello!");
        assert_eq!(list[1].content, "bye");
        assert!(!list[1].id.is_empty(), "an id was assigned");
    }
}
