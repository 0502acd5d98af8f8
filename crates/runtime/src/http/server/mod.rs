//! [`serve`]: the HTTP/1.1 server of every service, with limits a slow or idle client
//! cannot get around, and a shutdown that ends in time; [`serve`]'s docs list them.
//!
//! - `connection`: one connection's task, its timers, eviction and shutdown.
//! - `transport`: the TCP stream as hyper sees it; rewrites hyper's own error answers.
//! - `open_files`: the open-file limit against `HTTP_MAX_CONNECTIONS`.

mod connection;
mod open_files;
mod transport;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::Router;
use hyper::server::conn::http1;
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;

use self::connection::Activity;
use super::limits::{TRANSPORT_BUFFER_BYTES, TRANSPORT_MAX_HEADERS};

/// The limits of [`serve`], from the `HTTP_*` settings
/// ([`HttpSettings::limits`](super::HttpSettings::limits)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client may take to send a request head, from the connection's start or
    /// from the first byte of a later request (`HTTP_HEADER_READ_TIMEOUT_SECS`).
    pub header_read_timeout: Duration,
    /// How long a connection may stay idle between requests
    /// (`HTTP_KEEP_ALIVE_TIMEOUT_SECS`).
    pub keep_alive_timeout: Duration,
    /// How long a request body may take to arrive whole, from the handler's first read
    /// (`HTTP_BODY_READ_TIMEOUT_SECS`).
    pub body_read_timeout: Duration,
    /// Most connections open at once (`HTTP_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// How long requests in flight may finish after the shutdown signal
    /// (`HTTP_SHUTDOWN_GRACE_SECS`).
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    /// The settings' defaults: 10 s, 75 s, 30 s, 2048 connections, 10 s.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(75),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 2048,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `router` on `listener` under `limits` until `shutdown` fires, then stops
/// gracefully and returns within [`HttpLimits::shutdown_grace`] of the signal.
///
/// hyper's HTTP/1 connection builder does the protocol; around it:
///
/// - **Header-read timeout** (`HTTP_HEADER_READ_TIMEOUT_SECS`): a new connection must
///   send a whole request head within it, and so must a kept-alive one once the first
///   byte of its next request arrived. A client that sent part of a head gets a JSON 408
///   and the connection is closed; one that sent nothing is just closed.
/// - **Keep-alive timeout** (`HTTP_KEEP_ALIVE_TIMEOUT_SECS`): a connection idle after an
///   answer is closed after it.
/// - **Body-read timeout** (`HTTP_BODY_READ_TIMEOUT_SECS`): a request body must be whole
///   within it of the handler's first read, else the answer is a JSON 408 (the request
///   timeout of [`with_common_layers`](super::with_common_layers) bounds the rest).
/// - **Connection limit** (`HTTP_MAX_CONNECTIONS`): at the limit, a new connection closes
///   the connection that has waited longest without a request in flight (idle, or still
///   sending its head) and takes its place, so slow or idle clients cannot lock others
///   out; when every connection has a request in flight, new ones wait in the listen
///   backlog. The limit is lowered to half the process's open-file limit when that is
///   smaller (after raising the soft limit towards the hard one, as Go's runtime does).
/// - **Head limits**: [`MAX_URI_BYTES`](super::MAX_URI_BYTES),
///   [`MAX_HEADERS`](super::MAX_HEADERS), [`MAX_HEADER_BYTES`](super::MAX_HEADER_BYTES),
///   answered as JSON 414 and 431.
/// - **hyper's own error answers** (to a request hyper cannot parse, or a head over its
///   64 KiB buffer or 128 header fields) are bodyless 400, 414 and 431; the transport
///   rewrites them into the JSON error shape on their way out.
/// - **Graceful shutdown** (`HTTP_SHUTDOWN_GRACE_SECS`): when `shutdown` fires, the
///   listener is closed, idle connections and connections still sending their head are
///   closed at once, requests in flight may finish (their connections close after the
///   answer), and whatever is left at the end of the grace is dropped.
///
/// The head limits and the body-read timeout are layers added around `router` (outside
/// its own layers). Only HTTP/1.1 (and 1.0) is served, as by the Python services; an
/// HTTP/2 preface is refused. Errors accepting a connection are logged and retried (after
/// 1 s when the process is out of file descriptors).
///
/// ```no_run
/// # async fn run() -> agent_runtime::Result<()> {
/// use agent_runtime::http::{self, HttpLimits};
/// use tokio_util::sync::CancellationToken;
///
/// let listener = http::bind("127.0.0.1", 0).await?;
/// let router =
///     http::with_common_layers(axum::Router::new(), std::time::Duration::from_secs(30), None);
/// http::serve(listener, router, &HttpLimits::default(), CancellationToken::new()).await;
/// # Ok(())
/// # }
/// ```
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &HttpLimits,
    shutdown: CancellationToken,
) {
    let limits = *limits;
    let max_connections = open_files::connection_budget(limits.max_connections);
    let permits = Arc::new(Semaphore::new(max_connections));
    let connections = Arc::new(Connections::default());
    let router = with_transport_layers(router, &limits);
    let builder = Arc::new(http1_builder());
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if !connections.evict_longest_waiting() {
                    tracing::debug!(
                        max_connections,
                        "every connection has a request in flight; new ones wait"
                    );
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let evict = CancellationToken::new();
        let registration = connections.add(activity.clone(), evict.clone());
        let connection = connection::Connection {
            router: router.clone(),
            builder: builder.clone(),
            limits,
            activity,
            evict,
            shutdown: shutdown.clone(),
            peer,
        };
        tokio::spawn(async move {
            tracing::trace!(%peer, "connection accepted");
            connection.run(stream).await;
            drop((registration, permit));
        });
    }
    drop(listener);
    let open = connections.len();
    tracing::info!(
        open,
        grace_secs = limits.shutdown_grace.as_secs_f64(),
        "HTTP server stopping"
    );
    // Every connection task ends within the grace; waiting for all permits waits for them.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    let wait = limits.shutdown_grace + Duration::from_millis(500);
    if tokio::time::timeout(wait, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown grace; leaving them"
        );
    }
}

