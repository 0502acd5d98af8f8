//! Live task streams: `GET /task-result/{id}/stream` carries a task's events in order,
//! its `token` chunks make up its result, and a dropped stream resumes on another
//! replica by `Last-Event-ID` with every event once; a client that does not read is
//! disconnected, never buffered for, and resumes by its last id.

use std::time::Duration;

use e2e::{
    Broker, LlmStandIn, STANDIN_ANSWER, System, scratch_dir,
    sse::{SseEvent, SseReader},
};
use futures::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Opens the stream of `task_id` at `base`, resuming after `last_id` when given.
async fn open(
    http: &reqwest::Client,
    base: &str,
    task_id: &str,
    last_id: Option<&str>,
) -> reqwest::Response {
    let mut request = http.get(format!("{base}/task-result/{task_id}/stream"));
    if let Some(id) = last_id {
        request = request.header("Last-Event-ID", id);
    }
    let response = request.send().await.expect("the stream answers");
    assert_eq!(response.status(), 200, "the stream opens");
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    response
}

/// Every event of `reader` up to and including `result` (at most `limit`, 60 s each).
async fn until_result(reader: &mut SseReader, limit: usize) -> Vec<SseEvent> {
    let mut events = Vec::new();
    while events.len() < limit {
        let Some(event) = reader.next(Duration::from_secs(60)).await else {
            panic!("the stream ended before its result: {events:#?}");
        };
        let last = event.event == "result";
        events.push(event);
        if last {
            return events;
        }
    }
    panic!("no result within {limit} events");
}

