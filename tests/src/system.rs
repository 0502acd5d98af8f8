//! [`System`]: the three services in-process against one broker and one model; its
//! route methods are in [`routes`](crate::routes).

use std::time::{Duration, Instant};

use agent_runtime::config::Settings;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The settings every service gets in the tests: the broker, the model stand-in, a 3 s
/// session timeout, 2 partitions per topic, loopback only, a 5 s drain.
pub(crate) fn test_vars<'a>(bootstrap: &'a str, llm_url: &'a str) -> Vec<(&'a str, &'a str)> {
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

/// The settings of [`System::start`]: the test settings, `PORT=0` and `extra`; unless
/// `extra` sets `DATA_DIR`, the services' SQLite files (the results view's, and the
/// solver's checkpoints with `CHECKPOINTER=sqlite`) go to a folder of their own under
/// the system's temporary folder ([`scratch_dir`]).
///
/// # Panics
/// When they are not valid.
pub fn test_settings(bootstrap: &str, llm_url: &str, extra: &[(&str, &str)]) -> Settings {
    let mut vars = test_vars(bootstrap, llm_url);
    vars.push(("PORT", "0"));
    vars.extend_from_slice(extra);
    let mut settings = Settings::from_vars(vars).expect("valid test settings");
    if !extra.iter().any(|(var, _)| *var == "DATA_DIR") {
        settings.data_dir = scratch_dir();
    }
    settings
}

/// A new, empty folder for one test's files: `<temp>/langgraph-kafka-e2e/<uuid>`.
///
/// # Panics
/// When it cannot be created.
pub fn scratch_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir()
        .join("langgraph-kafka-e2e")
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// An HTTP client that sends the first key of `API_KEYS` (when set) as
/// `Authorization: Bearer`, as a configured client of the services would.
fn client_for(settings: &Settings) -> reqwest::Client {
    use secrecy::ExposeSecret;
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(keys) = &settings.http.api_keys
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

impl std::fmt::Debug for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("System").finish_non_exhaustive()
    }
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
    /// solver as its own process ([`SolverProcess`](crate::SolverProcess)) so they can kill it. `solver` is
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
            let _ =
                agent_runtime::telemetry::init(agent_runtime::telemetry::LogFormat::Pretty, "e2e");
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
}

impl Drop for System {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // The folder of the services' SQLite files, when the harness made it (best
        // effort: a service may still hold a file open a moment).
        let data = &self.settings.data_dir;
        if data.starts_with(std::env::temp_dir().join("langgraph-kafka-e2e")) {
            let _ = std::fs::remove_dir_all(data);
        }
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
