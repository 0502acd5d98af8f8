//! Retries of LLM requests: which failures are tried again, and how long to wait.
//!
//! The HTTP stack under the [`LlmClient`](super::LlmClient) (`transport`) is tower's
//! [`Retry`](tower::retry::Retry) driven by [`RetryPolicy`], around the concurrency
//! limit, around a step that reads the body (whole, or for a streamed answer live:
//! [`Delivery`]), around async-openai's [`ReqwestService`]. Requests travel through it as
//! async-openai's [`HttpRequestFactory`], which rebuilds the request for each attempt.
//! A streamed answer is retried only for what fails before its 200 (the policy sees the
//! response, not its body): see `stream`.
//!
//! # What is retried
//!
//! At most `OPENAI_MAX_RETRIES` times after the first request (so `1 + OPENAI_MAX_RETRIES`
//! requests in all):
//!
//! - `429 Too Many Requests`, except OpenAI's `insufficient_quota` (the account is out of
//!   credit: waiting will not help, and the request fails at once);
//! - any `5xx`;
//! - connection errors (the server could not be reached).
//!
//! Never retried here: other `4xx` (the request itself is wrong) and timeouts. A request
//! that times out (`OPENAI_TIMEOUT_SECS`) becomes
//! [`Error::LlmTimeout`](crate::Error::LlmTimeout), which the services' LLM graph nodes
//! retry with their own `RetryPolicy` (1 s plus a random 0–1 s, doubling): the
//! generator's `draft` makes two attempts (a caller is waiting), the solver's `plan` and
//! `solve` three, which also ask again after an unusable answer
//! ([`Error::LlmAnswer`](crate::Error::LlmAnswer)). Every other LLM error is permanent for
//! the node. So one run of a solver LLM node makes at most `3 × (1 + OPENAI_MAX_RETRIES)`
//! requests (12 with the default 3), of which at most three wait out the whole timeout.
//! Retrying timeouts here as well would let one stalled model hold a node for
//! `3 × (1 + OPENAI_MAX_RETRIES)` timeouts (12 minutes with the defaults) instead of three.
//!
//! # How long to wait
//!
//! - With a `Retry-After` header (delay-seconds, or OpenAI's `retry-after-ms`), the wait is
//!   what the server asks, at most [`MAX_RETRY_AFTER`] (60 s). The HTTP-date form is not
//!   read and falls back to the backoff.
//! - Otherwise exponential backoff with **equal jitter**, as defined in Marc Brooker,
//!   "Exponential Backoff And Jitter", AWS Architecture Blog, 2015
//!   (<https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>):
//!   before retry `n` (from 0), with `c = min(8 s, 100 ms × 2ⁿ)`, the wait is uniform in
//!   `[c/2, c)` — 50–100 ms, 100–200 ms, 200–400 ms, …, 4–8 s — so clients that failed
//!   together do not retry together, and no wait is close to zero. Each request draws
//!   from its own generator (tower's [`HasherRng`]).
//!
//!   tower's own `ExponentialBackoff` is not used: it adds its random part on top of a
//!   base clamped to the cap, so once the base reaches 8 s every wait is 8 s flat (no
//!   jitter left), and it scales whole seconds and the fraction separately, truncating
//!   the first, so past 1 s its random part is no longer uniform (at a 1.6 s base it
//!   spans 0.6 s, not 1.6 s) — see `tower-0.5.3/src/retry/backoff.rs`.

use std::time::Duration;

use async_openai::{
    error::{ApiErrorResponse, OpenAIError, WrappedError},
    middleware::{HttpRequestFactory, ReqwestService},
};
use reqwest::{Response, StatusCode, header::HeaderMap};
use tokio::time::Sleep;

use super::limit::{AdaptiveLimit, Limited};
use tower::{
    Service, ServiceBuilder,
    retry::RetryLayer,
    util::rng::{HasherRng, Rng},
};

/// The wait before the first retry is uniform in `[BASE_DELAY / 2, BASE_DELAY)`; the
/// bounds double with each retry.
pub(crate) const BASE_DELAY: Duration = Duration::from_millis(100);
/// The longest backoff between two attempts: from the 8th retry on, waits are uniform in
/// `[MAX_DELAY / 2, MAX_DELAY)`.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(8);
/// The longest wait a `Retry-After` header may ask for; a longer one is cut to this.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// OpenAI's error type (and code) for an account out of credit: a 429 that is permanent.
const INSUFFICIENT_QUOTA: &str = "insufficient_quota";

/// How the transport hands on the body of a successful response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Read whole here ([`read_bounded`]); the request's slot is given back when it is.
    Whole,
    /// Handed on as it arrives (a streamed answer, [`super::stream::live`]), still
    /// counted against the same bound; the slot is held until the body ends. Error
    /// responses are still read whole, so the retry policy sees them as it does for
    /// [`Delivery::Whole`].
    Live,
}

