//! The LLM client: chat completions over async-openai, with structured output.
//!
//! One [`LlmClient`] talks to OpenAI or any OpenAI-compatible server (`OPENAI_BASE_URL`,
//! e.g. a local llama.cpp server). Each request has a timeout (`OPENAI_TIMEOUT_SECS`);
//! 429 (but not `insufficient_quota`), 5xx and connection errors are retried
//! `OPENAI_MAX_RETRIES` times with exponential backoff and equal jitter (50–100 ms before
//! the first retry, doubling, at most 8 s), or after the server's `Retry-After` (at most
//! 60 s), by the tower retry policy of [`retry`]. Other 4xx are not retried; a timeout is
//! not retried here but returned as [`Error::LlmTimeout`] for the caller's graph node to
//! retry (see [`retry`] for the bound this gives). [`LlmClient::structured`] asks for
//! JSON under a JSON Schema (`response_format: json_schema`, OpenAI's structured outputs)
//! and parses it. Every answer carries its [`TokenUsage`].
//!
//! # Layout
//!
//! - this module: [`LlmClient`], [`ChatMessage`], [`Completion`];
//! - [`retry`]: what is retried and how long to wait ([`RetryPolicy`](retry::RetryPolicy));
//! - [`limit`]: how many requests are made at once ([`AdaptiveLimit`](limit::AdaptiveLimit),
//!   AIMD: it backs off on 429, 503 and timeouts, and grows again on success).

pub mod limit;
pub mod retry;

use std::time::Duration;

