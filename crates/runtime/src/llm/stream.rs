//! Streamed chat completions: [`LlmClient::chat_stream`] and the live body under it.
//!
//! A streamed request goes through the same tower stack as [`LlmClient::chat`] — the
//! `retry` policy, the `limit`, the same reqwest client and so the same
//! `OPENAI_TIMEOUT_SECS` — built with `Delivery::Live`: the body of a 2xx is handed on
//! as it arrives ([`live`]) instead of being read whole, still counted against
//! `OPENAI_MAX_RESPONSE_BYTES`, and the request keeps its concurrency slot until the body
//! ends. Error responses (429, 5xx, …) are read whole before the retry policy sees them,
//! as for `chat`.
//!
//! The server-sent events are read here (with `eventsource-stream`, which async-openai
//! uses too) rather than by async-openai's `Chat::create_stream`: in async-openai 0.43
//! that reader pumps the body from a task of its own and turns every body error into a
//! string, so a timeout (an [`Error::LlmTimeout`] the graph node retries, and an overload
//! for the limit) could not be told from a broken connection or a body over the limit.
//! The request and chunk types are still async-openai's.
//!
//! # Retries
//!
//! What fails before the server answers 200 is retried as for `chat` (429, 5xx,
//! connection errors); nothing that happens in the body is: by then deltas may have been
//! handed to the caller, and a silent retry would hand them on twice. A failure in the
//! body is returned as an error, and a caller that asks again (the graph node's retry
//! policy) gets a new answer from its first delta.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use async_openai::{
    config::Config,
    error::{ApiError, ApiErrorResponse, OpenAIError, WrappedError},
    middleware::HttpRequestFactory,
    types::chat::{
        ChatCompletionStreamOptions, CreateChatCompletionRequest, CreateChatCompletionRequestArgs,
        CreateChatCompletionResponse, CreateChatCompletionStreamResponse, FinishReason,
    },
};
use eventsource_stream::{Event, EventStream, EventStreamError};
use futures::{Stream, StreamExt, TryStreamExt};
use http_body::{Body as HttpBody, Frame, SizeHint};
use reqwest::{
    Response,
    header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue},
};
use tower::{ServiceExt, util::BoxCloneSyncService};

use super::{
    ChatMessage, Completion, LlmClient, describe, failure,
    limit::{HeldPermit, Signal},
    request_messages, retry, token_usage, truncate,
};
use crate::{Error, Result};

/// The HTTP stack of streamed requests (`retry::transport` with `Delivery::Live`).
pub(super) type Transport = BoxCloneSyncService<HttpRequestFactory, Response, OpenAIError>;

/// How much of an answer that is not an event stream its error shows, in characters.
const PREVIEW_CHARS: usize = 200;

impl LlmClient {
    /// Asks for a free-text answer of at most `max_tokens` tokens, streamed: `on_delta` is
    /// called with each piece of text as the model writes it (in order, never empty;
    /// together they are the answer), and the whole text comes back at the end with its
    /// [`TokenUsage`](agent_core::task::TokenUsage), as from [`LlmClient::chat`].
    ///
    /// The request is OpenAI's streaming chat completion (`stream: true`,
    /// `stream_options: {"include_usage": true}`); the usage is the one the server sends
    /// in its last chunk, or the default (zeros) when it sends none. The rules are
    /// `chat`'s: the request holds one slot of the adaptive concurrency limit until the
    /// answer ends (`data: [DONE]`) or fails; 429, 5xx and connection errors before the
    /// answer starts are retried; `OPENAI_TIMEOUT_SECS` bounds the whole request, the last
    /// chunk included; the body as it comes over the wire (event framing included, some
    /// 150–250 bytes a chunk for OpenAI) is bounded by `OPENAI_MAX_RESPONSE_BYTES`, so a
    /// server that streams for ever ends in an error, not in unbounded memory.
    ///
    /// Nothing is retried once the server has answered 200: a failure after deltas were
    /// handed to `on_delta` is returned as an error, and a caller that asks again sees
    /// the new answer's deltas from the start.
    ///
    /// ```no_run
    /// # async fn show(llm: &agent_runtime::llm::LlmClient) -> agent_runtime::Result<()> {
    /// use agent_runtime::llm::ChatMessage;
    ///
    /// let mut shown = String::new();
    /// let answer = llm
    ///     .chat_stream(&[ChatMessage::user("Say hello")], 64, |delta| shown.push_str(delta))
    ///     .await?;
    /// assert_eq!(shown, answer.content);
    /// println!("{} tokens", answer.usage.total_tokens);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Llm`] when the request fails after its retries, the stream breaks off,
    /// the server reports an error inside the stream, or the body exceeds
    /// `OPENAI_MAX_RESPONSE_BYTES`; [`Error::LlmTimeout`] when the whole answer is not in
    /// within `OPENAI_TIMEOUT_SECS`; [`Error::LlmAnswer`] when the model returns no text,
    /// the body is not a chat completion stream, or the stream ends before its
    /// `data: [DONE]`. Any of them may come after deltas were handed on.
    ///
    /// A server that ignores `stream: true` and answers one JSON chat completion is
    /// understood: its text comes as one delta.
    pub async fn chat_stream(
        &self,
        messages: &[ChatMessage],
        max_tokens: u32,
        on_delta: impl FnMut(&str) + Send,
    ) -> Result<Completion<String>> {
        super::observe::observed(
            &self.model,
            &self.node,
            max_tokens,
            self.chat_stream_unobserved(messages, max_tokens, on_delta),
        )
        .await
    }

