//! An adaptive limit on concurrent LLM requests: additive increase, multiplicative
//! decrease (AIMD).
//!
//! A service may hold hundreds of tasks in flight, each waiting on the model; a provider
//! allows only so many requests at once and answers the rest `429 Too Many Requests`.
//! [`AdaptiveLimit`] finds that number as TCP congestion control finds a path's capacity
//! (RFC 5681, "TCP Congestion Control": slow start, then congestion avoidance, and a
//! multiplicative decrease on loss), with the overload signals and the 0.9 backoff ratio
//! of Netflix's `concurrency-limits` (`AIMDLimit`):
//!
//! - **Overload** — a `429`, a `503` or `529` (providers' "overloaded"), or a request
//!   that timed out: the limit comes down to [`BACKOFF_RATIO`] times the requests in
//!   flight when the refusal came (RFC 5681 sets its threshold from the flight size, not
//!   the window), by half at most for one refusal, never below [`LimitSettings::min`],
//!   and never up. Refusals of one burst do not compound: each brings the limit to 0.9 of
//!   what was in flight, so a burst ends a little under what the provider served, and a
//!   slow start that overshot comes back to what the provider refused.
//! - **Success** while the limit is in use (at least half of it in flight): below the
//!   slow-start threshold the limit grows by 1 per success (it doubles every round trip);
//!   above it by `1 / limit` per success (by 1 every round trip). The threshold starts
//!   at [`LimitSettings::max`] and drops to the limit at each decrease.
//! - Any other failure (a `4xx` that is the request's fault, a `500`, a refused
//!   connection) leaves the limit as it is.
//!
//! Requests over the limit wait their turn (first come, first served); a request's
//! backoff between retries is spent outside the limit (the layer sits inside the retry
//! policy), so a rate-limited request does not hold a slot while it waits.
//!
//! ```
//! use agent_runtime::llm::{AdaptiveLimit, LimitSettings, Signal};
//!
//! # tokio_test_block_on(async {
//! let limit = AdaptiveLimit::new(LimitSettings { initial: 4, min: 1, max: 64 });
//! let permits = [limit.acquire().await, limit.acquire().await, limit.acquire().await];
//! let last = limit.acquire().await;
//! assert_eq!(limit.snapshot().in_flight, 4);
//! last.release(Signal::Overload); // a 429 with 4 requests in flight
//! assert_eq!(limit.snapshot().limit, 3); // 4 × 0.9, rounded down
//! drop(permits);
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(f)
//! # }
//! ```

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll},
};

use async_openai::{error::OpenAIError, middleware::HttpRequestFactory};
use reqwest::{Response, StatusCode};
use serde::Serialize;
use tokio::sync::Semaphore;
use tower::Service;

/// The factor the limit is multiplied by on overload (Netflix `AIMDLimit`'s default).
pub const BACKOFF_RATIO: f64 = 0.9;

/// The bounds of an [`AdaptiveLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// Concurrent requests allowed at first (`OPENAI_INITIAL_CONCURRENCY`).
    pub initial: usize,
    /// The limit never falls below this (at least 1).
    pub min: usize,
    /// The limit never grows past this (`OPENAI_MAX_CONCURRENCY`).
    pub max: usize,
}

/// How one request went, as far as the limit is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Answered: the limit may grow.
    Success,
    /// Rate-limited, overloaded or timed out: the limit shrinks.
    Overload,
    /// Failed for a reason that says nothing about load: the limit stays.
    Ignore,
}

/// The limit's state, for `/health` and logs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LimitSnapshot {
    /// Concurrent requests allowed now.
    pub limit: usize,
    /// Requests being made now.
    pub in_flight: usize,
    /// Requests waiting for a slot now.
    pub waiting: usize,
    /// The lower bound.
    pub min: usize,
    /// The upper bound.
    pub max: usize,
    /// How many times the limit was decreased since start.
    pub decreases: u64,
    /// Overload signals received since start (each 429, 503, 529 or timeout).
    pub overloads: u64,
}

/// An AIMD limit on concurrent requests to the model: slow start and congestion
/// avoidance as in TCP (RFC 5681), brought down to [`BACKOFF_RATIO`] of the requests in
/// flight on each overload [`Signal`] (a 429, 503 or 529, or a timeout), as Netflix's
/// `concurrency-limits` `AIMDLimit` does. Cheap to clone; clones share the limit.
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Free slots. Its permits are taken with `forget` and given back by hand, so that a
    /// decrease can retire slots as their requests end.
    slots: Semaphore,
    state: Mutex<State>,
    settings: LimitSettings,
}

