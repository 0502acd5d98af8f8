//! Tests of the LLM client against an OpenAI stand-in (wiremock).

use std::time::Instant;

use serde_json::json;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_partial_json, method, path},
};

use super::*;
use crate::config::Settings;

fn body(content: &str, finish: &str) -> serde_json::Value {
    json!({
        "id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    })
}

async fn client(server: &MockServer, extra: &[(&str, &str)]) -> LlmClient {
    client_at(&format!("{}/v1", server.uri()), extra)
}

fn client_at(url: &str, extra: &[(&str, &str)]) -> LlmClient {
    let mut vars = vec![("OPENAI_BASE_URL", url), ("OPENAI_MODEL", "m")];
    vars.extend_from_slice(extra);
    LlmClient::new(&Settings::from_vars(vars).expect("settings").llm).expect("client")
}

#[test]
fn no_key_and_no_base_url_is_a_configuration_error_naming_both() {
    let err =
        LlmClient::new(&Settings::from_vars([]).expect("settings").llm).expect_err("no model");
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
        .respond_with(ResponseTemplate::new(200).set_body_json(body("sure! here you go", "stop")))
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
    let llm = LlmClient::new(&settings.llm).expect("client");
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
    let llm = LlmClient::new(&settings.llm).expect("client");
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

// Streamed answers (`chat_stream`).

/// One server-sent event carrying `data`.
fn event(data: &serde_json::Value) -> String {
    format!("data: {data}\n\n")
}

/// A chat completion chunk whose delta is `content` (none: an empty delta).
fn chunk(content: Option<&str>, finish: Option<&str>) -> serde_json::Value {
    let delta = content.map_or_else(|| json!({}), |c| json!({"content": c}));
    json!({
        "id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    })
}

/// The last chunk with `stream_options.include_usage`: no choice, the usage.
fn usage_chunk() -> serde_json::Value {
    json!({
        "id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    })
}

/// An event-stream body as OpenAI sends it: the role, `words` one chunk each, the
/// finish reason, the usage chunk when `usage`, and `data: [DONE]`.
fn event_stream(words: &[&str], usage: bool) -> String {
    let mut body = event(&json!({
        "id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]
    }));
    for word in words {
        body.push_str(&event(&chunk(Some(word), None)));
    }
    body.push_str(&event(&chunk(None, Some("stop"))));
    if usage {
        body.push_str(&event(&usage_chunk()));
    }
    body.push_str("data: [DONE]\n\n");
    body
}

fn streamed(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")
}

/// Asks `llm` for a streamed answer; `Ok` holds the deltas handed on and the answer.
async fn ask_streamed(llm: &LlmClient) -> (Vec<String>, Result<Completion<String>>) {
    let mut deltas = Vec::new();
    let answer = llm
        .chat_stream(&[ChatMessage::user("hi")], 10, |delta| {
            deltas.push(delta.to_owned());
        })
        .await;
    (deltas, answer)
}

#[tokio::test]
async fn a_streamed_answer_hands_on_its_deltas_in_order_and_returns_the_text_and_usage() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({
            "model": "m", "stream": true, "stream_options": {"include_usage": true}
        })))
        .respond_with(streamed(event_stream(&["Hello", ",", " world"], true)))
        .mount(&server)
        .await;
    let llm = client(&server, &[]).await;
    let (deltas, answer) = ask_streamed(&llm).await;
    let answer = answer.expect("answer");
    assert_eq!(deltas, ["Hello", ",", " world"]);
    assert_eq!(answer.content, deltas.concat());
    assert_eq!(
        answer.usage,
        TokenUsage {
            prompt_tokens: 7,
            completion_tokens: 3,
            total_tokens: 10
        }
    );
    assert_eq!(llm.concurrency().in_flight, 0, "the slot is given back");
}

#[tokio::test]
async fn a_stream_without_a_usage_chunk_gives_zero_usage() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(streamed(event_stream(&["hello"], false)))
        .mount(&server)
        .await;
    let llm = client(&server, &[]).await;
    let answer = ask_streamed(&llm).await.1.expect("answer");
    assert_eq!(answer.content, "hello");
    assert_eq!(answer.usage, TokenUsage::default());
}

#[tokio::test]
async fn a_503_before_the_stream_is_retried_and_lowers_the_limit() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(error_body(503, "server_error", "overloaded"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(streamed(event_stream(&["hello"], true)))
        .mount(&server)
        .await;
    let llm = client(&server, &[]).await;
    let (deltas, answer) = ask_streamed(&llm).await;
    assert_eq!(answer.expect("answered after a retry").content, "hello");
    assert_eq!(deltas, ["hello"], "the deltas of the answer, once");
    assert_eq!(requests(&server).await, 2);
    let limit = llm.concurrency();
    assert_eq!((limit.overloads, limit.in_flight), (1, 0), "{limit:?}");
}

#[tokio::test]
async fn a_400_to_a_streamed_request_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(error_body(400, "invalid_request_error", "bad model"))
        .mount(&server)
        .await;
    let llm = client(&server, &[("OPENAI_MAX_RETRIES", "3")]).await;
    let (deltas, answer) = ask_streamed(&llm).await;
    let err = answer.expect_err("400");
    assert_eq!(
        err.to_string(),
        "LLM error: 400 Bad Request from the model server: bad model"
    );
    assert!(matches!(err, Error::Llm(_)) && deltas.is_empty(), "{err:?}");
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn a_streamed_body_that_is_not_an_event_stream_is_an_unusable_answer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("<html>upstream reset</html>", "text/html"),
        )
        .mount(&server)
        .await;
    let llm = client(&server, &[]).await;
    let err = ask_streamed(&llm).await.1.expect_err("html");
    assert!(
        matches!(err, Error::LlmAnswer(ref m)
            if m.contains("not a chat completion stream") && m.contains("upstream reset")),
        "{err}"
    );
    assert_eq!(
        requests(&server).await,
        1,
        "the caller decides to ask again"
    );
}

#[tokio::test]
async fn an_empty_or_cut_stream_is_an_unusable_answer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(streamed(event_stream(&[" ", "\n"], true)))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let cut = event_stream(&["Hello", " wor"], false).replace("data: [DONE]\n\n", "");
    Mock::given(method("POST"))
        .respond_with(streamed(cut))
        .mount(&server)
        .await;
    let llm = client(&server, &[]).await;
    let err = ask_streamed(&llm).await.1.expect_err("blank");
    assert_eq!(
        err.to_string(),
        "unusable LLM answer: the model returned an empty answer"
    );
    let (deltas, answer) = ask_streamed(&llm).await;
    let err = answer.expect_err("cut");
    assert_eq!(
        err.to_string(),
        "unusable LLM answer: the answer stream ended before its `data: [DONE]`"
    );
    assert_eq!(deltas, ["Hello", " wor"], "handed on before the cut");
}

#[tokio::test]
async fn a_streamed_answer_announced_over_the_response_limit_fails_at_once() {
    let server = MockServer::start().await;
    let words = vec!["zzzzzzzz"; 4096];
    Mock::given(method("POST"))
        .respond_with(streamed(event_stream(&words, true)))
        .mount(&server)
        .await;
    let llm = client(&server, &[("OPENAI_MAX_RESPONSE_BYTES", "65536")]).await;
    let (deltas, answer) = ask_streamed(&llm).await;
    let err = answer.expect_err("too large");
    assert_eq!(
        err.to_string(),
        "LLM error: the model server's answer exceeds OPENAI_MAX_RESPONSE_BYTES (65536 bytes)"
    );
    assert!(deltas.is_empty(), "its Content-Length said so");
    assert_eq!(requests(&server).await, 1, "not retried");
}

#[tokio::test]
async fn a_key_the_model_server_echoes_before_or_in_a_stream_is_not_in_the_error() {
    let server = MockServer::start().await;
    let key = "sk-echoed-by-the-server-0123456789";
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "message": format!("Incorrect API key provided: {key}."),
            "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let failing = event(&chunk(Some("Hel"), None))
        + &event(
            &json!({"error": {"message": format!("key {key} revoked"), "type": "server_error"}}),
        );
    Mock::given(method("POST"))
        .respond_with(streamed(failing))
        .mount(&server)
        .await;
    let llm = client(&server, &[("OPENAI_API_KEY", key)]).await;
    let before = ask_streamed(&llm).await.1.expect_err("401").to_string();
    assert!(!before.contains(key), "{before}");
    assert!(
        before.contains("Incorrect API key provided: [REDACTED]"),
        "{before}"
    );
    let (deltas, answer) = ask_streamed(&llm).await;
    let inside = answer.expect_err("an error event");
    assert!(
        matches!(inside, Error::Llm(ref m)
            if m == "the model server failed mid-answer: key [REDACTED] revoked"),
        "{inside:?}"
    );
    assert_eq!(deltas, ["Hel"]);
}

/// A model server on a raw socket for streams wiremock cannot play (it sends a body
/// whole): it answers one request with a chunked event stream, one HTTP chunk for each
/// string sent on the returned channel, and ends the body when the channel is dropped.
/// The URL is the `OPENAI_BASE_URL`.
async fn streaming_server() -> (String, tokio::sync::mpsc::Sender<String>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("address"));
    let (sender, mut chunks) = tokio::sync::mpsc::channel::<String>(4);
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("a request");
        let mut socket = tokio::io::BufReader::new(socket);
        // The request: headers to the blank line, then its Content-Length of body.
        let mut length = 0;
        loop {
            let mut line = String::new();
            socket.read_line(&mut line).await.expect("a request line");
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().expect("a length");
            }
            if line.trim().is_empty() {
                break;
            }
        }
        let mut body = vec![0; length];
        socket
            .read_exact(&mut body)
            .await
            .expect("the request body");
        let mut socket = socket.into_inner();
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                    transfer-encoding: chunked\r\n\r\n";
        if socket.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        while let Some(data) = chunks.recv().await {
            let chunk = format!("{:x}\r\n{data}\r\n", data.len());
            if socket.write_all(chunk.as_bytes()).await.is_err() {
                return; // the client hung up
            }
        }
        let _ = socket.write_all(b"0\r\n\r\n").await;
    });
    (url, sender)
}