    async fn chat_stream_unobserved(
        &self,
        messages: &[ChatMessage],
        max_tokens: u32,
        mut on_delta: impl FnMut(&str) + Send,
    ) -> Result<Completion<String>> {
        let request = CreateChatCompletionRequestArgs::default()
            .model(&self.model)
            .messages(request_messages(messages))
            .max_completion_tokens(max_tokens)
            .temperature(0.2_f32)
            .stream(true)
            .stream_options(ChatCompletionStreamOptions {
                include_usage: Some(true),
                include_obfuscation: None,
            })
            .build()
            .map_err(|err| Error::Llm(err.to_string()))?;
        let started = Instant::now();
        let response = self
            .stream
            .clone()
            .oneshot(self.stream_request(&request)?)
            .await
            .map_err(|err| failure(&err))?;
        if !response.status().is_success() {
            return Err(failure(&error_response(response).await));
        }
        let held = response.extensions().get::<HeldPermit>().cloned();
        if is_json(&response) {
            // A server that ignores `stream: true` (some OpenAI-compatible ones do)
            // answers with one whole completion: its text is the one delta.
            let completion = whole_completion(response).await?;
            on_delta(&completion.content);
            if let Some(held) = held {
                held.release(Signal::Success);
            }
            return Ok(completion);
        }
        let mut head = Vec::new();
        let read = {
            // The first bytes are kept for the error of a body that is no event stream.
            let chunks = futures::stream::try_unfold(response, |mut response| async move {
                Ok(response.chunk().await?.map(|chunk| (chunk, response)))
            })
            .inspect_ok(|chunk| {
                let room = (PREVIEW_CHARS * 4).saturating_sub(head.len());
                head.extend_from_slice(&chunk[..room.min(chunk.len())]);
            });
            read_events(EventStream::new(chunks), &mut on_delta).await?
        };
        if !read.done {
            return Err(Error::LlmAnswer(redacted(&if read.chunks == 0 {
                format!(
                    "the model server's answer is not a chat completion stream: {}",
                    truncate(String::from_utf8_lossy(&head).trim(), PREVIEW_CHARS)
                )
            } else {
                "the answer stream ended before its `data: [DONE]`".to_owned()
            })));
        }
        if let Some(held) = held {
            // The answer is whole: a success for the limit, whether or not the server
            // has ended the body yet (it is dropped unread from here).
            held.release(Signal::Success);
        }
        if read.text.trim().is_empty() {
            return Err(Error::LlmAnswer(
                "the model returned an empty answer".into(),
            ));
        }
        let usage = read.usage.map(token_usage).unwrap_or_default();
        tracing::debug!(
            model = %self.model,
            elapsed_ms = started.elapsed().as_millis() as u64,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            chunks = read.chunks,
            truncated = read.finish == Some(FinishReason::Length),
            "LLM answered, streamed"
        );
        Ok(Completion {
            content: read.text,
            usage,
        })
    }

