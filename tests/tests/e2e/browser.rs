//! A task's live stream in a real browser: a page on another origin posts a conversation
//! with `fetch`, follows the task with `EventSource`, shows each `token` as it arrives and
//! the `result` at the end — in headless Chromium, driven over WebDriver, with a
//! screenshot left under `<target>/e2e-artifacts/browser/`. Without `CORS_ALLOW_ORIGINS`
//! naming the page's origin, the browser refuses the page the answers. And Swagger UI at
//! task-generator's `/docs` renders an operation block for every route (`docs.png`).

use std::time::{Duration, Instant};

use axum::{Router, response::Html, routing::get};
use e2e::{Broker, Browser, LlmStandIn, STANDIN_TASK, System, artifacts_dir, completion};
use fantoccini::Locator;
use serde_json::Value;

/// The model's answer, streamed word by word by the stand-in.
const ANSWER: &str = "Each word of this answer reaches the browser as its own token event.";

/// The page: `?api=<task-generator's base URL>`. It posts a conversation, opens the
/// task's stream, appends each `token` chunk to `#tokens` (counting them in `#count`),
/// shows the `result` in `#result`, closes the stream and says `done` in `#status` (or
/// `error: …` when the browser refused a request).
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Task stream</title>
<style>
  body { font: 16px/1.5 sans-serif; margin: 24px; color: #222; }
  h1 { font-size: 22px; margin: 0 0 12px; }
  dt { font-weight: bold; margin-top: 10px; }
  #tokens span { white-space: pre-wrap; background: #dbeafe; border-radius: 3px;
                 margin-right: 2px; padding: 1px 0; }
  #result { background: #dcfce7; padding: 2px 4px; }
  #status { font-weight: bold; }
</style>
</head>
<body>
<h1>Task stream in the browser</h1>
<dl>
  <dt>status</dt><dd id="status">starting</dd>
  <dt>task</dt><dd><code id="task">-</code></dd>
  <dt>tokens (<span id="count">0</span>)</dt><dd id="tokens"></dd>
  <dt>result</dt><dd id="result"></dd>
</dl>
<script>
const api = new URLSearchParams(location.search).get("api");
const $ = (id) => document.getElementById(id);
let tokens = 0;

async function run() {
  $("status").textContent = "posting";
  const answer = await fetch(api + "/generate-task", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ conversation_history: "User: show me a task streaming in a browser" }),
  });
  if (!answer.ok) throw new Error("POST /generate-task answered " + answer.status);
  const task = await answer.json();
  $("task").textContent = task.task_id;
  $("status").textContent = "streaming";
  const source = new EventSource(api + "/task-result/" + task.task_id + "/stream");
  source.addEventListener("token", (event) => {
    const piece = document.createElement("span");
    piece.textContent = JSON.parse(event.data).chunk;
    $("tokens").appendChild(piece);
    $("count").textContent = ++tokens;
  });
  source.addEventListener("result", (event) => {
    const result = JSON.parse(event.data);
    source.close();
    $("result").textContent = result.result;
    $("status").textContent = result.status === "completed" ? "done" : "ended " + result.status;
  });
  // A dropped stream is resumed by the browser itself (Last-Event-ID); only a refused
  // one is closed for good.
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) $("status").textContent = "error: stream refused";
  };
}
run().catch((err) => { $("status").textContent = "error: " + err.message; });
</script>
</body>
</html>
"#;

