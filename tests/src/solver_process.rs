//! [`ServiceProcess`]: a service (task-solver, task-generator) as its own process, to
//! kill or stop.

use std::{
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

use crate::{broker::send_signal, system::test_vars};
use crate::{free_port, repo_root, wait_until_healthy};

/// The task-solver binary, built (or found up to date) by cargo once per test process.
///
/// # Panics
/// When cargo cannot build it.
pub fn solver_binary() -> PathBuf {
    service_binary("task-solver")
}

/// The binary of `service` (a package and binary of the same name), built (or found up
/// to date) by cargo once per test process.
///
/// # Panics
/// When cargo cannot build it.
pub fn service_binary(service: &'static str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(&str, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, path)) = built.iter().find(|(name, _)| *name == service) {
        return path.clone();
    }
    let path = {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        // The variables cargo sets for a test (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, …)
        // are not the build's: a build script that watches one (ring's watches
        // `CARGO_MANIFEST_DIR`) would see it change, and this build and the next outer
        // one would each rebuild half the dependency tree.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                ]
                .contains(&name.as_ref())
            {
                command.env_remove(name.as_ref());
            }
        }
        let status = command
            .args([
                "build", "--quiet", "--locked", "-p", service, "--bin", service,
            ])
            .current_dir(repo_root())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build -p {service} failed");
        // Test binaries live in target/<profile>/deps; binaries one level up.
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe
            .parent()
            .and_then(std::path::Path::parent)
            .expect("target/<profile>");
        let binary = profile_dir.join(service);
        assert!(
            binary.exists(),
            "{} missing after the build",
            binary.display()
        );
        binary
    };
    built.push((service, path.clone()));
    path
}

/// A service running as its own process, so that a test can kill it (SIGKILL) or stop
/// it (SIGTERM) as Kubernetes would. Its log goes to a file named in panics and printed
/// by [`ServiceProcess::log_path`]. Killed on drop.
pub struct ServiceProcess {
    child: Child,
    /// Its base URL, `http://127.0.0.1:<port>`.
    pub base: String,
    /// Its `/health` URL.
    pub health: String,
    log: PathBuf,
}

/// The task-solver as its own process (see [`ServiceProcess::start`]).
pub type SolverProcess = ServiceProcess;

impl std::fmt::Debug for ServiceProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceProcess").finish_non_exhaustive()
    }
}

impl ServiceProcess {
    /// Starts a solver with the test settings ([`System::start`](crate::System::start)'s), `SOLVER_ID` = `name`
    /// and `extra`; waits until `/health` says `ok`.
    ///
    /// # Panics
    /// When it cannot start or does not get healthy within 60 s.
    pub async fn start(bootstrap: &str, llm_url: &str, name: &str, extra: &[(&str, &str)]) -> Self {
        let mut vars = vec![("SOLVER_ID", name)];
        vars.extend_from_slice(extra);
        Self::start_service("task-solver", bootstrap, llm_url, name, &vars).await
    }

    /// Starts `service` with the test settings and `extra`, logging to a file named after
    /// `name`; waits until `/health` says `ok`.
    ///
    /// # Panics
    /// When it cannot start or does not get healthy within 60 s.
    pub async fn start_service(
        service: &'static str,
        bootstrap: &str,
        llm_url: &str,
        name: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        let port = free_port().to_string();
        let mut vars = test_vars(bootstrap, llm_url);
        vars.extend_from_slice(&[("PORT", &port), ("LOG_FORMAT", "json")]);
        vars.extend_from_slice(extra);
        let log = std::env::temp_dir().join(format!("e2e-{name}-{port}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(service_binary(service))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(vars)
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("task-solver starts");
        let process = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            health: format!("http://127.0.0.1:{port}/health"),
            log,
        };
        assert!(
            wait_until_healthy(
                &reqwest::Client::new(),
                &process.health,
                Duration::from_secs(60)
            )
            .await,
            "{service} {name} did not get healthy in 60 s; log: {}",
            process.log.display()
        );
        process
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

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
