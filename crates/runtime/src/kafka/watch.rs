//! [`BrokerWatch`]: is the broker reachable? The answer behind `/health` and `/ready`.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Producer;

/// The last broker check's outcome.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct BrokerStatus {
    /// The broker answered a metadata request at the last check.
    pub reachable: bool,
    /// Why not, when not: the probe's error, then librdkafka's last reason (refused
    /// connection, failed TLS handshake or authentication) once it has given one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Checks every few seconds whether the broker answers a metadata request, and keeps
/// the last answer for health routes (which must answer at once, whatever the broker
/// does). Cheap to clone.
#[derive(Clone)]
pub struct BrokerWatch {
    status: Arc<RwLock<BrokerStatus>>,
}

impl std::fmt::Debug for BrokerWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerWatch").finish_non_exhaustive()
    }
}

impl BrokerWatch {
    /// Starts watching through `producer`'s connection until `shutdown` fires. The status
    /// is "unreachable: not checked yet" until the first check answers.
    pub fn spawn(producer: Producer, every: Duration, shutdown: CancellationToken) -> Self {
        let watch = Self {
            status: Arc::new(RwLock::new(BrokerStatus {
                reachable: false,
                error: Some("not checked yet".into()),
            })),
        };
        let status = Arc::clone(&watch.status);
        tokio::spawn(async move {
            // Logged when reachability changes, and again when librdkafka first says why
            // the broker is unreachable (a refused TLS handshake takes a connection timeout).
            let mut logged = None;
            loop {
                let probe = producer.clone();
                let checked = tokio::task::spawn_blocking(move || {
                    probe
                        .probe(Duration::from_secs(3))
                        .map_err(|err| err.to_string())
                })
                .await
                .unwrap_or_else(|err| Err(err.to_string()));
                let reason = producer.last_broker_error();
                let now = BrokerStatus {
                    reachable: checked.is_ok(),
                    error: checked.err().map(|error| match &reason {
                        Some(reason) => format!("{error}; librdkafka: {reason}"),
                        None => error,
                    }),
                };
                let state = (now.reachable, !now.reachable && reason.is_some());
                if logged != Some(state) {
                    let (bootstrap, security_protocol) = producer.brokers();
                    match &now.error {
                        None => tracing::info!(bootstrap, %security_protocol, "broker reachable"),
                        Some(error) => tracing::warn!(
                            bootstrap,
                            %security_protocol,
                            error = %error,
                            "broker unreachable; health is degraded"
                        ),
                    }
                    logged = Some(state);
                }
                if let Ok(mut slot) = status.write() {
                    *slot = now;
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(every) => {}
                }
            }
        });
        watch
    }

    /// The last check's outcome.
    pub fn status(&self) -> BrokerStatus {
        self.status
            .read()
            .map(|s| s.clone())
            .unwrap_or(BrokerStatus {
                reachable: false,
                error: Some("status unavailable".into()),
            })
    }
}