/// Serves [`PAGE`] at `/` on a free port of 127.0.0.1; its origin.
async fn serve_page() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port for the page");
    let origin = format!("http://{}", listener.local_addr().expect("address"));
    let app = Router::new().route("/", get(|| async { Html(PAGE) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    origin
}

/// The text of the element `id` as the page holds it (`textContent`: every space kept).
async fn text_of(browser: &Browser, id: &str) -> String {
    let script = "return document.getElementById(arguments[0]).textContent;";
    let value = browser
        .client
        .execute(script, vec![Value::from(id)])
        .await
        .unwrap_or_else(|err| panic!("#{id}: {err}"));
    value.as_str().unwrap_or_default().to_owned()
}

/// Opens the page of `origin` against `api` and waits (60 s at most) until its status is
/// neither `starting`, `posting` nor `streaming`; that status.
async fn run_page(browser: &Browser, origin: &str, api: &str) -> String {
    browser
        .client
        .goto(&format!("{origin}/?api={api}"))
        .await
        .expect("the page opens");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = browser
            .client
            .find(Locator::Id("status"))
            .await
            .expect("#status")
            .text()
            .await
            .expect("its text");
        if !matches!(status.as_str(), "starting" | "posting" | "streaming") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the page still says {status:?} after 60 s; tokens so far: {:?}",
            text_of(browser, "tokens").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_sees_the_tokens_arrive_and_the_result_in_chromium() {
    let Some(browser) = Browser::start_or_skip().await else {
        return;
    };
    let page = serve_page().await;
    let stranger = serve_page().await;
    let broker = Broker::start();
    let llm = LlmStandIn::empty().await;
    llm.answer_structured(STANDIN_TASK).await;
    llm.answer_streamed(ANSWER).await;
    llm.answer_text(200, completion(ANSWER)).await;
    // Each word its own `token` event (the stand-in streams word by word).
    let system = System::start(
        &broker.bootstrap(),
        &llm.base_url(),
        &[("STREAM_CHUNK_MS", "0"), ("CORS_ALLOW_ORIGINS", &page)],
    )
    .await;

    let status = run_page(&browser, &page, &system.generator).await;
    let count: usize = text_of(&browser, "count").await.parse().expect("a count");
    let tokens = text_of(&browser, "tokens").await;
    let result = text_of(&browser, "result").await;
    let task = text_of(&browser, "task").await;
    eprintln!("page: status {status:?}, task {task}, {count} tokens {tokens:?}, result {result:?}");

    let shot = artifacts_dir("browser").join("stream.png");
    let png = browser.client.screenshot().await.expect("a screenshot");
    std::fs::write(&shot, &png).expect("the screenshot is written");
    eprintln!("screenshot: {}", shot.display());

    assert_eq!(status, "done");
    assert!(
        count >= 2,
        "the answer came in pieces: {count} token events"
    );
    assert_eq!(tokens, result, "the tokens make up the result");
    assert_eq!(result, ANSWER, "the result is the model's answer");
    let view = system.wait_for_result(&task, Duration::from_secs(30)).await;
    let stored = view.result.and_then(|r| r.result);
    assert_eq!(
        stored.as_deref(),
        Some(ANSWER),
        "the page saw the stored result"
    );
    let written = std::fs::read(&shot).expect("the screenshot reads back");
    assert!(
        written.len() > 8 && written.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is a PNG ({} bytes)",
        shot.display(),
        written.len()
    );

    // The same page from an origin the services do not name: the browser refuses it the
    // answer, so the page never learns of a task.
    let status = run_page(&browser, &stranger, &system.generator).await;
    eprintln!("page on {stranger}: status {status:?}");
    assert!(status.starts_with("error: "), "{status}");
    assert_eq!(text_of(&browser, "task").await, "-");

    browser.close().await;
}

/// The text of every Swagger UI operation block (`.opblock`) the page shows now.
async fn operation_blocks(browser: &Browser) -> Vec<String> {
    let script =
        "return Array.from(document.querySelectorAll('.opblock')).map(e => e.textContent);";
    let value = browser
        .client
        .execute(script, vec![])
        .await
        .expect("the page runs the script");
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_of_task_generator_renders_its_operations_in_chromium() {
    let Some(browser) = Browser::start_or_skip().await else {
        return;
    };
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    // With keys set: the page and the document stay open all the same.
    let system = System::start(
        &broker.bootstrap(),
        &llm.base_url(),
        &[("API_KEYS", "docs-test-key-0001")],
    )
    .await;

    // Tall enough for the screenshot to show every operation below the document's info.
    browser
        .client
        .set_window_size(1000, 1500)
        .await
        .expect("the window is resized");
    browser
        .client
        .goto(&format!("{}/docs", system.generator))
        .await
        .expect("the docs page opens");
    // Swagger UI fetches /openapi.json and renders a block per operation.
    let deadline = Instant::now() + Duration::from_secs(30);
    let blocks = loop {
        let blocks = operation_blocks(&browser).await;
        if blocks.iter().any(|b| b.contains("/generate-task")) {
            break blocks;
        }
        assert!(
            Instant::now() < deadline,
            "no operation block for /generate-task after 30 s; blocks: {blocks:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let shot = artifacts_dir("browser").join("docs.png");
    let png = browser.client.screenshot().await.expect("a screenshot");
    std::fs::write(&shot, &png).expect("the screenshot is written");
    eprintln!(
        "{} operation blocks; screenshot: {}",
        blocks.len(),
        shot.display()
    );

    for path in [
        "/generate-task",
        "/task-results",
        "/task-result/{task_id}",
        "/task-result/{task_id}/stream",
        "/task-result/{task_id}/resume",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(
            blocks.iter().any(|b| b.contains(path)),
            "no operation block for {path}: {blocks:?}"
        );
    }
    let title = browser
        .client
        .find(Locator::Css(".info .title"))
        .await
        .expect("the document's title")
        .text()
        .await
        .expect("its text");
    assert!(title.contains("task-generator"), "{title}");
    let written = std::fs::read(&shot).expect("the screenshot reads back");
    assert!(
        written.starts_with(b"\x89PNG\r\n\x1a\n") && written.len() > 10_000,
        "{} is a PNG of a rendered page ({} bytes)",
        shot.display(),
        written.len()
    );

    browser.close().await;
}