    /// `POST {base}/chat/completions` with `request` as JSON and the client's headers
    /// (what async-openai's client sends), rebuilt for each attempt.
    fn stream_request(&self, request: &CreateChatCompletionRequest) -> Result<HttpRequestFactory> {
        let config = self.client.config();
        let url = reqwest::Url::parse(&config.url("/chat/completions"))
            .map_err(|err| Error::Llm(format!("the model server URL is not valid: {err}")))?;
        let mut headers = config.headers();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = headers.get_mut(AUTHORIZATION) {
            key.set_sensitive(true);
        }
        let body = serde_json::to_vec(request)
            .map_err(|err| Error::Llm(format!("cannot serialize the request: {err}")))?;
        Ok(HttpRequestFactory::new(move || {
            let mut request = reqwest::Request::new(reqwest::Method::POST, url.clone());
            *request.headers_mut() = headers.clone();
            *request.body_mut() = Some(body.clone().into());
            std::future::ready(Ok(request))
        }))
    }
}

/// Whether `response`'s body is JSON rather than server-sent events.
fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with("application/json"))
}

/// A whole (non-streamed) chat completion body: its text and usage.
async fn whole_completion(response: Response) -> Result<Completion<String>> {
    let body = response.bytes().await.map_err(body_failure)?;
    let not_completion = || {
        Error::LlmAnswer(redacted(&format!(
            "the model server's answer is not a chat completion stream: {}",
            truncate(String::from_utf8_lossy(&body).trim(), PREVIEW_CHARS)
        )))
    };
    let completion: CreateChatCompletionResponse =
        serde_json::from_slice(&body).map_err(|_| not_completion())?;
    let usage = completion.usage.map(token_usage).unwrap_or_default();
    let content = completion
        .choices
        .into_iter()
        .next()
        .and_then(|choice| choice.message.content)
        .filter(|text| !text.trim().is_empty())
        .ok_or_else(|| Error::LlmAnswer("the model returned an empty answer".into()))?;
    Ok(Completion { content, usage })
}

/// What [`read_events`] read of a stream.
#[derive(Debug, Default)]
struct Read {
    text: String,
    usage: Option<async_openai::types::chat::CompletionUsage>,
    finish: Option<FinishReason>,
    /// Chat completion chunks read.
    chunks: usize,
    /// Whether `data: [DONE]` came.
    done: bool,
}

/// Reads the chunks of `events` up to `data: [DONE]` (or the end of the body), handing
/// each text delta of the first choice to `on_delta`.
async fn read_events(
    events: impl Stream<Item = std::result::Result<Event, EventStreamError<reqwest::Error>>>,
    on_delta: &mut (impl FnMut(&str) + Send),
) -> Result<Read> {
    let mut events = std::pin::pin!(events);
    let mut read = Read::default();
    while let Some(event) = events.next().await {
        let event = event.map_err(|err| match err {
            EventStreamError::Transport(err) => body_failure(err),
            other => Error::LlmAnswer(format!(
                "the model server's answer is not a chat completion stream: {other}"
            )),
        })?;
        if event.event == "keepalive" || event.data.trim().is_empty() {
            continue;
        }
        if event.data.trim() == "[DONE]" {
            read.done = true;
            break;
        }
        let chunk = serde_json::from_str::<CreateChatCompletionStreamResponse>(&event.data)
            .map_err(|err| chunk_failure(&err, &event.data))?;
        read.chunks += 1;
        read.usage = chunk.usage.or(read.usage);
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            read.finish = choice.finish_reason.or(read.finish);
            if let Some(delta) = choice.delta.content.filter(|d| !d.is_empty()) {
                on_delta(&delta);
                read.text.push_str(&delta);
            }
        }
    }
    Ok(read)
}

/// The error for an event that is not a chat completion chunk: the server's own error
/// when it sent one (`{"error": {…}}`, OpenAI's way of failing mid-stream), else an
/// unusable answer.
fn chunk_failure(err: &serde_json::Error, data: &str) -> Error {
    match serde_json::from_str::<WrappedError>(data) {
        Ok(WrappedError { error }) => Error::Llm(redacted(&format!(
            "the model server failed mid-answer: {}",
            truncate(error.message.trim(), 300)
        ))),
        Err(_) => Error::LlmAnswer(redacted(&format!(
            "a chunk of the answer stream is not a chat completion chunk ({err}): {}",
            truncate(data.trim(), PREVIEW_CHARS)
        ))),
    }
}

