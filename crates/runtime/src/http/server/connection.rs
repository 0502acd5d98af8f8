//! One connection: hyper's HTTP/1 state machine over a [`Transport`], the timers of the
//! connection, and its part in eviction and shutdown.
//!
//! [`Activity`] is what the three parts share: the transport notes bytes of a request
//! head, the service notes requests in flight (from the router's call until hyper has
//! taken the answer's last byte), and the connection's task reads from it the deadline
//! in force — none while a request is in flight, else the header-read or keep-alive
//! timeout from when the connection began to wait.

use std::{
    convert::Infallible,
    future::{Future, poll_fn},
    pin::{Pin, pin},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll},
};

use axum::{
    Router,
    body::{Body, Bytes, HttpBody},
};
use futures::FutureExt;
use http_body::{Frame, SizeHint};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::TokioIo;
use tokio::{
    net::TcpStream,
    time::{Instant, Sleep},
};
use tokio_util::sync::CancellationToken;
use tower::Service;

use super::{HttpLimits, transport::Transport};

/// A connection accepted by [`serve`](super::serve), ready to run.
pub(super) struct Connection {
    pub(super) router: Router,
    pub(super) builder: Arc<http1::Builder>,
    pub(super) limits: HttpLimits,
    pub(super) activity: Arc<Activity>,
    /// Fired when the server needs this connection's place.
    pub(super) evict: CancellationToken,
    pub(super) shutdown: CancellationToken,
    /// The client's address, given to the router as axum's `ConnectInfo`.
    pub(super) peer: std::net::SocketAddr,
}

/// Why a connection stops before its client ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Shutdown,
    Evicted,
}

impl Connection {
    /// Serves `stream` until the client or a timer ends it, or until it is evicted or the
    /// server shuts down (then as [`serve`](super::serve) says).
    pub(super) async fn run(self, stream: TcpStream) {
        let Self {
            router,
            builder,
            limits,
            activity,
            evict,
            shutdown,
            peer,
        } = self;
        let transport = Transport::new(stream, activity.clone(), limits.header_read_timeout);
        let service = {
            let activity = activity.clone();
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let in_flight = InFlight::begin(activity.clone());
                let mut router = router.clone();
                async move {
                    let response = match router.call(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    };
                    Ok::<_, Infallible>(response.map(|inner| {
                        Body::new(AnswerBody {
                            inner,
                            _in_flight: in_flight,
                        })
                    }))
                }
            })
        };
        let mut conn = pin!(builder.serve_connection(TokioIo::new(transport), service));
        let mut timer = Timer::new();

        let stop = tokio::select! {
            ended = watch(conn.as_mut(), &activity, &limits, &mut timer) => {
                return ended.log(&activity);
            }
            () = shutdown.cancelled() => Stop::Shutdown,
            () = evict.cancelled() => Stop::Evicted,
        };
        conn.as_mut().graceful_shutdown();
        if activity.waiting_since().is_some() {
            // Idle, or still sending a head: one more poll lets hyper close an idle
            // connection itself; whatever is left is dropped (closed).
            if let Some(result) = conn.as_mut().now_or_never() {
                Ended::Done(result).log(&activity);
            }
            tracing::debug!(?stop, "closed a connection without a request in flight");
            return;
        }
        // A request in flight: it may finish (hyper closes the connection after its
        // answer), within the grace once the server shuts down.
        let mut grace_ends =
            (stop == Stop::Shutdown).then(|| Instant::now() + limits.shutdown_grace);
        loop {
            let grace = async {
                match grace_ends {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ended = watch(conn.as_mut(), &activity, &limits, &mut timer) => {
                    return ended.log(&activity);
                }
                () = grace => {
                    tracing::warn!(
                        grace_secs = limits.shutdown_grace.as_secs_f64(),
                        "dropping a request still in flight at the end of the shutdown grace"
                    );
                    return;
                }
                () = shutdown.cancelled(), if grace_ends.is_none() => {
                    grace_ends = Some(Instant::now() + limits.shutdown_grace);
                }
            }
        }
    }
}

/// How a connection ended by itself.
enum Ended {
    /// hyper finished it (the client closed, or an error).
    Done(hyper::Result<()>),
    /// The header-read or keep-alive timeout ran out.
    TimedOut,
}