/// hyper's HTTP/1 settings: our own timers (none of hyper's), its head limits above ours.
fn http1_builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(TRANSPORT_BUFFER_BYTES)
        .max_headers(TRANSPORT_MAX_HEADERS);
    builder
}

/// `router` with the head limits and the body-read timeout outside its own layers.
fn with_transport_layers(router: Router, limits: &HttpLimits) -> Router {
    let body_read_timeout = limits.body_read_timeout;
    router
        .layer(axum::middleware::from_fn(move |request, next| {
            super::timeout::body_read_timeout(body_read_timeout, request, next)
        }))
        .layer(axum::middleware::from_fn(super::limits::check_head))
}

/// Logs a failed `accept`; out of file descriptors (or memory), waits 1 s first so the
/// loop does not spin while connections close.
async fn accept_failed(err: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        tracing::debug!(error = %err, "a connection failed before it was accepted");
        return;
    }
    tracing::error!(error = %err, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The open connections, to pick one to evict at the limit.
#[derive(Debug, Default)]
struct Connections {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Open>>,
}

/// One open connection as [`Connections`] sees it.
#[derive(Debug)]
struct Open {
    activity: Arc<Activity>,
    evict: CancellationToken,
}

/// Removes its connection from [`Connections`] when dropped.
#[derive(Debug)]
struct Registration {
    connections: Arc<Connections>,
    id: u64,
}

impl Connections {
    fn add(self: &Arc<Self>, activity: Arc<Activity>, evict: CancellationToken) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Open { activity, evict });
        Registration {
            connections: self.clone(),
            id,
        }
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Tells the connection that has waited longest without a request in flight to
    /// close; `false` when every connection has one.
    fn evict_longest_waiting(&self) -> bool {
        let open = self.lock();
        let longest = open
            .values()
            .filter(|c| !c.evict.is_cancelled())
            .filter_map(|c| c.activity.waiting_since().map(|since| (since, c)))
            .min_by_key(|(since, _)| *since);
        match longest {
            Some((since, connection)) => {
                tracing::debug!(
                    waited_secs = since.elapsed().as_secs_f64(),
                    "connection limit reached; closing the connection that waited longest"
                );
                connection.evict.cancel();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Open>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests;
