//! The results-view benchmark (`make bench-view`): how task-generator's view behaves
//! with many tasks already on the topics — time to ready at a first start and at a
//! restart, resident memory once caught up, and lookup latency under concurrent clients —
//! for each results store.
//!
//! - [`fill`]: tasks and their results produced onto the topics as fast as the broker
//!   takes them.
//! - [`probe`]: `GET /task-result/{id}` and `GET /task-results?limit=50` from concurrent
//!   clients for a while; latency percentiles.
//! - [`Generator`]: the release task-generator as its own process: started, timed to
//!   `/ready`, measured (`/proc/<pid>/status`), stopped with SIGTERM.

pub mod fill;
pub mod probe;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// A task-generator process.
#[derive(Debug)]
pub struct Generator {
    child: Child,
    /// Its base URL.
    pub base: String,
}

impl Generator {
    /// Starts `binary` with `env` (on top of a cleared environment with `PATH`) on
    /// `port`, its output to `log`.
    ///
    /// # Errors
    /// When it cannot be started.
    pub fn start(
        binary: &Path,
        port: u16,
        env: &[(String, String)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let file = std::fs::File::create(log).with_context(|| format!("log {}", log.display()))?;
        let child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn,task_generator=info")
            .env("PORT", port.to_string())
            .env("BIND_ADDRESS", "127.0.0.1")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        })
    }

    /// Waits until `/ready` answers 200; how long that took from `since`.
    ///
    /// # Errors
    /// When the process exits or `timeout` passes first.
    pub async fn until_ready(
        &mut self,
        http: &reqwest::Client,
        since: Instant,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let url = format!("{}/ready", self.base);
        while since.elapsed() < timeout {
            if let Some(status) = self.child.try_wait()? {
                bail!("task-generator exited with {status} before it was ready");
            }
            if let Ok(response) = http.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(since.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("task-generator not ready after {timeout:?}")
    }

    /// Its resident memory now and at its peak (`VmRSS`, `VmHWM`), in bytes.
    ///
    /// # Errors
    /// When `/proc/<pid>/status` cannot be read.
    pub fn rss(&self) -> anyhow::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
                .map_or(0, |kib| kib * 1024)
        };
        Ok((field("VmRSS:"), field("VmHWM:")))
    }

    /// Sends SIGTERM and waits for the exit (SIGKILL after 30 s).
    pub async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1 that nothing listens on now.
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A Tansu broker (in-memory storage) on `port`, its output to `log`; `RUST_LOG=warn`
/// (at info it logs tens of MB a second).
///
/// # Errors
/// When it cannot be started.
pub fn start_tansu(binary: &Path, port: u16, log: &Path) -> anyhow::Result<Child> {
    let file = std::fs::File::create(log)?;
    let url = format!("tcp://127.0.0.1:{port}");
    Command::new(binary)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .env("RUST_LOG", "warn")
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting tansu {}", binary.display()))
}

/// Where the view's files go for one run: `<out>/<name>`, made empty.
///
/// # Errors
/// When it cannot be made.
pub fn fresh_dir(out: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let dir = out.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
