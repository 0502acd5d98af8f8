//! The machine: the repository, the project venv, free ports.

use std::{
    net::TcpListener,
    path::PathBuf,
    time::{Duration, Instant},
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