#[tokio::test]
async fn each_delta_is_handed_on_as_it_arrives_while_the_stream_holds_its_slot() {
    let (url, server) = streaming_server().await;
    let llm = client_at(&url, &[]);
    let (seen, mut deltas) = tokio::sync::mpsc::unbounded_channel();
    let answering = tokio::spawn({
        let llm = llm.clone();
        async move {
            let limit = llm.clone();
            llm.chat_stream(&[ChatMessage::user("hi")], 10, move |delta| {
                let _ = seen.send((delta.to_owned(), limit.concurrency().in_flight));
            })
            .await
        }
    });
    let send = |data: String| {
        let server = server.clone();
        async move { server.send(data).await.expect("the server is up") }
    };
    send(event(&chunk(Some("Hello"), None))).await;
    let first = tokio::time::timeout(Duration::from_secs(5), deltas.recv())
        .await
        .expect("the first delta came before the rest of the answer was sent");
    assert_eq!(first, Some(("Hello".to_owned(), 1)), "with its slot held");
    send(event(&chunk(Some(" world"), Some("stop")))).await;
    send(event(&usage_chunk()) + "data: [DONE]\n\n").await;
    // The server has not ended the body: `data: [DONE]` ends the answer.
    let answer = tokio::time::timeout(Duration::from_secs(5), answering)
        .await
        .expect("answered at `data: [DONE]`")
        .expect("joined")
        .expect("answer");
    drop(server);
    assert_eq!(answer.content, "Hello world");
    assert_eq!(answer.usage.total_tokens, 10);
    assert_eq!(deltas.recv().await, Some((" world".to_owned(), 1)));
    let limit = llm.concurrency();
    assert_eq!((limit.in_flight, limit.overloads), (0, 0), "{limit:?}");
}

