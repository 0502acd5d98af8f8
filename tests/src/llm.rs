//! [`LlmStandIn`]: the OpenAI API played by wiremock, with canned answers or faults.

use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_partial_json, body_string_contains, method, path},
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

/// A streamed chat completion (OpenAI's server-sent events) of `content`: a chunk with
/// the role, one chunk per word (with the whitespace after it, so the deltas concatenate
/// to `content`), one with the finish reason, a usage chunk (10 + 5 tokens, as
/// [`completion`]) and `data: [DONE]`.
pub fn event_stream(content: &str) -> String {
    let chunk = |delta: Value, finish: Value, usage: Value| {
        let choices = if usage.is_null() {
            json!([{"index": 0, "delta": delta, "finish_reason": finish}])
        } else {
            json!([])
        };
        let chunk = json!({
            "id": "chatcmpl-standin",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "stand-in",
            "choices": choices,
            "usage": usage,
        });
        format!("data: {chunk}\n\n")
    };
    let mut body = chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
        Value::Null,
    );
    for word in content.split_inclusive(char::is_whitespace) {
        body.push_str(&chunk(json!({"content": word}), Value::Null, Value::Null));
    }
    body.push_str(&chunk(json!({}), json!("stop"), Value::Null));
    body.push_str(&chunk(
        Value::Null,
        Value::Null,
        json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}),
    ));
    body.push_str("data: [DONE]\n\n");
    body
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
    /// [`STANDIN_ANSWER`], streamed ([`event_stream`]) when they ask for a stream.
    pub async fn healthy() -> Self {
        let stand_in = Self::empty().await;
        stand_in.answer_structured(STANDIN_TASK).await;
        stand_in.answer_streamed(STANDIN_ANSWER).await;
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

    /// Requests with `"stream": true` get `content` as server-sent events, word by word
    /// ([`event_stream`]); before [`LlmStandIn::answer_text`]'s answer, after
    /// [`LlmStandIn::answer_structured`]'s.
    pub async fn answer_streamed(&self, content: &str) {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(body_partial_json(json!({"stream": true})))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw(event_stream(content), "text/event-stream"),
            )
            .with_priority(3)
            .mount(&self.server)
            .await;
    }

    /// Every other chat request gets `status` with `body`; when `body` is a completion
    /// ([`completion`]), a request for a stream gets its content streamed instead
    /// ([`event_stream`]), as a model would (unless [`LlmStandIn::answer_streamed`]
    /// mounted another streamed answer).
    pub async fn answer_text(&self, status: u16, body: Value) {
        if let (200, Some(content)) = (status, body["choices"][0]["message"]["content"].as_str()) {
            Mock::given(method("POST"))
                .and(path("/v1/chat/completions"))
                .and(body_partial_json(json!({"stream": true})))
                .respond_with(
                    ResponseTemplate::new(200)
                        .set_body_raw(event_stream(content), "text/event-stream"),
                )
                .with_priority(4)
                .mount(&self.server)
                .await;
        }
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

    /// The JSON bodies of the chat requests received, oldest first.
    pub async fn request_bodies(&self) -> Vec<Value> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|r| serde_json::from_slice(&r.body).ok())
            .collect()
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
