//! Smoke tests on the real local model (SmolLM2-135M served by llama.cpp through
//! `scripts/model-server.py`): the whole pipeline with a real broker, and a streamed
//! answer straight from the LLM client.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use agent_core::task::TaskStatus;
use agent_runtime::{
    config::Settings,
    llm::{ChatMessage, LlmClient},
};
use e2e::{Broker, System, free_port, repo_root, venv};
use serde_json::json;

/// The model server process; killed on drop.
struct ModelServer {
    child: Child,
    port: u16,
}

impl ModelServer {
    fn start() -> Self {
        let python = venv().join("bin/python");
        assert!(
            python.exists(),
            "no project venv at {}: run `make test` (or scripts/bootstrap.sh) first",
            venv().display()
        );
        let port = free_port();
        let log = std::env::temp_dir().join(format!("lgk-model-server-{port}.log"));
        let child = Command::new(&python)
            .arg(repo_root().join("scripts/model-server.py"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).map_or_else(|_| Stdio::null(), Stdio::from))
            .spawn()
            .expect("model server starts");
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && reqwest::blocking_health(port);
            if ready {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "the model server did not answer in 120 s; see {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

mod reqwest {
    /// `GET /health` answers 200 (plain TCP, so the check needs no runtime).
    pub(super) fn blocking_health(port: u16) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let request =
            format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_local_model_generates_a_task_and_solves_it() {
    let broker = Broker::start();
    let model = tokio::task::spawn_blocking(ModelServer::start)
        .await
        .expect("model server");
    let llm_url = format!("http://127.0.0.1:{}/v1", model.port);
    let system = System::start(
        &broker.bootstrap(),
        &llm_url,
        &[("OPENAI_MODEL", "smollm2"), ("OPENAI_TIMEOUT_SECS", "120")],
    )
    .await;

    let started = Instant::now();
    let generated = system
        .generate_task(json!("User: I need help with my project"))
        .await
        .ok();
    let generated_in = started.elapsed();
    let name = &generated.task.task_name;
    assert!(
        !name.trim().is_empty(),
        "the model named the task: {generated:?}"
    );

    let view = system
        .wait_for_result(&generated.task_id.to_string(), Duration::from_secs(240))
        .await;
    assert_eq!(view.status, TaskStatus::Completed, "{view:?}");
    let result = view.result.as_ref().expect("a result");
    let answer = result.result.as_deref().unwrap_or_default();
    assert!(!answer.trim().is_empty(), "the model answered: {view:?}");
    assert!(result.usage.completion_tokens > 0, "{view:?}");
    println!(
        "local model: task {name:?} generated in {:.1} s, completed {:.1} s after the POST, solver used {} tokens",
        generated_in.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        result.usage.total_tokens
    );

    // The same model through the synchronous route: agent-comms asks a solver over Kafka
    // (POST /request) and answers its result.
    let asked = Instant::now();
    let (status, body) = system
        .post_json(
            &format!("{}/request", system.comms),
            &json!({
                "agent": "task-solver",
                "payload": {"task_name": name, "task_description": generated.task.task_description},
                "timeout_ms": 240_000
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reply"]["status"], "completed", "{body}");
    assert!(
        body["reply"]["result"]
            .as_str()
            .is_some_and(|answer| !answer.trim().is_empty()),
        "the model answered: {body}"
    );
    println!(
        "local model: the same task asked over POST /request answered in {:.1} s",
        asked.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_local_model_streams_an_answer_as_it_writes() {
    let model = tokio::task::spawn_blocking(ModelServer::start)
        .await
        .expect("model server");
    let url = format!("http://127.0.0.1:{}/v1", model.port);
    let settings = Settings::from_vars([
        ("OPENAI_BASE_URL", url.as_str()),
        ("OPENAI_MODEL", "smollm2"),
        ("OPENAI_TIMEOUT_SECS", "120"),
    ])
    .expect("settings");
    let llm = LlmClient::new(&settings.llm).expect("client");

    let started = Instant::now();
    let mut deltas = Vec::new();
    let answer = llm
        .chat_stream(&[ChatMessage::user("Name three colours.")], 48, |delta| {
            deltas.push(delta.to_owned());
        })
        .await
        .expect("a streamed answer");
    assert!(deltas.len() > 1, "the answer came in pieces: {deltas:?}");
    assert_eq!(deltas.concat(), answer.content);
    assert!(
        answer.usage.completion_tokens > 0,
        "llama.cpp sent the usage chunk: {answer:?}"
    );
    assert_eq!(llm.concurrency().in_flight, 0, "the slot was given back");
    println!(
        "local model: streamed {} deltas, {} tokens, in {:.1} s: {:?}",
        deltas.len(),
        answer.usage.completion_tokens,
        started.elapsed().as_secs_f64(),
        answer.content
    );
}
