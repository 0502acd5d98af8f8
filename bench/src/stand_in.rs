//! An OpenAI-compatible chat-completions server for load tests: it plays the remote
//! API the services call (`OPENAI_BASE_URL=http://127.0.0.1:PORT/v1`), answering every
//! request after a fixed delay, like a model whose latency does not depend on load.
//!
//! - `POST /v1/chat/completions` → a `chat.completion` body. With
//!   `response_format.type == "json_schema"` the content is a JSON document filled from
//!   `response_format.json_schema.schema` ([`crate::schema_fill::fill`]); otherwise it is
//!   [`PLAN_TEXT`]. A free-text request with `stream: true` is answered as OpenAI
//!   streams (`chat.completion.chunk` server-sent events, a usage chunk, `[DONE]`): after
//!   the delay, [`Config::stream_tokens`] words (or [`PLAN_TEXT`]'s), one chunk each,
//!   [`Config::token_interval`] apart, like a model writing.
//! - With a limit of `N` requests in flight, a request arriving while `N` are being served
//!   (waiting out their delay) is answered at once `429` with `Retry-After: 1` and an
//!   OpenAI error body of type `rate_limit_exceeded`, like OpenAI's rate limiter.
//! - A body that is not a JSON object → `400` with an OpenAI error body.
//! - `GET /stats` → [`StatsReport`].

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::schema_fill::fill;

/// The content of an answer to a request without a JSON Schema.
pub const PLAN_TEXT: &str = "Plan: 1) clarify goals 2) break into steps 3) deliver.";

/// How the stand-in answers.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// How long each request waits before it is answered.
    pub delay: Duration,
    /// Requests served at once; one more is answered `429`. `None`: no limit.
    pub max_concurrent: Option<u64>,
    /// Words of a streamed answer; 0: [`PLAN_TEXT`]'s.
    pub stream_tokens: usize,
    /// The pause before each word of a streamed answer after the first.
    pub token_interval: Duration,
}

/// Counters since start, shared by every request.
#[derive(Debug, Default)]
pub struct Stats {
    calls: AtomicU64,
    answered: AtomicU64,
    rate_limited: AtomicU64,
    in_flight: AtomicU64,
    most_in_flight: AtomicU64,
}

/// The body of `GET /stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatsReport {
    /// Requests to `POST /v1/chat/completions`, whatever their answer.
    pub calls: u64,
    /// Requests answered with a completion (`200`).
    pub answered: u64,
    /// Requests answered `429` because the limit of requests in flight was reached.
    pub rate_limited: u64,
    /// Requests being served now (waiting out the delay).
    pub in_flight: u64,
    /// The most requests ever served at once.
    pub most_in_flight: u64,
}

impl Stats {
    /// The counters now.
    pub fn report(&self) -> StatsReport {
        StatsReport {
            calls: self.calls.load(Ordering::Relaxed),
            answered: self.answered.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            most_in_flight: self.most_in_flight.load(Ordering::Relaxed),
        }
    }

    /// Takes a place among the requests in flight, or `None` when `limit` are already
    /// there. The place is given back when the returned guard drops (also when the
    /// client goes away during the delay and axum drops the handler).
    fn admit(self: &Arc<Self>, limit: Option<u64>) -> Option<InFlight> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        if limit.is_some_and(|limit| now > limit) {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.most_in_flight.fetch_max(now, Ordering::Relaxed);
        Some(InFlight(Arc::clone(self)))
    }
}

/// One request in flight; dropping it frees its place.
struct InFlight(Arc<Stats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone)]
struct Shared {
    config: Config,
    stats: Arc<Stats>,
}

/// The stand-in's routes over `stats` (pass the same [`Stats`] to read them elsewhere).
pub fn router(config: Config, stats: Arc<Stats>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/stats", get(stats_route))
        .fallback(not_found)
        .with_state(Shared { config, stats })
}

async fn stats_route(State(shared): State<Shared>) -> Json<StatsReport> {
    Json(shared.stats.report())
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        None,
        "unknown route: the stand-in serves POST /v1/chat/completions and GET /stats",
    )
}

