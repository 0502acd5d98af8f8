//! Bad input to every route gets the right 4xx and a JSON error body, and loses nothing.

use std::time::Duration;

use e2e::{Broker, LlmStandIn, System, read_topic};
use rdkafka::{Message, message::Headers};
use serde_json::{Value, json};

/// Asserts `status` and that `body` is `{"error": {"code": code, "message": <non-empty>}}`.
fn assert_error(what: &str, status: u16, body: &Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{what}: {body}");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: no message in {body}"
    );
}

async fn raw(
    system: &System,
    method: reqwest::Method,
    url: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = system.http.request(method, url).body(body);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text})),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_bad_input_with_a_json_4xx() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(&broker.bootstrap(), &llm.base_url(), &[]).await;
    let generate = format!("{}/generate-task", system.generator);
    let post = reqwest::Method::POST;
    let json_ct = Some("application/json");

    // POST /generate-task
    for (what, body, status, code) in [
        (
            "missing conversation_history",
            json!({}),
            422,
            "validation_failed",
        ),
        (
            "null conversation_history",
            json!({"conversation_history": null}),
            422,
            "validation_failed",
        ),
        (
            "empty conversation_history",
            json!({"conversation_history": ""}),
            422,
            "validation_failed",
        ),
        (
            "blank conversation_history",
            json!({"conversation_history": "   "}),
            422,
            "validation_failed",
        ),
        (
            "numeric conversation_history",
            json!({"conversation_history": 42}),
            422,
            "validation_failed",
        ),
        (
            "object conversation_history",
            json!({"conversation_history": {"a": 1}}),
            422,
            "validation_failed",
        ),
        (
            "empty message list",
            json!({"conversation_history": []}),
            422,
            "validation_failed",
        ),
        (
            "message without role",
            json!({"conversation_history": [{"content": "hi"}]}),
            422,
            "validation_failed",
        ),
        (
            "body not an object",
            json!(["User: hi"]),
            422,
            "validation_failed",
        ),
        (
            "conversation too long",
            json!({"conversation_history": "x".repeat(100_001)}),
            422,
            "validation_failed",
        ),
    ] {
        let answer = system.generate_task_with(&body).await;
        assert_error(what, answer.status, &answer.body, status, code);
    }
    let (got, body) = raw(
        &system,
        post.clone(),
        &generate,
        json_ct,
        b"{not json".to_vec(),
    )
    .await;
    assert_error("malformed JSON", got, &body, 400, "bad_request");
    let (got, body) = raw(
        &system,
        post.clone(),
        &generate,
        Some("text/plain"),
        br#"{"conversation_history": "hi"}"#.to_vec(),
    )
    .await;
    assert_error(
        "wrong content type",
        got,
        &body,
        415,
        "unsupported_media_type",
    );
    let (got, body) = raw(
        &system,
        post.clone(),
        &generate,
        None,
        br#"{"conversation_history": "hi"}"#.to_vec(),
    )
    .await;
    assert_error("no content type", got, &body, 415, "unsupported_media_type");
    let big = format!(
        r#"{{"conversation_history": "{}"}}"#,
        "x".repeat(1024 * 1024 + 10)
    );
    let (got, body) = raw(&system, post.clone(), &generate, json_ct, big.into_bytes()).await;
    assert_error("body over 1 MiB", got, &body, 413, "payload_too_large");
    let (got, body) = raw(&system, reqwest::Method::GET, &generate, None, Vec::new()).await;
    assert_error("wrong method", got, &body, 405, "method_not_allowed");

    // GET /task-result/{id} and /task-results
    let answer = system.task_result("not-a-uuid").await;
    assert_error(
        "malformed task id",
        answer.status,
        &answer.body,
        400,
        "bad_request",
    );
    let answer = system.task_result(uuid::Uuid::new_v4()).await;
    assert_error(
        "unknown task id",
        answer.status,
        &answer.body,
        404,
        "not_found",
    );
    for query in ["status=done", "limit=0", "limit=abc", "limit=5000"] {
        let answer = system.task_results(query).await;
        assert_error(query, answer.status, &answer.body, 400, "bad_request");
    }

    // Unknown routes on every service.
    for base in [&system.generator, &system.comms, &system.solver] {
        let (got, body) = system.get_json(&format!("{base}/no-such-route")).await;
        assert_error("unknown route", got, &body, 404, "not_found");
    }

    // POST /send_event and GET /last_message
    let send = format!("{}/send_event", system.comms);
    for (what, body, status, code) in [
        (
            "missing payload",
            json!({"topic": "x"}),
            422,
            "validation_failed",
        ),
        (
            "null payload",
            json!({"payload": null}),
            422,
            "validation_failed",
        ),
        (
            "bad topic name",
            json!({"payload": {}, "topic": "no spaces allowed"}),
            422,
            "validation_failed",
        ),
        (
            "numeric key",
            json!({"payload": {}, "key": 5}),
            422,
            "validation_failed",
        ),
        (
            "unknown field",
            json!({"payload": {}, "partition": 3}),
            422,
            "validation_failed",
        ),
    ] {
        let answer = system.send_event(&body).await;
        assert_error(what, answer.status, &answer.body, status, code);
    }
    let (got, body) = raw(&system, post.clone(), &send, json_ct, b"nope".to_vec()).await;
    assert_error("malformed JSON", got, &body, 400, "bad_request");
    let (got, body) = raw(
        &system,
        post.clone(),
        &send,
        Some("text/plain"),
        br#"{"payload": 1}"#.to_vec(),
    )
    .await;
    assert_error(
        "wrong content type",
        got,
        &body,
        415,
        "unsupported_media_type",
    );
    let answer = system.last_message(Some("bad%20name")).await;
    assert_error("bad topic", answer.status, &answer.body, 400, "bad_request");
    let answer = system.last_message(None).await;
    assert_error(
        "no message yet",
        answer.status,
        &answer.body,
        404,
        "not_found",
    );

    // Nothing reached the broker: no task was published, so the model saw no solver call.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let list = system.task_results("").await.ok();
    assert_eq!(list.count, 0, "{list:?}");
    assert_eq!(llm.calls().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_goes_to_the_dead_letter_topic_and_the_solver_moves_on() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(&broker.bootstrap(), &llm.base_url(), &[]).await;
    let topics = system.settings.kafka.topics.clone();

    // Same key, so both land on one partition: the good task behind the poison one.
    let sent = system
        .send_event(&json!({"payload": {"not": "a task"}, "key": "k1"}))
        .await;
    assert_eq!(sent.status, 200);
    let sent = system
        .send_event(
            &json!({"payload": {"task_name": "After poison", "task_description": "Still solved."}, "key": "k1"}),
        )
        .await;
    assert_eq!(sent.status, 200);

    let list = system
        .wait_for_results(Duration::from_secs(60), |list| !list.completed().is_empty())
        .await;
    assert_eq!(
        list.results
            .first()
            .and_then(|t| t.task.as_ref())
            .map(|t| t.task_name.as_str()),
        Some("After poison"),
        "{list:?}"
    );

    // The dead-letter topic is no client's to read through agent-comms: read it as an
    // operator would, straight from Kafka.
    let refused = system.last_message(Some(&topics.dead_letter)).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let dead = read_topic(
        &broker.bootstrap(),
        &topics.dead_letter,
        1,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(dead.len(), 1);
    let header = |key: &str| {
        dead[0]
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == key).and_then(|h| h.value))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let payload: Value =
        serde_json::from_slice(dead[0].payload().unwrap_or_default()).expect("JSON");
    assert_eq!(payload, json!({"not": "a task"}));
    assert_eq!(dead[0].key(), Some(b"k1".as_slice()));
    assert_eq!(header("dlq_topic"), topics.events);
    assert_eq!(header("dlq_group"), "task-solver");
    assert!(
        header("dlq_error").contains("task_name"),
        "{}",
        header("dlq_error")
    );
    // The original CloudEvents headers are kept.
    assert_eq!(header("ce_source"), "/langgraph-kafka/agent-comms");
}
