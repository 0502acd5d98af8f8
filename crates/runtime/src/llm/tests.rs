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
    let url = format!("{}/v1", server.uri());
    let mut vars = vec![("OPENAI_BASE_URL", url.as_str()), ("OPENAI_MODEL", "m")];
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