#[derive(Debug)]
struct State {
    /// The limit, with its fraction (congestion avoidance grows it by `1 / limit`).
    limit: f64,
    /// The whole slots the semaphore stands for: free + in flight + owed.
    slots: usize,
    /// Slots to retire as requests end, after a decrease below the number in flight.
    owed: usize,
    in_flight: usize,
    waiting: usize,
    /// The slow-start threshold.
    threshold: f64,
    decreases: u64,
    overloads: u64,
}

impl AdaptiveLimit {
    /// A limit starting at `settings.initial`, kept within `settings.min..=settings.max`
    /// (bounds are raised to at least 1, and `initial` clamped between them).
    pub fn new(settings: LimitSettings) -> Self {
        let min = settings.min.max(1);
        let max = settings.max.max(min);
        let initial = settings.initial.clamp(min, max);
        let settings = LimitSettings { initial, min, max };
        Self {
            inner: Arc::new(Inner {
                slots: Semaphore::new(initial),
                state: Mutex::new(State {
                    limit: initial as f64,
                    slots: initial,
                    owed: 0,
                    in_flight: 0,
                    waiting: 0,
                    threshold: max as f64,
                    decreases: 0,
                    overloads: 0,
                }),
                settings,
            }),
        }
    }

    /// Waits for a slot. The permit gives it back when released or dropped.
    pub async fn acquire(&self) -> LimitPermit {
        let waiting = Waiting::new(&self.inner);
        let acquired = self.inner.slots.acquire().await;
        drop(waiting);
        let mut state = self.inner.lock();
        // The semaphore is never closed.
        if let Ok(permit) = acquired {
            permit.forget();
        }
        state.in_flight += 1;
        LimitPermit {
            limit: Some(self.clone()),
            in_flight_at_start: state.in_flight,
        }
    }

    /// The state now.
    pub fn snapshot(&self) -> LimitSnapshot {
        let state = self.inner.lock();
        LimitSnapshot {
            limit: state.limit as usize,
            in_flight: state.in_flight,
            waiting: state.waiting,
            min: self.inner.settings.min,
            max: self.inner.settings.max,
            decreases: state.decreases,
            overloads: state.overloads,
        }
    }

    fn release(&self, permit: &LimitPermit, signal: Signal) {
        let LimitSettings { min, max, .. } = self.inner.settings;
        let mut state = self.inner.lock();
        state.in_flight -= 1;
        match signal {
            Signal::Overload => {
                state.overloads += 1;
                // RFC 5681 sets its threshold from the data in flight, not the window:
                // the limit comes down to a little under what was in flight when the
                // provider refused (this request included) — a burst of refusals ends
                // near what it served — and by half at most for one refusal.
                let in_flight = (state.in_flight + 1) as f64;
                let decreased = (in_flight.max(state.limit / 2.0) * BACKOFF_RATIO).max(min as f64);
                if decreased < state.limit {
                    state.decreases += 1;
                    state.limit = decreased;
                    state.threshold = decreased;
                    tracing::debug!(
                        limit = state.limit as usize,
                        in_flight = state.in_flight,
                        "LLM concurrency limit decreased after an overload"
                    );
                }
            }
            Signal::Success if permit.in_flight_at_start * 2 >= state.limit as usize => {
                let step = if state.limit < state.threshold {
                    1.0
                } else {
                    1.0 / state.limit
                };
                state.limit = (state.limit + step).min(max as f64);
            }
            Signal::Success | Signal::Ignore => {}
        }
        // The slot this request held goes back, unless slots are owed; then the
        // semaphore is brought to the new whole limit.
        if state.owed > 0 {
            state.owed -= 1;
            state.slots -= 1;
        } else {
            self.inner.slots.add_permits(1);
        }
        let target = state.limit as usize;
        let effective = state.slots - state.owed;
        if target > effective {
            // New slots first cancel what is owed.
            let more = target - effective;
            let cancelled = more.min(state.owed);
            state.owed -= cancelled;
            self.inner.slots.add_permits(more - cancelled);
            state.slots += more - cancelled;
        } else if target < effective {
            // Free slots are retired now; slots in use as their requests end.
            let fewer = effective - target;
            let retired = self.inner.slots.forget_permits(fewer);
            state.slots -= retired;
            state.owed += fewer - retired;
        }
    }
}

/// Counts a request among the waiting ones while it exists (a cancelled wait included).
struct Waiting<'a>(&'a Inner);