async fn chat_completions(State(shared): State<Shared>, body: Bytes) -> Response {
    shared.stats.calls.fetch_add(1, Ordering::Relaxed);
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request @ Value::Object(_)) => request,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                "the body must be a JSON object",
            );
        }
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                &format!("the body is not JSON: {err}"),
            );
        }
    };
    let Some(_in_flight) = shared.stats.admit(shared.config.max_concurrent) else {
        let limit = shared.config.max_concurrent.unwrap_or_default();
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            Some("rate_limit_exceeded"),
            &format!("rate limited: more than {limit} concurrent requests"),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return response;
    };
    if !shared.config.delay.is_zero() {
        tokio::time::sleep(shared.config.delay).await;
    }
    let serial = shared.stats.calls.load(Ordering::Relaxed);
    shared.stats.answered.fetch_add(1, Ordering::Relaxed);
    let streamed = request.get("stream").and_then(Value::as_bool) == Some(true)
        && request
            .pointer("/response_format/type")
            .and_then(Value::as_str)
            != Some("json_schema");
    if streamed {
        return stream(&shared.config, &request, serial, _in_flight);
    }
    Json(completion(&request, serial)).into_response()
}

/// The words of a streamed answer: `n` numbered words, or [`PLAN_TEXT`]'s when `n` is
/// 0, each with the space after it (so they concatenate to the answer).
pub fn stream_words(n: usize) -> Vec<String> {
    if n == 0 {
        return PLAN_TEXT.split_inclusive(' ').map(str::to_owned).collect();
    }
    (0..n)
        .map(|i| {
            if i + 1 == n {
                format!("w{i}.")
            } else {
                format!("w{i} ")
            }
        })
        .collect()
}

/// A streamed answer: a role chunk, then a word every `token_interval`, the finish
/// reason, a usage chunk and `[DONE]`. The place among the requests in flight is held
/// until the last word.
fn stream(config: &Config, request: &Value, serial: u64, in_flight: InFlight) -> Response {
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("gpt-4o-mini")
        .to_owned();
    let chunk = move |delta: Value, finish: Value, usage: Value| {
        let choices = if usage.is_null() {
            json!([{"index": 0, "delta": delta, "finish_reason": finish}])
        } else {
            json!([])
        };
        let chunk = json!({
            "id": format!("chatcmpl-{serial}"),
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": choices,
            "usage": usage,
        });
        Bytes::from(format!("data: {chunk}\n\n"))
    };
    let words = stream_words(config.stream_tokens);
    let completion_tokens = words.len();
    let mut parts = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
        Value::Null,
    )];
    parts.extend(
        words
            .into_iter()
            .map(|word| chunk(json!({"content": word}), Value::Null, Value::Null)),
    );
    let interval = config.token_interval;
    let words_end = parts.len();
    parts.push(chunk(json!({}), json!("stop"), Value::Null));
    parts.push(chunk(
        Value::Null,
        Value::Null,
        json!({"prompt_tokens": 10, "completion_tokens": completion_tokens, "total_tokens": 10 + completion_tokens}),
    ));
    parts.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let body = futures::stream::unfold(
        (parts.into_iter().enumerate(), Some(in_flight)),
        move |(mut parts, mut in_flight)| async move {
            let (i, part) = parts.next()?;
            // A pause before each word after the first.
            if (2..words_end).contains(&i) && !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            if i + 1 == words_end {
                in_flight.take();
            }
            Some((Ok::<_, std::convert::Infallible>(part), (parts, in_flight)))
        },
    );
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// The `chat.completion` answering `request`, with id `chatcmpl-{serial}`.
///
/// Token counts are estimates (a token per 4 bytes of text), enough for the services'
/// usage sums to move.
pub fn completion(request: &Value, serial: u64) -> Value {
    let format = request.get("response_format");
    let content =
        if format.and_then(|f| f.get("type")).and_then(Value::as_str) == Some("json_schema") {
            let schema = format
                .and_then(|f| f.pointer("/json_schema/schema"))
                .unwrap_or(&Value::Null);
            fill(schema).to_string()
        } else {
            PLAN_TEXT.to_owned()
        };
    let prompt_bytes: usize = request
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("content").and_then(Value::as_str))
        .map(str::len)
        .sum();
    let prompt_tokens = prompt_bytes / 4 + 1;
    let completion_tokens = content.len() / 4 + 1;
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("gpt-4o-mini");
    json!({
        "id": format!("chatcmpl-{serial}"),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "finish_reason": "stop",
            "logprobs": null,
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    })
}