/// The `token` chunks of `events`, in order, joined.
fn text_of(events: &[SseEvent]) -> String {
    events
        .iter()
        .filter(|e| e.event == "token")
        .map(|e| e.json()["chunk"].as_str().expect("a chunk").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_s_events_stream_in_order_and_its_tokens_make_up_its_result() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    // Each piece of the answer its own `token` event: the stand-in streams word by word.
    let system = System::start(
        &broker.bootstrap(),
        &llm.base_url(),
        &[("STREAM_CHUNK_MS", "0")],
    )
    .await;
    let task = system
        .generate_task(json!("User: help me with my project"))
        .await
        .ok();
    let task_id = task.task_id.to_string();

    let response = open(&system.http, &system.generator, &task_id, None).await;
    let events = until_result(&mut SseReader::new(response), 500).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    eprintln!("{} events: {kinds:?}", events.len());

    // In order: running first, the nodes, the tokens of `solve`, completed, the result.
    assert_eq!(kinds.first(), Some(&"status"));
    assert_eq!(events[0].json()["status"], "running");
    assert_eq!(kinds.last(), Some(&"result"));
    let result = events.last().expect("a result").json();
    assert_eq!(result["is_final"], true);
    assert_eq!(result["status"], "completed");
    assert_eq!(result["task_id"], task_id);
    let completed = kinds
        .iter()
        .rposition(|k| *k == "status")
        .expect("a final status");
    assert_eq!(events[completed].json()["status"], "completed");
    for node in ["plan", "solve", "format"] {
        let started = events
            .iter()
            .position(|e| {
                e.event == "node" && e.json()["node"] == node && e.json()["phase"] == "started"
            })
            .unwrap_or_else(|| panic!("{node} started"));
        let finished = events
            .iter()
            .position(|e| {
                e.event == "node" && e.json()["node"] == node && e.json()["phase"] == "finished"
            })
            .unwrap_or_else(|| panic!("{node} finished"));
        assert!(started < finished, "{node} starts before it finishes");
    }
    // The plan as a custom event.
    assert!(
        events
            .iter()
            .any(|e| e.event == "custom" && e.json()["value"]["plan"].is_string())
    );

    // The tokens: word by word, numbered from 0 without a gap, making up the result.
    let tokens: Vec<serde_json::Value> = events
        .iter()
        .filter(|e| e.event == "token")
        .map(SseEvent::json)
        .collect();
    assert!(tokens.len() > 3, "the answer came in pieces: {tokens:?}");
    for (n, token) in tokens.iter().enumerate() {
        assert_eq!(token["chunk_id"], n as u64);
        assert_eq!(token["node"], "solve");
        assert_eq!(
            token.as_object().map(|o| o.len()),
            Some(4),
            "task_id, node, chunk_id, chunk: {token}"
        );
    }
    assert_eq!(text_of(&events), STANDIN_ANSWER);
    assert_eq!(result["result"], STANDIN_ANSWER);

    // Every event has an id: increasing offsets, the result's ending in `.end`.
    let offsets: Vec<i64> = events[..events.len() - 1]
        .iter()
        .map(|e| {
            e.id.as_deref()
                .and_then(|id| id.parse().ok())
                .expect("an offset id")
        })
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    let end = events
        .last()
        .and_then(|e| e.id.clone())
        .expect("the result's id");
    assert!(end.ends_with(".end"), "{end}");

    // Opened again after the end, the stream replays the same events; resumed after
    // the result, it answers 204 (EventSource then stops).
    let again = open(&system.http, &system.generator, &task_id, None).await;
    let replay = until_result(&mut SseReader::new(again), 500).await;
    assert_eq!(replay, events, "a replay is the same stream");
    let over = system
        .http
        .get(format!("{}/task-result/{task_id}/stream", system.generator))
        .header("Last-Event-ID", &end)
        .send()
        .await
        .expect("answers");
    assert_eq!(over.status(), 204);

    // Unknown task: a JSON 404 before any stream; a made-up id: 400.
    let unknown = system
        .http
        .get(format!(
            "{}/task-result/{}/stream",
            system.generator,
            uuid::Uuid::new_v4()
        ))
        .send()
        .await
        .expect("answers");
    assert_eq!(unknown.status(), 404);
    let body: serde_json::Value = unknown.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "not_found");
    let bad = system
        .http
        .get(format!("{}/task-result/{task_id}/stream", system.generator))
        .header("Last-Event-ID", "not-an-id")
        .send()
        .await
        .expect("answers");
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_stream_resumes_on_a_second_replica_with_every_event_once() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(
        &broker.bootstrap(),
        &llm.base_url(),
        &[("STREAM_CHUNK_MS", "0")],
    )
    .await;
    // A second task-generator replica on the same topics, with a view of its own.
    let mut settings = system.settings.clone();
    settings.data_dir = scratch_dir();
    let second = task_generator::startup::App::build(settings)
        .await
        .expect("a second replica builds");
    let second_base = format!("http://{}", second.local_addr().expect("address"));
    let stop = CancellationToken::new();
    let second_task = tokio::spawn(second.run_until_stopped(stop.clone()));

    let task_id = system
        .generate_task(json!("User: help me with my project"))
        .await
        .ok()
        .task_id
        .to_string();
    // The whole stream, once, for reference.
    let whole = until_result(
        &mut SseReader::new(open(&system.http, &system.generator, &task_id, None).await),
        500,
    )
    .await;
    assert!(whole.len() > 8, "enough events to cut: {}", whole.len());

    // A client reads part of it on the first replica, drops the connection, and
    // resumes on the second with the last id it saw.
    let cut = whole.len() / 2;
    let mut first = SseReader::new(open(&system.http, &system.generator, &task_id, None).await);
    let mut joined = Vec::new();
    for _ in 0..cut {
        joined.push(first.next(Duration::from_secs(60)).await.expect("an event"));
    }
    drop(first);
    let last_id = joined.last().and_then(|e| e.id.clone()).expect("an id");
    let resumed = open(&system.http, &second_base, &task_id, Some(&last_id)).await;
    joined.extend(until_result(&mut SseReader::new(resumed), 500).await);
    assert_eq!(
        joined, whole,
        "every event once, in order, across the two replicas"
    );
    assert_eq!(text_of(&joined), STANDIN_ANSWER);

    stop.cancel();
    let _ = second_task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_disconnected_and_resumes_by_its_last_id() {
    use agent_core::task::{Progress, ProgressEvent};
    use rdkafka::{
        ClientConfig,
        producer::{FutureProducer, FutureRecord},
    };
    const FLOOD: usize = 20_000;
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    // No solver: the task stays pending, and its only events are the ones made here.
    let system = System::start_without_solver(&broker.bootstrap(), &llm.base_url(), &[]).await;
    let task_id = system
        .generate_task(json!("User: help me with my project"))
        .await
        .ok()
        .task_id;
    let id = task_id.to_string();

    // The client opens the stream and reads nothing while 20,000 token events of 1 KB
    // (20 MB, far more than the sockets hold) are written for its task.
    let response = open(&system.http, &system.generator, &id, None).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "20")
        .create()
        .expect("producer");
    let run_id = uuid::Uuid::new_v4();
    let chunk = "x".repeat(1000);
    let sends = (0..FLOOD).map(|n| {
        let event = ProgressEvent::now(
            task_id,
            run_id,
            Progress::Token {
                node: "solve".into(),
                chunk_id: n as u64,
                chunk: chunk.clone(),
            },
        );
        let payload = serde_json::to_vec(&event).expect("JSON");
        let producer = producer.clone();
        let topic = system.settings.kafka.topics.progress.clone();
        let key = id.clone();
        async move {
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Duration::from_secs(30),
                )
                .await
                .expect("produced");
        }
    });
    futures::stream::iter(sends)
        .buffered(256)
        .collect::<Vec<()>>()
        .await;

    // Reading now, the client gets what the sockets held, then the end: the generator
    // closed the stream instead of buffering for it.
    let mut reader = SseReader::new(response);
    let mut received = Vec::new();
    while let Some(event) = reader.next(Duration::from_secs(30)).await {
        received.push(event);
    }
    eprintln!(
        "{} of {FLOOD} events before the generator closed the stream",
        received.len()
    );
    assert!(!received.is_empty(), "some events came before the close");
    assert!(
        received.len() < FLOOD,
        "the stream was closed, not buffered"
    );
    assert!(received.iter().all(|e| e.event == "token"));
    let ids: Vec<u64> = received
        .iter()
        .map(|e| e.json()["chunk_id"].as_u64().expect("chunk_id"))
        .collect();
    assert!(
        ids.iter().enumerate().all(|(n, id)| *id == n as u64),
        "in order, none skipped"
    );

    // Resumed by its last id, it goes on exactly where it stopped.
    let last = received.last().and_then(|e| e.id.clone()).expect("an id");
    let mut resumed = SseReader::new(open(&system.http, &system.generator, &id, Some(&last)).await);
    let next = resumed
        .next(Duration::from_secs(30))
        .await
        .expect("the next event");
    assert_eq!(next.json()["chunk_id"], received.len() as u64);
    let (health, _) = e2e::get_json(&system.http, &format!("{}/health", system.generator)).await;
    assert_eq!(health, 200);
}

