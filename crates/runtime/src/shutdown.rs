//! One shutdown signal for the whole process.
//!
//! [`signal`] returns a `CancellationToken` cancelled on SIGTERM (Kubernetes stopping the
//! pod) or Ctrl-C. The HTTP server's graceful shutdown and every consumer loop wait on
//! it; work in flight then gets `SHUTDOWN_DRAIN_SECS` to finish, HTTP requests in flight
//! `HTTP_SHUTDOWN_GRACE_SECS` (see [`serve`](crate::http::serve)).

use tokio_util::sync::CancellationToken;

/// A token cancelled when the process receives SIGTERM or Ctrl-C (SIGINT).
///
/// Must be called inside a Tokio runtime.
pub fn signal() -> CancellationToken {
    let token = CancellationToken::new();
    let fire = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut sig) => {
                    sig.recv().await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
            () = term => tracing::info!("SIGTERM received, shutting down"),
        }
        fire.cancel();
    });
    token
}