/// An OpenAI error body: `{"error": {"message", "type", "param": null, "code"}}`.
fn error(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request};
    use tower::ServiceExt;

    use super::*;
    use crate::schema_fill::SENTENCE;

    async fn call(app: Router, request: Request<Body>) -> (StatusCode, Option<String>, Value) {
        let response = app.oneshot(request).await.expect("infallible");
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let body = serde_json::from_slice(&bytes).expect("JSON body");
        (status, retry_after, body)
    }

    fn post(body: &str) -> Request<Body> {
        Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .expect("request")
    }

    #[tokio::test]
    async fn a_json_schema_request_gets_the_schema_filled() {
        let app = router(Config::default(), Arc::default());
        let request = json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "I need help"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "task", "strict": true,
                "schema": {"type": "object", "properties": {"task_name": {"type": "string"}}}}},
        });
        let (status, _, body) = call(app, post(&request.to_string())).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(body["choices"][0]["message"]["role"], "assistant");
        let content = body["choices"][0]["message"]["content"]
            .as_str()
            .expect("content");
        let content: Value = serde_json::from_str(content).expect("JSON content");
        assert_eq!(content, json!({"task_name": SENTENCE}));
        assert!(body["usage"]["total_tokens"].as_u64().expect("usage") > 0);
    }

    #[tokio::test]
    async fn a_plain_request_gets_the_plan_text_and_bad_json_a_400() {
        let stats = Arc::new(Stats::default());
        let app = router(Config::default(), Arc::clone(&stats));
        let (status, _, body) = call(app.clone(), post(r#"{"messages": []}"#)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["choices"][0]["message"]["content"], PLAN_TEXT);
        let (status, _, body) = call(app, post("not json")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        let report = stats.report();
        assert_eq!((report.calls, report.answered), (2, 1));
    }

    #[tokio::test]
    async fn a_streamed_request_gets_its_words_one_chunk_each_then_usage_and_done() {
        let config = Config {
            stream_tokens: 5,
            token_interval: Duration::from_millis(2),
            ..Config::default()
        };
        let app = router(config, Arc::default());
        let response = app
            .oneshot(post(r#"{"model": "m", "stream": true, "messages": []}"#))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let text = String::from_utf8(bytes.to_vec()).expect("UTF-8");
        let datas: Vec<&str> = text
            .split("\n\n")
            .filter_map(|block| block.strip_prefix("data: "))
            .collect();
        assert_eq!(datas.last(), Some(&"[DONE]"));
        let chunks: Vec<Value> = datas[..datas.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).expect("a JSON chunk"))
            .collect();
        let words: String = chunks
            .iter()
            .filter_map(|c| {
                c.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
            })
            .collect();
        assert_eq!(words, "w0 w1 w2 w3 w4.");
        assert_eq!(stream_words(5).concat(), words);
        // role + 5 words + finish + usage.
        assert_eq!(chunks.len(), 8);
        assert_eq!(chunks[6]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[7]["usage"]["completion_tokens"], 5);
    }

    #[tokio::test]
    async fn past_the_limit_a_request_is_answered_429_at_once() {
        let stats = Arc::new(Stats::default());
        let config = Config {
            delay: Duration::from_millis(300),
            max_concurrent: Some(1),
            ..Config::default()
        };
        let app = router(config, Arc::clone(&stats));
        let first = tokio::spawn(call(app.clone(), post("{}")));
        while stats.report().in_flight == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (status, retry_after, body) = call(app.clone(), post("{}")).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(
            body,
            json!({"error": {"message": "rate limited: more than 1 concurrent requests",
                "type": "rate_limit_exceeded", "param": null, "code": "rate_limit_exceeded"}})
        );
        let (status, _, _) = first.await.expect("first request");
        assert_eq!(status, StatusCode::OK);
        let report = stats.report();
        assert_eq!(
            report,
            StatsReport {
                calls: 2,
                answered: 1,
                rate_limited: 1,
                in_flight: 0,
                most_in_flight: 1
            }
        );
        let (_, _, body) = call(
            app,
            Request::get("/stats").body(Body::empty()).expect("request"),
        )
        .await;
        assert_eq!(body["rate_limited"], 1);
    }
}