/// The HTTP stack of the LLM client: [`RetryPolicy`] with `max_retries` over `http`,
/// each attempt made inside `limit` (so a backoff between attempts holds no slot), each
/// response body at most `max_body` bytes, read whole here or handed on live as
/// `delivery` says.
pub(crate) fn transport(
    http: reqwest::Client,
    max_retries: u32,
    limit: AdaptiveLimit,
    max_body: usize,
    delivery: Delivery,
) -> impl Service<HttpRequestFactory, Response = Response, Error = OpenAIError, Future: Send + 'static>
+ Clone
+ Send
+ Sync
+ 'static {
    ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::new(max_retries)))
        .layer_fn(move |inner| Limited::new(inner, limit.clone()))
        .and_then(move |response: Response| async move {
            match delivery {
                Delivery::Live if response.status().is_success() => {
                    super::stream::live(response, max_body)
                }
                Delivery::Live | Delivery::Whole => read_bounded(response, max_body).await,
            }
        })
        .service(ReqwestService::new(http))
}

/// The start of the reason [`read_bounded`] gives for a body over its limit; the LLM
/// client reports it as a permanent [`Error::Llm`](crate::Error::Llm).
pub(crate) const TOO_LARGE: &str = "the model server's answer exceeds OPENAI_MAX_RESPONSE_BYTES";

