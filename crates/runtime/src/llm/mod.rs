//! The LLM client: chat completions over async-openai, with structured output.
//!
//! One [`LlmClient`] talks to OpenAI or any OpenAI-compatible server (`OPENAI_BASE_URL`,
//! e.g. a local llama.cpp server). Each request has a timeout (`OPENAI_TIMEOUT_SECS`);
//! 429 (but not `insufficient_quota`), 5xx and connection errors are retried
//! `OPENAI_MAX_RETRIES` times with exponential backoff and equal jitter (50–100 ms before
//! the first retry, doubling, at most 8 s), or after the server's `Retry-After` (at most
//! 60 s), by the tower retry policy of `retry`. Other 4xx are not retried; a timeout is
//! not retried here but returned as [`Error::LlmTimeout`] for the caller's graph node to
//! retry (see `retry` for the bound this gives). [`LlmClient::structured`] asks for
//! JSON under a JSON Schema (`response_format: json_schema`, OpenAI's structured outputs)
//! and parses it. [`LlmClient::chat_stream`] asks for a streamed answer (server-sent
//! events) and hands each piece of text on as the model writes it, under the same
//! rules. Every answer carries its [`TokenUsage`].
//!
//! # Layout
//!
//! - this module: [`LlmClient`], [`ChatMessage`], [`Completion`];
//! - `settings`: [`LlmSettings`], the `OPENAI_*` section of the settings;
//! - `retry`: what is retried and how long to wait (`RetryPolicy`, the tower retry policy);
//! - `limit`: how many requests are made at once ([`AdaptiveLimit`],
//!   AIMD: it backs off on 429, 503 and timeouts, and grows again on success);
//! - `observe`: the metrics and the GenAI client span of each request;
//! - `stream`: streamed answers ([`LlmClient::chat_stream`]): the live, bounded body
//!   and its server-sent events.

mod limit;
mod observe;
mod retry;
mod settings;
mod stream;

pub use limit::{AdaptiveLimit, BACKOFF_RATIO, LimitPermit, LimitSettings, LimitSnapshot, Signal};
pub use settings::LlmSettings;

use std::time::Duration;

use agent_core::task::TokenUsage;
use async_openai::{
    Client,
    config::OpenAIConfig,
    error::OpenAIError,
    types::chat::{
        ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
        ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage, CompletionUsage,
        CreateChatCompletionRequestArgs, FinishReason, ResponseFormat, ResponseFormatJsonSchema,
    },
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// The same stack as `client`'s, handing a 2xx body on as it arrives: for
    /// [`LlmClient::chat_stream`].
    stream: stream::Transport,
    model: String,
    endpoint: String,
    limit: limit::AdaptiveLimit,
    /// The graph node the requests are made for: a label of their metrics and spans
    /// ([`LlmClient::for_node`]).
    node: std::sync::Arc<str>,
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
    pub fn new(settings: &LlmSettings) -> Result<Self> {
        let key = settings
            .api_key
            .as_ref()
            .map(|k| k.expose_secret().to_owned());
        if key.is_none() && settings.base_url.is_none() {
            return Err(Error::Config(
                "OPENAI_API_KEY is not set: set it to use OpenAI, or set OPENAI_BASE_URL to an \
                 OpenAI-compatible server (e.g. http://127.0.0.1:8080/v1 from `make run-local`)"
                    .into(),
            ));
        }
        let mut config = OpenAIConfig::new().with_api_key(key.unwrap_or_default());
        let endpoint = match &settings.base_url {
            Some(url) => {
                config = config.with_api_base(url.trim_end_matches('/'));
                crate::redact::redact(url).into_owned()
            }
            None => "https://api.openai.com/v1".to_owned(),
        };
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|err| Error::Config(format!("cannot build the HTTP client: {err}")))?;
        let limit = limit::AdaptiveLimit::new(limit::LimitSettings {
            initial: settings.initial_concurrency,
            min: 1,
            max: settings.max_concurrency,
        });
        let transport = |delivery| {
            retry::transport(
                http.clone(),
                settings.max_retries,
                limit.clone(),
                settings.max_response_bytes,
                delivery,
            )
        };
        let stream = stream::Transport::new(transport(retry::Delivery::Live));
        let client = Client::build(http.clone(), config)
            .with_http_service(transport(retry::Delivery::Whole));
        Ok(Self {
            client,
            stream,
            model: settings.model.clone(),
            endpoint,
            limit,
            node: UNNAMED_NODE.into(),
        })
    }

    /// This client (sharing its connections and concurrency limit) for requests made by
    /// graph node `node`: the `node` label of the request metrics and the
    /// `langgraph.node` attribute of their spans (see `observe`). Requests of a client
    /// never named are labelled `unnamed`.
    pub fn for_node(&self, node: &str) -> Self {
        Self {
            node: node.into(),
            ..self.clone()
        }
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
        observe::observed(&self.model, &self.node, max_tokens, async {
            Ok(self.complete(messages, max_tokens, None).await?.completion)
        })
        .await
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
        observe::observed(&self.model, &self.node, max_tokens, async {
            self.structured_unobserved(messages, name, schema, max_tokens)
                .await
        })
        .await
    }

    async fn structured_unobserved(
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
        let mut request = CreateChatCompletionRequestArgs::default();
        request
            .model(&self.model)
            .messages(request_messages(messages))
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
            .map_err(|err| failure(&err))?;
        let usage = response.usage.map(token_usage).unwrap_or_default();
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

/// The `node` label of requests from a client not made by [`LlmClient::for_node`].
const UNNAMED_NODE: &str = "unnamed";

/// The tokens an answer says it spent.
fn token_usage(usage: CompletionUsage) -> TokenUsage {
    TokenUsage {
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        total_tokens: usage.total_tokens,
    }
}

/// `messages` as async-openai's request messages.
fn request_messages(messages: &[ChatMessage]) -> Vec<ChatCompletionRequestMessage> {
    messages
        .iter()
        .map(|m| match m.role {
            Role::System => ChatCompletionRequestSystemMessage::from(m.content.as_str()).into(),
            Role::User => ChatCompletionRequestUserMessage::from(m.content.as_str()).into(),
            Role::Assistant => {
                ChatCompletionRequestAssistantMessage::from(m.content.as_str()).into()
            }
        })
        .collect()
}

/// The [`Error`] for a failed request: [`Error::LlmTimeout`] for a timeout,
/// [`Error::LlmAnswer`] for a body that is not what was asked for, [`Error::Llm`] for the
/// rest; the reason from [`describe`].
fn failure(err: &OpenAIError) -> Error {
    match err {
        OpenAIError::Reqwest(e) if e.is_timeout() => Error::LlmTimeout(describe(err)),
        // A 200 whose body is not a chat completion (a proxy's HTML page, a cut
        // stream): an unusable answer, worth asking again.
        OpenAIError::JSONDeserialize(..) => Error::LlmAnswer(describe(err)),
        _ => Error::Llm(describe(err)),
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
mod tests;