use agent_core::task::TokenUsage;
use async_openai::{
    Client,
    config::OpenAIConfig,
    error::OpenAIError,
    types::chat::{
        ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
        ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
        CreateChatCompletionRequestArgs, FinishReason, ResponseFormat, ResponseFormatJsonSchema,
    },
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::{Error, Result, config::Settings};

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions to the model.
    System,
    /// The person.
    User,
    /// The model.
    Assistant,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion<T> {
    /// The answer: text, or the parsed JSON of a structured answer.
    pub content: T,
    /// Tokens spent.
    pub usage: TokenUsage,
}

/// A raw answer and whether it hit the token limit.
struct Answer {
    completion: Completion<String>,
    truncated: bool,
}

/// A client for one model on one OpenAI-compatible endpoint. Cheap to clone.
#[derive(Clone)]
pub struct LlmClient {
    client: Client<OpenAIConfig>,
    model: String,
    endpoint: String,
    limit: limit::AdaptiveLimit,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("model", &self.model)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl LlmClient {
    /// A client from `OPENAI_BASE_URL`, `OPENAI_API_KEY`, `OPENAI_MODEL`,
    /// `OPENAI_TIMEOUT_SECS`, `OPENAI_MAX_RETRIES`, `OPENAI_INITIAL_CONCURRENCY` and
    /// `OPENAI_MAX_CONCURRENCY`. Clones share one concurrency limit.
    ///
    /// # Errors
    /// [`Error::Config`] when neither `OPENAI_API_KEY` nor `OPENAI_BASE_URL` is set (there
    /// is no model to talk to), or the HTTP client cannot be built.
    pub fn new(settings: &Settings) -> Result<Self> {
        let key = settings
            .openai_api_key
            .as_ref()
            .map(|k| k.expose_secret().to_owned());
        if key.is_none() && settings.openai_base_url.is_none() {
            return Err(Error::Config(
                "OPENAI_API_KEY is not set: set it to use OpenAI, or set OPENAI_BASE_URL to an \
                 OpenAI-compatible server (e.g. http://127.0.0.1:8080/v1 from `make run-local`)"
                    .into(),
            ));
        }
        let mut config = OpenAIConfig::new().with_api_key(key.unwrap_or_default());
        let endpoint = match &settings.openai_base_url {
            Some(url) => {
                config = config.with_api_base(url.trim_end_matches('/'));
                crate::redact::redact(url).into_owned()
            }
            None => "https://api.openai.com/v1".to_owned(),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.openai_timeout_secs))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|err| Error::Config(format!("cannot build the HTTP client: {err}")))?;
        let limit = limit::AdaptiveLimit::new(limit::LimitSettings {
            initial: settings.openai_initial_concurrency,
            min: 1,
            max: settings.openai_max_concurrency,
        });
        let transport = retry::transport(
            http.clone(),
            settings.openai_max_retries,
            limit.clone(),
            settings.openai_max_response_bytes,
        );
        let client = Client::build(http, config).with_http_service(transport);
        Ok(Self {
            client,
            model: settings.openai_model.clone(),
            endpoint,
            limit,
        })
    }

    /// The model name sent with each request.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The adaptive limit on concurrent requests to the model, now (for `/health`).
    pub fn concurrency(&self) -> limit::LimitSnapshot {
        self.limit.snapshot()
    }

    /// The endpoint's base URL, any `user:password@` replaced by `[REDACTED]@`, for
    /// `/health`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Asks for a free-text answer of at most `max_tokens` tokens.
    ///
    /// # Errors
    /// [`Error::Llm`] when the request fails after its retries, [`Error::LlmTimeout`]
    /// when it times out, [`Error::LlmAnswer`] when the model returns no text or the body
    /// is not a chat completion.
    pub async fn chat(
        &self,
        messages: &[ChatMessage],
        max_tokens: u32,
    ) -> Result<Completion<String>> {
        Ok(self.complete(messages, max_tokens, None).await?.completion)
    }

    /// Asks for a JSON answer under `schema` (named `name`, strict) and parses it.
    ///
    /// # Errors
    /// As [`LlmClient::chat`], and [`Error::LlmAnswer`] when the answer is not JSON (or was
    /// cut off at `max_tokens` before its JSON ended).
    pub async fn structured(
        &self,
        messages: &[ChatMessage],
        name: &str,
        schema: serde_json::Value,
        max_tokens: u32,
    ) -> Result<Completion<serde_json::Value>> {
        let format = ResponseFormat::JsonSchema {
            json_schema: ResponseFormatJsonSchema {
                description: None,
                name: name.to_owned(),
                schema,
                strict: Some(true),
            },
        };
        let Answer {
            completion: answer,
            truncated,
        } = self.complete(messages, max_tokens, Some(format)).await?;
        let content = serde_json::from_str(answer.content.trim()).map_err(|err| {
            Error::LlmAnswer(if truncated {
                format!("the answer was cut off at {max_tokens} tokens before its JSON ended")
            } else {
                format!(
                    "the answer is not valid JSON ({err}): {}",
                    truncate(&answer.content, 200)
                )
            })
        })?;
        Ok(Completion {
            content,
            usage: answer.usage,
        })
    }

    /// One request; `Ok` holds the text and whether it was cut off at `max_tokens`.
    async fn complete(
        &self,
        messages: &[ChatMessage],
        max_tokens: u32,
        format: Option<ResponseFormat>,
    ) -> Result<Answer> {
        let structured = format.is_some();
        let messages: Vec<ChatCompletionRequestMessage> = messages
            .iter()
            .map(|m| match m.role {
                Role::System => ChatCompletionRequestSystemMessage::from(m.content.as_str()).into(),
                Role::User => ChatCompletionRequestUserMessage::from(m.content.as_str()).into(),
                Role::Assistant => {
                    ChatCompletionRequestAssistantMessage::from(m.content.as_str()).into()
                }
            })
            .collect();
        let mut request = CreateChatCompletionRequestArgs::default();
        request
            .model(&self.model)
            .messages(messages)
            .max_completion_tokens(max_tokens)
            .temperature(0.2_f32);
        if let Some(format) = format {
            // Small models loop inside JSON strings ("Python, Python, …") until the token
            // limit; a frequency penalty breaks the loop.
            request.response_format(format).frequency_penalty(0.5_f32);
        }
        let request = request.build().map_err(|err| Error::Llm(err.to_string()))?;
        let started = std::time::Instant::now();
        let response = self
            .client
            .chat()
            .create(request)
            .await
            .map_err(|err| match &err {
                OpenAIError::Reqwest(e) if e.is_timeout() => Error::LlmTimeout(describe(&err)),
                // A 200 whose body is not a chat completion (a proxy's HTML page, a cut
                // stream): an unusable answer, worth asking again.
                OpenAIError::JSONDeserialize(..) => Error::LlmAnswer(describe(&err)),
                _ => Error::Llm(describe(&err)),
            })?;
        let usage = response
            .usage
            .map(|u| TokenUsage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                total_tokens: u.total_tokens,
            })
            .unwrap_or_default();
        let choice = response
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| Error::LlmAnswer("the model returned no choice".into()))?;
        let truncated = choice.finish_reason == Some(FinishReason::Length);
        let content = choice
            .message
            .content
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| Error::LlmAnswer("the model returned an empty answer".into()))?;
        tracing::debug!(
            model = %self.model,
            elapsed_ms = started.elapsed().as_millis() as u64,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            truncated,
            structured,
            "LLM answered"
        );
        Ok(Answer {
            completion: Completion { content, usage },
            truncated,
        })
    }
}

