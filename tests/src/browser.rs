//! [`Browser`]: headless Chromium driven over WebDriver (chromedriver), for tests of what
//! a page in a real browser sees; [`artifacts_dir`] for what such a test leaves to look at.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

use crate::{free_port, scratch_dir, wait_for_port};

/// Chromium's switches: headless, no sandbox (the tests run as root in CI), and nothing
/// that reaches for the network on its own (updates, sync, QUIC, first-run pages).
const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// The window (and so the screenshot) size, in CSS pixels.
const WINDOW_SIZE: (u32, u32) = (1000, 640);

/// The folder of what the end-to-end tests of `area` leave to look at (screenshots):
/// `$E2E_ARTIFACTS_DIR/<area>`, else `<target>/e2e-artifacts/<area>` beside the test
/// binary's profile folder (`target/debug`); created when missing, kept after the test.
///
/// # Panics
/// When it cannot be created.
pub fn artifacts_dir(area: &str) -> PathBuf {
    let root = std::env::var_os("E2E_ARTIFACTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // The test binary is <target>/<profile>/deps/e2e-<hash>.
            let exe = std::env::current_exe().expect("test binary path");
            exe.ancestors()
                .nth(3)
                .map_or_else(std::env::temp_dir, Path::to_path_buf)
                .join("e2e-artifacts")
        });
    let dir = root.join(area);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
    dir
}

/// Headless Chromium with a fresh profile, driven by a chromedriver on a free port.
///
/// chromedriver runs in a process group of its own, with the browser it starts; dropping
/// the `Browser` kills that group (SIGKILL) and removes the profile. [`Browser::close`]
/// ends the WebDriver session first, so that Chromium exits by itself.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    profile: PathBuf,
    log: PathBuf,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts chromedriver and a Chromium session; `None`, with a loud SKIPPED line on
    /// stderr, when Chromium or chromedriver is not installed — except under `CI=true`,
    /// where that is a failure (`.ci/run` installs Debian's `chromium` and
    /// `chromium-driver`).
    ///
    /// The binaries are `$CHROMIUM_BIN` (default `/usr/bin/chromium`) and
    /// `$CHROMEDRIVER_BIN` (default `/usr/bin/chromedriver`).
    ///
    /// # Panics
    /// Under `CI=true` when a binary is missing; when chromedriver does not listen within
    /// 20 s or no session starts.
    pub async fn start_or_skip() -> Option<Self> {
        let chromium = binary("CHROMIUM_BIN", "/usr/bin/chromium");
        let driver = binary("CHROMEDRIVER_BIN", "/usr/bin/chromedriver");
        let missing: Vec<String> = [&chromium, &driver]
            .into_iter()
            .filter(|path| !path.is_file())
            .map(|path| path.display().to_string())
            .collect();
        if missing.is_empty() {
            return Some(Self::start(&chromium, &driver).await);
        }
        let missing = missing.join(", ");
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "no browser for a browser test (CI=true): {missing} missing; .ci/run installs \
                 chromium and chromium-driver"
            );
        }
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: no browser ({missing} missing); apt-get install chromium \
             chromium-driver ***\n"
        );
        None
    }

    async fn start(chromium: &Path, driver: &Path) -> Self {
        let dir = scratch_dir();
        let profile = dir.join("profile");
        let log = dir.join("chromedriver.log");
        let port = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", driver.display()));
        // From here on, a panic drops the guard and kills what was started.
        let mut guard = DriverGuard {
            child: Some(child),
            profile: profile.clone(),
        };
        assert!(
            wait_for_port(port, Duration::from_secs(20)),
            "chromedriver did not listen on port {port} within 20 s (log: {})",
            log.display()
        );
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push(format!("--window-size={},{}", WINDOW_SIZE.0, WINDOW_SIZE.1));
        let mut capabilities = fantoccini::wd::Capabilities::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium, "args": args}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "no Chromium session from chromedriver: {err} (log: {})",
                    log.display()
                )
            });
        let driver = guard.child.take().expect("the driver");
        Self {
            client,
            driver,
            profile,
            log,
        }
    }

    /// chromedriver's log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Ends the session (Chromium exits), then stops chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    /// Kills chromedriver's process group (chromedriver and the Chromium it started),
    /// reaps chromedriver and removes the profile.
    fn drop(&mut self) {
        kill_group(&mut self.driver, &self.profile);
    }
}

/// What [`Browser::start`] kills when it panics half-way.
struct DriverGuard {
    child: Option<Child>,
    profile: PathBuf,
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            kill_group(child, &self.profile);
        }
    }
}

/// SIGKILL to the process group that `leader` leads, then reaps it and removes `profile`.
fn kill_group(leader: &mut Child, profile: &Path) {
    let group = format!("-{}", leader.id());
    let _ = Command::new("kill")
        .args(["-KILL", "--", group.as_str()])
        .stderr(Stdio::null())
        .status();
    let _ = leader.kill();
    let _ = leader.wait();
    let _ = std::fs::remove_dir_all(profile);
}

fn binary(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}