/// The error for a body that failed as it was read: over `OPENAI_MAX_RESPONSE_BYTES`,
/// timed out, or broken off.
fn body_failure(err: reqwest::Error) -> Error {
    let too_large = std::iter::successors(std::error::Error::source(&err), |e| e.source())
        .find_map(|e| e.downcast_ref::<TooLarge>());
    match too_large {
        Some(too_large) => Error::Llm(too_large.to_string()),
        None if err.is_timeout() => failure(&OpenAIError::Reqwest(err)),
        None => Error::Llm(redacted(&format!(
            "the model server's answer stream broke off: {}",
            describe(&OpenAIError::Reqwest(err))
        ))),
    }
}

/// A failed response as async-openai reads one: a 5xx body as it came, an OpenAI error
/// body, or a body that is not one.
async fn error_response(response: Response) -> OpenAIError {
    let status = response.status();
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(err) => return OpenAIError::Reqwest(err),
    };
    let api_error = if status.is_server_error() {
        ApiError {
            message: String::from_utf8_lossy(&body).into_owned(),
            ..ApiError::default()
        }
    } else {
        match serde_json::from_slice::<WrappedError>(&body) {
            Ok(WrappedError { error }) => error,
            Err(err) => {
                return OpenAIError::JSONDeserialize(
                    err,
                    String::from_utf8_lossy(&body).into_owned(),
                );
            }
        }
    };
    OpenAIError::ApiError(ApiErrorResponse {
        status_code: status,
        api_error,
    })
}

fn redacted(text: &str) -> String {
    crate::redact::redact(text).into_owned()
}

/// `response` (a 2xx) with its body handed on as it arrives, at most `max` bytes, and
/// holding its request's concurrency slot until it ends (see [`HeldPermit`]). A
/// `Content-Length` over `max` fails at once, as in `retry::read_bounded`.
pub(super) fn live(response: Response, max: usize) -> std::result::Result<Response, OpenAIError> {
    if response
        .content_length()
        .is_some_and(|length| length > max as u64)
    {
        return Err(OpenAIError::InvalidArgument(TooLarge(max).to_string()));
    }
    let held = HeldPermit::default();
    let mut response = ::http::Response::<reqwest::Body>::from(response);
    response.extensions_mut().insert(held.clone());
    Ok(Response::from(response.map(|inner| {
        reqwest::Body::wrap(LiveBody {
            inner,
            read: 0,
            max,
            held,
            ended: false,
        })
    })))
}

/// A body over `OPENAI_MAX_RESPONSE_BYTES`: `retry::TOO_LARGE` and the limit.
#[derive(Debug)]
struct TooLarge(usize);

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} bytes)", retry::TOO_LARGE, self.0)
    }
}

impl std::error::Error for TooLarge {}

/// A response body read as it arrives: fails with [`TooLarge`] past `max` bytes, and
/// releases `held` when it ends — [`Signal::Success`] at its end, [`Signal::Overload`]
/// when it timed out, [`Signal::Ignore`] when it failed otherwise (and when dropped
/// before its end, by [`HeldPermit`]'s drop).
#[derive(Debug)]
struct LiveBody {
    inner: reqwest::Body,
    read: usize,
    max: usize,
    held: HeldPermit,
    ended: bool,
}

impl HttpBody for LiveBody {
    type Data = <reqwest::Body as HttpBody>::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let (frame, end) = match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            None => (None, Some(Signal::Success)),
            Some(Ok(frame)) => {
                this.read += frame.data_ref().map_or(0, |data| data.len());
                if this.read > this.max {
                    (Some(Err(TooLarge(this.max).into())), Some(Signal::Ignore))
                } else {
                    (Some(Ok(frame)), None)
                }
            }
            Some(Err(err)) => {
                let signal = if err.is_timeout() {
                    Signal::Overload
                } else {
                    Signal::Ignore
                };
                (Some(Err(err.into())), Some(signal))
            }
        };
        if let Some(signal) = end {
            this.ended = true;
            this.held.release(signal);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