/// `POST /generate-task` asking for `text/event-stream`.
async fn post_streamed(
    http: &reqwest::Client,
    base: &str,
    body: serde_json::Value,
) -> reqwest::Response {
    http.post(format!("{base}/generate-task"))
        .header("Accept", "text/event-stream")
        .json(&body)
        .send()
        .await
        .expect("the POST answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_asking_for_an_event_stream_streams_the_generation_then_the_task() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(
        &broker.bootstrap(),
        &llm.base_url(),
        &[("STREAM_CHUNK_MS", "0")],
    )
    .await;
    let response = post_streamed(
        &system.http,
        &system.generator,
        json!({"conversation_history": "User: help me with my project"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let events = until_result(&mut SseReader::new(response), 500).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    eprintln!("{} events: {kinds:?}", events.len());

    // The first event names the task; the generation's nodes; the accepted task.
    assert_eq!(kinds[0], "metadata");
    let task_id = events[0].json()["task_id"]
        .as_str()
        .expect("a task id")
        .to_owned();
    let task_at = kinds
        .iter()
        .position(|k| *k == "task")
        .expect("a task event");
    let generation: Vec<(String, String)> = events[1..task_at]
        .iter()
        .map(|e| {
            assert_eq!(
                e.event, "generation",
                "only generation events before `task`"
            );
            assert_eq!(e.json()["task_id"], task_id.as_str());
            (
                e.json()["node"].as_str().expect("node").to_owned(),
                e.json()["phase"].as_str().expect("phase").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = ["draft", "validate", "publish"]
        .iter()
        .flat_map(|node| {
            ["started", "finished"].map(|phase| ((*node).to_owned(), phase.to_owned()))
        })
        .collect();
    assert_eq!(generation, expected);
    // Nothing of the generation can be resumed: no ids before the task's own events.
    assert!(events[..=task_at].iter().all(|e| e.id.is_none()));
    let accepted = events[task_at].json();
    assert_eq!(accepted["task_id"], task_id.as_str());
    assert_eq!(accepted["status"], "pending");
    assert_eq!(accepted["task"]["task_name"], "Project help");

    // Then the task's events, exactly as its own stream has them.
    let task_events = &events[task_at + 1..];
    assert_eq!(task_events[0].event, "status");
    assert_eq!(task_events[0].json()["status"], "running");
    assert_eq!(text_of(task_events), STANDIN_ANSWER);
    let result = events.last().expect("a result").json();
    assert_eq!(result["result"], STANDIN_ANSWER);
    assert_eq!(result["is_final"], true);
    let replay = until_result(
        &mut SseReader::new(open(&system.http, &system.generator, &task_id, None).await),
        500,
    )
    .await;
    assert_eq!(replay, task_events, "the same events, ids and all");

    // Bad input is a JSON 422 before any stream.
    let bad = post_streamed(
        &system.http,
        &system.generator,
        json!({"conversation": "x"}),
    )
    .await;
    assert_eq!(bad.status(), 422);
    let body: serde_json::Value = bad.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "validation_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_stream_whose_generation_fails_ends_with_an_error_event() {
    let broker = Broker::start();
    // No answers: every model request is a 404, which is not retried.
    let llm = LlmStandIn::empty().await;
    let system = System::start_without_solver(&broker.bootstrap(), &llm.base_url(), &[]).await;
    let response = post_streamed(
        &system.http,
        &system.generator,
        json!({"conversation_history": "User: help me with my project"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let mut reader = SseReader::new(response);
    let mut events = Vec::new();
    while let Some(event) = reader.next(Duration::from_secs(60)).await {
        events.push(event);
    }
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"metadata"), "{kinds:?}");
    assert_eq!(
        kinds.last(),
        Some(&"error"),
        "the stream ends with the error: {kinds:?}"
    );
    assert!(!kinds.contains(&"task"), "{kinds:?}");
    let error = events.last().expect("an error").json();
    assert_eq!(error["status"], 502, "{error}");
    assert_eq!(error["error"]["code"], "bad_gateway", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{error}"
    );
}