/// Reads `response`'s body as it streams, at most `max` bytes: over that the transfer is
/// abandoned (the connection dropped) and the request fails with [`TOO_LARGE`], so a
/// runaway answer never sits whole in memory nor reaches a log. A 429 for
/// `insufficient_quota` becomes a final API error (see the module docs); any other
/// response is handed on rebuilt from the bytes read.
async fn read_bounded(mut response: Response, max: usize) -> Result<Response, OpenAIError> {
    let status = response.status();
    let version = response.version();
    let headers = response.headers().clone();
    if response
        .content_length()
        .is_some_and(|length| length > max as u64)
    {
        return Err(too_large(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(OpenAIError::Reqwest)? {
        if body.len() + chunk.len() > max {
            return Err(too_large(max));
        }
        body.extend_from_slice(&chunk);
    }
    if status == StatusCode::TOO_MANY_REQUESTS
        && let Ok(WrappedError { error }) = serde_json::from_slice::<WrappedError>(&body)
        && (error.r#type.as_deref() == Some(INSUFFICIENT_QUOTA)
            || error.code.as_deref() == Some(INSUFFICIENT_QUOTA))
    {
        return Err(OpenAIError::ApiError(ApiErrorResponse {
            status_code: status,
            api_error: error,
        }));
    }
    let mut rebuilt = ::http::Response::new(body);
    *rebuilt.status_mut() = status;
    *rebuilt.version_mut() = version;
    *rebuilt.headers_mut() = headers;
    Ok(Response::from(rebuilt))
}

fn too_large(max: usize) -> OpenAIError {
    OpenAIError::InvalidArgument(format!("{TOO_LARGE} ({max} bytes)"))
}

/// A [`tower::retry::Policy`] for OpenAI-compatible APIs: see the [module
/// docs](self) for what it retries and how long it waits.
///
/// tower's `Retry` clones the policy for each request, so each request counts its own
/// retries and draws its own jitter.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    max_retries: u32,
    retries: u32,
    /// Made at the first retry, fresh for each request: a clone of one generator would
    /// give every request the same "random" waits.
    rng: Option<HasherRng>,
}

impl RetryPolicy {
    /// A policy allowing `max_retries` retries after the first request.
    pub(crate) fn new(max_retries: u32) -> Self {
        Self {
            max_retries,
            retries: 0,
            rng: None,
        }
    }

    /// The wait before the next retry, or `None` when `result` is final: a success, a
    /// failure that is not worth retrying, or the retries are used up.
    fn next_wait(&mut self, result: &Result<Response, OpenAIError>) -> Option<Duration> {
        let (reason, retry_after) = match result {
            Ok(response) if retryable(response.status()) => (
                response.status().to_string(),
                retry_after(response.headers()),
            ),
            Err(OpenAIError::Reqwest(err)) if err.is_connect() => {
                ("connection error".to_owned(), None)
            }
            _ => return None,
        };
        if self.retries >= self.max_retries {
            return None;
        }
        let wait = retry_after.unwrap_or_else(|| {
            let rng = self.rng.get_or_insert_with(HasherRng::new);
            equal_jitter(self.retries, rng.next_f64())
        });
        self.retries += 1;
        tracing::warn!(
            retry = self.retries,
            max_retries = self.max_retries,
            reason = %reason,
            wait_ms = wait.as_millis() as u64,
            retry_after = retry_after.is_some(),
            "LLM request failed; retrying"
        );
        Some(wait)
    }
}

impl tower::retry::Policy<HttpRequestFactory, Response, OpenAIError> for RetryPolicy {
    type Future = Sleep;

    fn retry(
        &mut self,
        _request: &mut HttpRequestFactory,
        result: &mut Result<Response, OpenAIError>,
    ) -> Option<Self::Future> {
        self.next_wait(result).map(tokio::time::sleep)
    }

    fn clone_request(&mut self, request: &HttpRequestFactory) -> Option<HttpRequestFactory> {
        Some(request.clone())
    }
}

/// 429 and 5xx; never another 4xx.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The backoff before retry `retry` (from 0) given a uniform `random` in `[0, 1)`: with
/// `c = min(MAX_DELAY, BASE_DELAY × 2^retry)`, `c/2 + random × c/2` (AWS's equal jitter).
fn equal_jitter(retry: u32, random: f64) -> Duration {
    let ceiling = BASE_DELAY
        .checked_mul(2_u32.saturating_pow(retry))
        .map_or(MAX_DELAY, |c| c.min(MAX_DELAY));
    let half = ceiling / 2;
    half + half.mul_f64(random.clamp(0.0, 1.0))
}

/// The wait a response asks for: `retry-after-ms` (OpenAI, Azure) or `Retry-After` in
/// seconds, at most [`MAX_RETRY_AFTER`]; `None` when absent or unreadable.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let millis = header("retry-after-ms")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map(|ms| Duration::from_secs_f64(ms.min(MAX_RETRY_AFTER.as_millis() as f64) / 1000.0));
    let seconds = || {
        header(reqwest::header::RETRY_AFTER.as_str())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
    };
    millis
        .or_else(seconds)
        .map(|wait| wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn response(status: u16, headers: &[(&str, &str)]) -> Result<Response, OpenAIError> {
        let mut builder = ::http::Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        Ok(Response::from(builder.body("").expect("response")))
    }

    /// The waits one policy asks for, in order, until it gives up.
    fn waits(policy: &mut RetryPolicy, result: &Result<Response, OpenAIError>) -> Vec<Duration> {
        std::iter::from_fn(|| policy.next_wait(result)).collect()
    }

    #[test]
    fn backoff_waits_are_jittered_within_the_equal_jitter_bounds() {
        let failure = response(500, &[]);
        let runs: Vec<Vec<Duration>> = (0..50)
            .map(|_| waits(&mut RetryPolicy::new(4), &failure))
            .collect();
        for run in &runs {
            assert_eq!(run.len(), 4, "4 retries, then it gives up: {run:?}");
            for (n, wait) in run.iter().enumerate() {
                let ceiling = (BASE_DELAY * 2_u32.pow(n as u32)).min(MAX_DELAY);
                assert!(
                    *wait >= ceiling / 2 && *wait <= ceiling,
                    "retry {n}: {wait:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
            }
        }
        for n in 0..4 {
            let distinct: HashSet<Duration> = runs.iter().map(|run| run[n]).collect();
            assert!(
                distinct.len() > 25,
                "retry {n}: 50 requests drew only {} different waits",
                distinct.len()
            );
        }
    }

    #[test]
    fn backoff_stays_jittered_under_the_cap() {
        let runs: Vec<Vec<Duration>> = (0..20)
            .map(|_| waits(&mut RetryPolicy::new(12), &response(503, &[])))
            .collect();
        for run in &runs {
            assert_eq!(run.len(), 12);
            assert!(
                run[7..]
                    .iter()
                    .all(|w| *w >= MAX_DELAY / 2 && *w <= MAX_DELAY),
                "{run:?}"
            );
        }
        let last: HashSet<Duration> = runs.iter().map(|run| run[11]).collect();
        assert!(last.len() > 10, "still jittered at the cap: {last:?}");
        assert_eq!(equal_jitter(u32::MAX, 0.0), MAX_DELAY / 2, "no overflow");
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let wait =
            |headers: &[(&str, &str)]| waits(&mut RetryPolicy::new(1), &response(429, headers));
        assert_eq!(wait(&[("retry-after", "3")]), [Duration::from_secs(3)]);
        assert_eq!(wait(&[("retry-after", "3600")]), [MAX_RETRY_AFTER]);
        assert_eq!(
            wait(&[("retry-after-ms", "250")]),
            [Duration::from_millis(250)]
        );
        // The HTTP-date form is not read: the backoff decides.
        let [backoff] = wait(&[("retry-after", "Wed, 21 Oct 2026 07:28:00 GMT")])[..] else {
            panic!("one wait")
        };
        assert!(backoff <= BASE_DELAY, "{backoff:?}");
    }

    #[test]
    fn other_client_errors_and_successes_are_final() {
        for status in [200, 400, 401, 404, 422] {
            assert!(
                RetryPolicy::new(3)
                    .next_wait(&response(status, &[]))
                    .is_none(),
                "{status}"
            );
        }
        assert!(RetryPolicy::new(0).next_wait(&response(500, &[])).is_none());
    }
}
