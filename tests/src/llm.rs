//! [`LlmStandIn`]: the OpenAI API played by wiremock, with canned answers or faults.

use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_string_contains, method, path},
};

/// A chat-completion response body with `content` and fixed usage (10 + 5 tokens).
pub fn completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "stand-in",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    })
}

/// An OpenAI API error body (`server_error`) carrying `message`.
pub fn openai_error(message: &str) -> Value {
    json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})
}

/// An OpenAI-compatible stand-in: the remote model API, played by wiremock.
pub struct LlmStandIn {
    /// The server; mount more mocks on it.
    pub server: MockServer,
}

impl std::fmt::Debug for LlmStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmStandIn").finish_non_exhaustive()
    }
}

/// The task the stand-in proposes to the generator.
pub const STANDIN_TASK: &str = r#"{"task_name": "Project help", "task_description": "Help the user with their project.", "context": "The user needs help with a project."}"#;
/// The stand-in's answer to every free-text request (plan and solve).
pub const STANDIN_ANSWER: &str = "1. Look at the project. 2. Help.";

impl LlmStandIn {
    /// Answers structured requests with [`STANDIN_TASK`] and free-text ones with
    /// [`STANDIN_ANSWER`].
    pub async fn healthy() -> Self {
        let stand_in = Self::empty().await;
        stand_in.answer_structured(STANDIN_TASK).await;
        stand_in.answer_text(200, completion(STANDIN_ANSWER)).await;
        stand_in
    }

    /// Answers structured requests (task generation) well, and free-text requests (the
    /// solver's) with `status` and `body`.
    pub async fn solver_fails_with(status: u16, body: Value) -> Self {
        let stand_in = Self::empty().await;
        stand_in.answer_structured(STANDIN_TASK).await;
        stand_in.answer_text(status, body).await;
        stand_in
    }

    /// No answers mounted: every request gets 404.
    pub async fn empty() -> Self {
        Self {
            server: MockServer::start().await,
        }
    }

    /// Requests with `response_format: json_schema` get `content`.
    pub async fn answer_structured(&self, content: &str) {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(body_string_contains("json_schema"))
            .respond_with(ResponseTemplate::new(200).set_body_json(completion(content)))
            .with_priority(1)
            .mount(&self.server)
            .await;
    }

    /// Every other chat request gets `status` with `body`.
    pub async fn answer_text(&self, status: u16, body: Value) {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .with_priority(5)
            .mount(&self.server)
            .await;
    }

    /// The base URL to give as `OPENAI_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.uri())
    }

    /// How many chat requests were received.
    pub async fn calls(&self) -> usize {
        self.server
            .received_requests()
            .await
            .map(|r| r.len())
            .unwrap_or(0)
    }
}