impl Ended {
    fn log(self, activity: &Activity) {
        match self {
            Self::Done(Ok(())) => tracing::trace!("connection closed"),
            Self::Done(Err(err)) => tracing::debug!(error = %err, "connection ended with an error"),
            Self::TimedOut if activity.head_timed_out() => {
                tracing::debug!("closing a connection: header-read timeout");
            }
            Self::TimedOut => tracing::trace!("closing a connection: idle timeout"),
        }
    }
}

/// The timer of a connection, re-armed when the deadline in force moves.
struct Timer {
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl Timer {
    fn new() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(std::time::Duration::ZERO)),
            armed: None,
        }
    }

    /// Ready once `deadline` has passed.
    fn poll_until(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        if self.armed != Some(deadline) {
            self.sleep.as_mut().reset(deadline);
            self.armed = Some(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

/// Drives `conn` until it ends, or until the deadline in force passes. Every change of
/// the deadline happens while `conn` is polled (the transport reads, the service runs,
/// hyper drops an answer's body), so reading it after each poll keeps the timer right.
fn watch<'a, F>(
    mut conn: Pin<&'a mut F>,
    activity: &'a Activity,
    limits: &'a HttpLimits,
    timer: &'a mut Timer,
) -> impl Future<Output = Ended> + 'a
where
    F: Future<Output = hyper::Result<()>>,
{
    poll_fn(move |cx| {
        if let Poll::Ready(result) = conn.as_mut().poll(cx) {
            return Poll::Ready(Ended::Done(result));
        }
        let Some(deadline) = activity.deadline(limits) else {
            return Poll::Pending;
        };
        if timer.poll_until(deadline, cx).is_pending() {
            return Poll::Pending;
        }
        activity.time_out();
        Poll::Ready(Ended::TimedOut)
    })
}

/// What one connection is doing; see the [module docs](self).
#[derive(Debug)]
pub(super) struct Activity {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Requests handed to the router whose answers hyper has not taken whole yet.
    in_flight: usize,
    /// When the connection began to wait: accepted, the last answer taken, or (after an
    /// answer) the first byte of the next head.
    since: Instant,
    /// No request has reached the router yet: the header-read timeout runs from the
    /// start.
    fresh: bool,
    /// Bytes of a request head arrived while no request was in flight.
    head_started: bool,
    /// The header-read timeout ran out after part of a head arrived.
    head_timed_out: bool,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                in_flight: 0,
                since: Instant::now(),
                fresh: true,
                head_started: false,
                head_timed_out: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The transport read bytes.
    pub(super) fn bytes_read(&self) {
        let mut state = self.lock();
        if state.in_flight == 0 && !state.head_started {
            state.head_started = true;
            if !state.fresh {
                state.since = Instant::now();
            }
        }
    }

    /// Since when the connection waits without a request in flight, if it does.
    pub(super) fn waiting_since(&self) -> Option<Instant> {
        let state = self.lock();
        (state.in_flight == 0).then_some(state.since)
    }

    /// Whether a request is in flight.
    pub(super) fn in_flight(&self) -> bool {
        self.lock().in_flight > 0
    }

    /// When the connection is to be closed unless something happens: none while a
    /// request is in flight.
    fn deadline(&self, limits: &HttpLimits) -> Option<Instant> {
        let state = self.lock();
        if state.in_flight > 0 {
            None
        } else if state.fresh || state.head_started {
            Some(state.since + limits.header_read_timeout)
        } else {
            Some(state.since + limits.keep_alive_timeout)
        }
    }

    /// The deadline passed: note whether a head was cut short.
    fn time_out(&self) {
        let mut state = self.lock();
        state.head_timed_out = state.head_started;
    }

    /// Whether the header-read timeout ran out after part of a head arrived.
    pub(super) fn head_timed_out(&self) -> bool {
        self.lock().head_timed_out
    }
}

/// A request in flight on a connection, from the router's call until hyper has taken
/// the answer's body whole (or dropped it).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: Arc<Activity>) -> Self {
        {
            let mut state = activity.lock();
            state.in_flight += 1;
            state.fresh = false;
            state.head_started = false;
        }
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.since = Instant::now();
        }
    }
}

/// An answer's body, holding its request's [`InFlight`] until hyper drops it.
struct AnswerBody {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for AnswerBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