impl<'a> Waiting<'a> {
    fn new(inner: &'a Inner) -> Self {
        inner.lock().waiting += 1;
        Self(inner)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.lock().waiting -= 1;
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state whole; a panic elsewhere cannot tear it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A slot of an [`AdaptiveLimit`], held while one request is made. Dropped without
/// [`LimitPermit::release`] (the request was cancelled), it gives the slot back and
/// leaves the limit as it is.
#[derive(Debug)]
pub struct LimitPermit {
    limit: Option<AdaptiveLimit>,
    in_flight_at_start: usize,
}

impl LimitPermit {
    /// Gives the slot back, adjusting the limit by how the request went.
    pub fn release(mut self, signal: Signal) {
        if let Some(limit) = self.limit.take() {
            limit.release(&self, signal);
        }
    }
}

impl Drop for LimitPermit {
    fn drop(&mut self) {
        if let Some(limit) = self.limit.take() {
            limit.release(self, Signal::Ignore);
        }
    }
}

/// The slot of a request whose response body is still streaming (a streamed answer,
/// `Delivery::Live` in `retry`): the response carries it as an extension, [`Limited`]
/// puts the request's permit in it, and the body releases it when it ends — a success
/// when the body ends whole (or its reader has the whole answer, at `data: [DONE]`), an
/// overload when it timed out, and no signal when it broke or was dropped unread. Clones
/// share the slot.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeldPermit(Arc<Mutex<Option<LimitPermit>>>);

impl HeldPermit {
    /// Keeps `permit` until [`HeldPermit::release`] (or until every clone is dropped,
    /// which gives the slot back with no signal).
    fn hold(&self, permit: LimitPermit) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(permit);
    }

    /// Gives the slot back with `signal`; later calls do nothing.
    pub(crate) fn release(&self, signal: Signal) {
        let permit = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(permit) = permit {
            permit.release(signal);
        }
    }
}

/// What a response or failure says about load: see the [module docs](self).
pub(crate) fn signal_of(result: &Result<Response, OpenAIError>) -> Signal {
    match result {
        Ok(response) => match response.status() {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => Signal::Overload,
            // 529: "overloaded" (Anthropic's OpenAI-compatible endpoint, some gateways).
            status if status.as_u16() == 529 => Signal::Overload,
            status if status.is_success() => Signal::Success,
            _ => Signal::Ignore,
        },
        Err(OpenAIError::Reqwest(err)) if err.is_timeout() => Signal::Overload,
        Err(_) => Signal::Ignore,
    }
}

/// The tower service that makes each HTTP attempt of an LLM request inside an
/// [`AdaptiveLimit`].
#[derive(Debug, Clone)]
pub(crate) struct Limited<S> {
    inner: S,
    limit: AdaptiveLimit,
}

impl<S> Limited<S> {
    /// `inner`, limited by `limit`.
    pub(crate) fn new(inner: S, limit: AdaptiveLimit) -> Self {
        Self { inner, limit }
    }
}

impl<S> Service<HttpRequestFactory> for Limited<S>
where
    S: Service<HttpRequestFactory, Response = Response, Error = OpenAIError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = OpenAIError;
    type Future = Pin<Box<dyn Future<Output = Result<Response, OpenAIError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        // The service made ready is the one that is called (tower's clone-and-swap).
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let limit = self.limit.clone();
        Box::pin(async move {
            let permit = limit.acquire().await;
            let result = inner.call(request).await;
            // A body still streaming (a streamed answer) keeps the slot until it ends.
            match result
                .as_ref()
                .ok()
                .and_then(|r| r.extensions().get::<HeldPermit>())
            {
                Some(held) => held.hold(permit),
                None => permit.release(signal_of(&result)),
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limit(initial: usize, max: usize) -> AdaptiveLimit {
        AdaptiveLimit::new(LimitSettings {
            initial,
            min: 1,
            max,
        })
    }

    #[tokio::test]
    async fn requests_past_the_limit_wait_for_a_slot() {
        let limit = limit(2, 10);
        let a = limit.acquire().await;
        let _b = limit.acquire().await;
        let third = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !third.is_finished(),
            "a third request ran with a limit of 2"
        );
        assert_eq!(limit.snapshot().waiting, 1);
        a.release(Signal::Ignore);
        let _c = tokio::time::timeout(Duration::from_secs(1), third)
            .await
            .expect("the freed slot went to the waiting request")
            .expect("joined");
        assert_eq!(limit.snapshot().in_flight, 2);
    }

    #[tokio::test]
    async fn successes_grow_the_limit_only_while_it_is_in_use() {
        let limit = limit(4, 100);
        // One request at a time uses a quarter of the limit: no growth.
        for _ in 0..10 {
            limit.acquire().await.release(Signal::Success);
        }
        assert_eq!(limit.snapshot().limit, 4);
        // Four at once: slow start adds one per success of a request that started with
        // at least half the limit in flight (the 2nd, 3rd and 4th).
        let permits = futures::future::join_all((0..4).map(|_| limit.acquire())).await;
        for permit in permits {
            permit.release(Signal::Success);
        }
        assert_eq!(limit.snapshot().limit, 7);
    }

    #[tokio::test]
    async fn a_burst_of_refusals_ends_just_under_what_the_provider_served() {
        let limit = limit(40, 100);
        let mut permits = futures::future::join_all((0..40).map(|_| limit.acquire())).await;
        // The provider serves ten and refuses the other thirty at once.
        let served: Vec<LimitPermit> = permits.drain(..10).collect();
        for permit in permits {
            permit.release(Signal::Overload);
        }
        let after = limit.snapshot();
        assert_eq!(
            (after.limit, after.overloads, after.in_flight),
            (9, 30, 10),
            "0.9 × the 11 in flight at the last refusal"
        );
        drop(served);
    }

    #[tokio::test]
    async fn after_a_decrease_growth_is_additive() {
        let limit = limit(40, 100);
        let mut permits = futures::future::join_all((0..40).map(|_| limit.acquire())).await;
        permits.pop().expect("a permit").release(Signal::Overload);
        drop(permits);
        let after = limit.snapshot();
        assert_eq!((after.limit, after.decreases), (36, 1), "0.9 × 40");
        // Congestion avoidance: a full window adds 1/limit for each success that came
        // with half the limit or more in flight (19 of 36): two windows add one.
        let window = || async {
            let permits = futures::future::join_all((0..36).map(|_| limit.acquire())).await;
            for permit in permits {
                permit.release(Signal::Success);
            }
        };
        window().await;
        assert_eq!(limit.snapshot().limit, 36, "36 + 19/36");
        window().await;
        assert_eq!(limit.snapshot().limit, 37);
    }

    #[tokio::test]
    async fn a_decrease_below_the_requests_in_flight_retires_slots_as_they_end() {
        let limit = limit(10, 100);
        let mut permits = futures::future::join_all((0..10).map(|_| limit.acquire())).await;
        permits.pop().expect("a permit").release(Signal::Overload);
        assert_eq!(limit.snapshot().limit, 9);
        // 9 in flight with a limit of 9: a new request waits until one ends.
        let next = tokio::spawn({
            let limit = limit.clone();
            async move { limit.acquire().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!next.is_finished(), "over the decreased limit");
        permits.pop().expect("a permit").release(Signal::Ignore);
        let _next = tokio::time::timeout(Duration::from_secs(1), next)
            .await
            .expect("a slot freed")
            .expect("joined");
        let now = limit.snapshot();
        assert_eq!((now.in_flight, now.limit), (9, 9));
    }

    #[tokio::test]
    async fn the_limit_stays_within_its_bounds() {
        let limit = AdaptiveLimit::new(LimitSettings {
            initial: 3,
            min: 2,
            max: 4,
        });
        for _ in 0..10 {
            limit.acquire().await.release(Signal::Overload);
        }
        assert_eq!(limit.snapshot().limit, 2);
        for _ in 0..50 {
            let permits = futures::future::join_all((0..2).map(|_| limit.acquire())).await;
            for permit in permits {
                permit.release(Signal::Success);
            }
        }
        assert_eq!(limit.snapshot().limit, 4);
    }

    /// A provider that answers 429 to any request past `capacity` at once, and the
    /// limit driven by its answers: it settles just under and around the capacity.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn against_a_provider_capped_at_fifty_the_limit_settles_near_fifty() {
        let capacity = 50;
        let limit = limit(8, 512);
        let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut seen = Vec::new();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..200 {
            let (limit, busy) = (limit.clone(), busy.clone());
            workers.spawn(async move {
                for _ in 0..40 {
                    let permit = limit.acquire().await;
                    let now = busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    let signal = if now > capacity {
                        Signal::Overload
                    } else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        Signal::Success
                    };
                    busy.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    permit.release(signal);
                }
            });
        }
        while !workers.is_empty() {
            tokio::select! {
                _ = workers.join_next() => {}
                () = tokio::time::sleep(Duration::from_millis(10)) => seen.push(limit.snapshot().limit),
            }
        }
        // After the first second of slow start, the limit stays near the capacity.
        let settled = &seen[seen.len() / 3..];
        let low = settled.iter().min().copied().unwrap_or_default();
        let high = settled.iter().max().copied().unwrap_or_default();
        assert!(
            (35..=60).contains(&low) && (40..=60).contains(&high),
            "limit ranged {low}..={high} after settling: {seen:?}"
        );
        assert!(limit.snapshot().decreases >= 1);
    }
}