/// A one-line reason for an API failure, without request details, and with every
/// registered secret removed ([`crate::redact`]): a model server may echo the key.
fn describe(err: &OpenAIError) -> String {
    crate::redact::redact(&describe_raw(err)).into_owned()
}

fn describe_raw(err: &OpenAIError) -> String {
    match err {
        OpenAIError::InvalidArgument(reason) if reason.starts_with(retry::TOO_LARGE) => {
            reason.clone()
        }
        OpenAIError::ApiError(api) => {
            // async-openai keeps a 5xx body as it came; show the message inside when it
            // is an OpenAI error body.
            let message = &api.api_error.message;
            let message = serde_json::from_str::<async_openai::error::WrappedError>(message)
                .map_or_else(|_| message.clone(), |w| w.error.message);
            format!(
                "{} from the model server: {}",
                api.status_code,
                truncate(message.trim(), 300)
            )
        }
        OpenAIError::Reqwest(err) if err.is_timeout() => {
            "the model server did not answer in time".into()
        }
        OpenAIError::Reqwest(err) if err.is_connect() => {
            "cannot connect to the model server".into()
        }
        OpenAIError::Reqwest(err) => match err.status() {
            Some(status) => format!("{status} from the model server"),
            None => format!("request to the model server failed: {err}"),
        },
        OpenAIError::JSONDeserialize(_, body) => {
            format!(
                "the model server's answer is not an OpenAI response: {}",
                truncate(body, 200)
            )
        }
        other => other.to_string(),
    }
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{body_partial_json, method, path},
    };

    use super::*;

    fn body(content: &str, finish: &str) -> serde_json::Value {
        json!({
            "id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        })
    }

    async fn client(server: &MockServer, extra: &[(&str, &str)]) -> LlmClient {
        let url = format!("{}/v1", server.uri());
        let mut vars = vec![("OPENAI_BASE_URL", url.as_str()), ("OPENAI_MODEL", "m")];
        vars.extend_from_slice(extra);
        LlmClient::new(&Settings::from_vars(vars).expect("settings")).expect("client")
    }

    #[test]
    fn no_key_and_no_base_url_is_a_configuration_error_naming_both() {
        let err =
            LlmClient::new(&Settings::from_vars([]).expect("settings")).expect_err("no model");
        let text = err.to_string();
        assert!(
            text.contains("OPENAI_API_KEY") && text.contains("OPENAI_BASE_URL"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn structured_output_sends_the_schema_and_parses_the_answer() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(body_partial_json(json!({
                "model": "m",
                "response_format": {"type": "json_schema", "json_schema": {"name": "task", "strict": true}}
            })))
            .respond_with(ResponseTemplate::new(200).set_body_json(body(r#"{"a": 1}"#, "stop")))
            .mount(&server)
            .await;
        let llm = client(&server, &[]).await;
        let answer = llm
            .structured(
                &[ChatMessage::user("hi")],
                "task",
                json!({"type": "object"}),
                50,
            )
            .await
            .expect("answer");
        assert_eq!(answer.content, json!({"a": 1}));
        assert_eq!(answer.usage.total_tokens, 10);
    }

    #[tokio::test]
    async fn a_cut_off_or_non_json_answer_is_unusable_not_a_request_failure() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(body(r#"{"a": "Python, Pyth"#, "length")),
            )
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(body("sure! here you go", "stop")),
            )
            .mount(&server)
            .await;
        let llm = client(&server, &[]).await;
        let schema = json!({"type": "object"});
        let err = llm
            .structured(&[], "t", schema.clone(), 50)
            .await
            .expect_err("cut off");
        assert_eq!(
            err.to_string(),
            "unusable LLM answer: the answer was cut off at 50 tokens before its JSON ended"
        );
        let err = llm
            .structured(&[], "t", schema, 50)
            .await
            .expect_err("prose");
        assert!(
            matches!(err, Error::LlmAnswer(ref m) if m.contains("not valid JSON") && m.contains("sure!")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_body_that_is_not_a_chat_completion_is_an_unusable_answer_not_retried_here() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("content-type", "text/html")
                    .set_body_string("<html>upstream reset</html>"),
            )
            .mount(&server)
            .await;
        let llm = client(&server, &[]).await;
        let err = llm.chat(&[], 10).await.expect_err("html");
        assert!(
            matches!(err, Error::LlmAnswer(ref m)
                if m.contains("not an OpenAI response") && m.contains("upstream reset")),
            "{err}"
        );
        // The caller decides whether to ask again: one request here.
        assert_eq!(requests(&server).await, 1);
    }

    #[tokio::test]
    async fn a_429_is_retried_after_retry_after_and_then_answered() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("retry-after", "1")
                    .set_body_json(json!({"error": {"message": "slow down", "type": "rate_limit_error", "param": null, "code": null}})),
            )
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body("hello", "stop")))
            .mount(&server)
            .await;
        let llm = client(&server, &[]).await;
        let started = Instant::now();
        let answer = llm
            .chat(&[ChatMessage::user("hi")], 10)
            .await
            .expect("answered after retry");
        assert_eq!(answer.content, "hello");
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "Retry-After was honoured: {:?}",
            started.elapsed()
        );
        assert_eq!(requests(&server).await, 2);
        let limit = llm.concurrency();
        assert_eq!(
            (limit.overloads, limit.decreases, limit.in_flight),
            (1, 1, 0),
            "the 429 lowered the concurrency limit once: {limit:?}"
        );
        assert_eq!(
            limit.limit, 57,
            "a lone request refused: half of 128, × 0.9; a lone success does not grow it"
        );
    }

    #[tokio::test]
    async fn concurrency_settings_bound_the_adaptive_limit() {
        let server = MockServer::start().await;
        let llm = client(
            &server,
            &[
                ("OPENAI_INITIAL_CONCURRENCY", "5"),
                ("OPENAI_MAX_CONCURRENCY", "8"),
            ],
        )
        .await;
        let limit = llm.concurrency();
        assert_eq!((limit.limit, limit.min, limit.max), (5, 1, 8));
    }

    async fn requests(server: &MockServer) -> usize {
        server
            .received_requests()
            .await
            .map(|r| r.len())
            .unwrap_or_default()
    }

    fn error_body(status: u16, kind: &str, message: &str) -> ResponseTemplate {
        ResponseTemplate::new(status).set_body_json(
            json!({"error": {"message": message, "type": kind, "param": null, "code": kind}}),
        )
    }

    #[tokio::test]
    async fn two_500s_are_retried_and_the_third_request_answers() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(error_body(500, "server_error", "overloaded"))
            .up_to_n_times(2)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body("hello", "stop")))
            .mount(&server)
            .await;
        let llm = client(&server, &[]).await;
        let started = Instant::now();
        let answer = llm
            .chat(&[ChatMessage::user("hi")], 10)
            .await
            .expect("answered on the third request");
        assert_eq!(answer.content, "hello");
        assert_eq!(requests(&server).await, 3);
        // Two backoffs of at least 50 ms and 100 ms (equal jitter's lower bounds).
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn a_400_is_not_retried() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(error_body(400, "invalid_request_error", "bad model"))
            .mount(&server)
            .await;
        let llm = client(&server, &[("OPENAI_MAX_RETRIES", "3")]).await;
        let err = llm
            .chat(&[ChatMessage::user("hi")], 10)
            .await
            .expect_err("400");
        assert!(
            matches!(err, Error::Llm(ref m) if m.contains("400") && m.contains("bad model")),
            "{err}"
        );
        assert_eq!(requests(&server).await, 1);
    }

    #[tokio::test]
    async fn a_429_for_insufficient_quota_is_not_retried() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                error_body(429, "insufficient_quota", "You exceeded your current quota")
                    .insert_header("retry-after", "1"),
            )
            .mount(&server)
            .await;
        let llm = client(&server, &[("OPENAI_MAX_RETRIES", "3")]).await;
        let err = llm
            .chat(&[ChatMessage::user("hi")], 10)
            .await
            .expect_err("no quota");
        assert!(
            matches!(err, Error::Llm(ref m) if m.contains("429") && m.contains("current quota")),
            "{err}"
        );
        assert_eq!(requests(&server).await, 1);
    }

    #[tokio::test]
    async fn retries_exhausted_on_429_fail_naming_the_status() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(error_body(429, "rate_limit_error", "slow down"))
            .mount(&server)
            .await;
        let llm = client(&server, &[("OPENAI_MAX_RETRIES", "2")]).await;
        let err = llm
            .chat(&[ChatMessage::user("hi")], 10)
            .await
            .expect_err("429");
        assert!(
            matches!(err, Error::Llm(ref m) if m.contains("429 Too Many Requests") && m.contains("slow down")),
            "{err}"
        );
        assert_eq!(requests(&server).await, 3, "1 try + 2 retries");
    }

    #[tokio::test]
    async fn a_connection_error_is_retried_with_backoff() {
        // A port nobody listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let url = format!("http://127.0.0.1:{port}/v1");
        let settings = Settings::from_vars([
            ("OPENAI_BASE_URL", url.as_str()),
            ("OPENAI_MAX_RETRIES", "2"),
        ])
        .expect("settings");
        let llm = LlmClient::new(&settings).expect("client");
        let started = Instant::now();
        let err = llm
            .chat(&[ChatMessage::user("hi")], 10)
            .await
            .expect_err("nobody listens");
        assert_eq!(
            err.to_string(),
            "LLM error: cannot connect to the model server"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "two backoffs of at least 50 ms and 100 ms"
        );
    }

    #[tokio::test]
    async fn a_persistent_500_fails_after_the_retries_with_status_and_message() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(500).set_body_json(
                json!({"error": {"message": "overloaded", "type": "server_error", "param": null, "code": null}}),
            ))
            .mount(&server)
            .await;
        let llm = client(&server, &[("OPENAI_MAX_RETRIES", "2")]).await;
        let err = llm
            .chat(&[ChatMessage::user("hi")], 10)
            .await
            .expect_err("500");
        assert!(matches!(err, Error::Llm(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "LLM error: 500 Internal Server Error from the model server: overloaded"
        );
        assert_eq!(requests(&server).await, 3, "1 try + 2 retries");
    }

    #[tokio::test]
    async fn an_answer_over_the_response_limit_fails_at_once_without_being_read_whole() {
        let server = MockServer::start().await;
        let huge = "z".repeat(8 << 20);
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body(&huge, "stop")))
            .mount(&server)
            .await;
        let llm = client(&server, &[("OPENAI_MAX_RESPONSE_BYTES", "65536")]).await;
        let err = llm
            .chat(&[ChatMessage::user("hi")], 10)
            .await
            .expect_err("too large");
        assert!(matches!(err, Error::Llm(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "LLM error: the model server's answer exceeds OPENAI_MAX_RESPONSE_BYTES (65536 bytes)"
        );
        assert_eq!(
            requests(&server).await,
            1,
            "a too-large answer is not retried"
        );
    }

    #[tokio::test]
    async fn a_key_the_model_server_echoes_is_not_in_the_error() {
        let server = MockServer::start().await;
        let key = "sk-echoed-by-the-server-0123456789";
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
                "message": format!("Incorrect API key provided: {key}."),
                "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})))
            .mount(&server)
            .await;
        let llm = client(&server, &[("OPENAI_API_KEY", key)]).await;
        let err = llm
            .chat(&[ChatMessage::user("hi")], 10)
            .await
            .expect_err("401")
            .to_string();
        assert!(!err.contains(key), "{err}");
        assert!(
            err.contains("Incorrect API key provided: [REDACTED]"),
            "{err}"
        );
    }

    #[test]
    fn the_endpoint_shown_carries_no_userinfo() {
        let settings = Settings::from_vars([(
            "OPENAI_BASE_URL",
            "https://proxy-user:proxy-pass-9876@llm.example/v1",
        )])
        .expect("settings");
        let llm = LlmClient::new(&settings).expect("client");
        assert_eq!(llm.endpoint(), "https://[REDACTED]@llm.example/v1");
    }

    #[tokio::test]
    async fn a_slow_server_times_out_once_with_a_clear_reason() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(body("late", "stop"))
                    .set_delay(Duration::from_secs(3)),
            )
            .mount(&server)
            .await;
        let llm = client(
            &server,
            &[("OPENAI_TIMEOUT_SECS", "1"), ("OPENAI_MAX_RETRIES", "3")],
        )
        .await;
        let err = llm
            .chat(&[ChatMessage::user("hi")], 10)
            .await
            .expect_err("timeout");
        assert!(matches!(err, Error::LlmTimeout(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "LLM error: the model server did not answer in time"
        );
        assert_eq!(
            requests(&server).await,
            1,
            "a timeout is left to the graph node's retry policy"
        );
    }
}