#[tokio::test]
async fn a_server_that_streams_for_ever_fails_at_the_response_limit() {
    let (url, server) = streaming_server().await;
    let llm = client_at(&url, &[("OPENAI_MAX_RESPONSE_BYTES", "65536")]);
    let answering = tokio::spawn(async move {
        let mut handed_on = 0;
        let answer = llm
            .chat_stream(&[ChatMessage::user("hi")], 10, |delta| {
                handed_on += delta.len();
            })
            .await;
        (handed_on, answer, llm.concurrency())
    });
    let spam = event(&chunk(Some("spam "), None));
    while !answering.is_finished() && server.send(spam.clone()).await.is_ok() {}
    let (handed_on, answer, limit) = answering.await.expect("joined");
    let err = answer.expect_err("too large");
    assert_eq!(
        err.to_string(),
        "LLM error: the model server's answer exceeds OPENAI_MAX_RESPONSE_BYTES (65536 bytes)"
    );
    assert!((1..65536).contains(&handed_on), "{handed_on} bytes of text");
    assert_eq!(limit.in_flight, 0, "{limit:?}");
}

#[tokio::test]
async fn a_stream_that_stalls_times_out_after_its_deltas_and_signals_overload() {
    let (url, server) = streaming_server().await;
    let llm = client_at(&url, &[("OPENAI_TIMEOUT_SECS", "1")]);
    server
        .send(event(&chunk(Some("Hello"), None)))
        .await
        .expect("the server is up");
    let started = Instant::now();
    let (deltas, answer) = ask_streamed(&llm).await;
    let err = answer.expect_err("stalled");
    assert!(matches!(err, Error::LlmTimeout(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "LLM error: the model server did not answer in time"
    );
    assert_eq!(deltas, ["Hello"]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the whole request is bounded"
    );
    let limit = llm.concurrency();
    assert_eq!((limit.in_flight, limit.overloads), (0, 1), "{limit:?}");
    drop(server);
}

#[tokio::test]
async fn a_server_that_ignores_stream_true_answers_whole_and_its_text_is_one_delta() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole answer"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        })))
        .mount(&server)
        .await;
    let llm = client(&server, &[]).await;
    let (deltas, answer) = ask_streamed(&llm).await;
    let answer = answer.expect("a whole completion is an answer");
    assert_eq!(deltas, ["whole answer"]);
    assert_eq!(answer.content, "whole answer");
    assert_eq!(answer.usage.total_tokens, 5);
}

#[tokio::test]
async fn requests_errors_latency_and_tokens_are_counted_by_model_and_node() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body("fine", "stop")))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {"message": "bad request", "type": "invalid_request_error"}
        })))
        .mount(&server)
        .await;
    let _ = crate::http::metrics::prometheus();
    let llm = client(&server, &[]).await;
    let ok = llm.for_node("observe-ok");
    for _ in 0..2 {
        ok.chat(&[ChatMessage::user("hi")], 10)
            .await
            .expect("answer");
    }
    let refused = llm
        .for_node("observe-refused")
        .chat(&[ChatMessage::user("hi")], 10)
        .await;
    assert!(matches!(refused, Err(Error::Llm(_))), "{refused:?}");

    let text = crate::http::metrics::prometheus()
        .expect("recorder")
        .render();
    for series in [
        r#"llm_requests_total{model="m",node="observe-ok"} 2"#,
        r#"llm_tokens_total{model="m",node="observe-ok",type="input"} 14"#,
        r#"llm_tokens_total{model="m",node="observe-ok",type="output"} 6"#,
        r#"llm_request_duration_seconds_count{model="m",node="observe-ok"} 2"#,
        r#"llm_requests_total{model="m",node="observe-refused"} 1"#,
        r#"llm_errors_total{model="m",node="observe-refused",kind="api"} 1"#,
    ] {
        assert!(text.contains(series), "no {series} in\n{text}");
    }
    assert!(
        !text.contains(r#"llm_errors_total{model="m",node="observe-ok""#),
        "{text}"
    );
}
