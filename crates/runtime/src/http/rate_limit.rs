//! Per-client rate limits on the routes that cost something (the POST routes).
//!
//! A client is its API key when `API_KEYS` is set (so many clients behind one proxy each
//! get their own budget), else its address. Each has a GCRA bucket (the `governor`
//! crate's keyed rate limiter): `RATE_LIMIT_PER_SECOND` requests a second on average,
//! bursts of up to `RATE_LIMIT_BURST`. Over it: a JSON 429 `too_many_requests` with
//! `Retry-After` (whole seconds, at least 1). `RATE_LIMIT_PER_SECOND=0` turns the limit
//! off.
//!
//! Clients on the loopback interface (127.0.0.0/8, ::1) are not limited unless
//! `RATE_LIMIT_LOOPBACK=true`: they are the host's own tools — `make run-local`, the
//! benchmarks, a sidecar. Behind a proxy on the same pod (a service-mesh sidecar), every
//! client looks like loopback; set `RATE_LIMIT_LOOPBACK=true` there, or use API keys.

use std::{
    hash::Hash,
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    extract::{ConnectInfo, Request},
    http::{HeaderValue, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use sha2::{Digest, Sha256};

use super::HttpSettings;
use super::{ApiError, auth::bearer};

/// Who a request counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Client {
    /// The SHA-256 of its API key (the key itself is not kept).
    Key([u8; 32]),
    /// Its address.
    Address(IpAddr),
}

/// A per-client rate limit; cheap to clone (clones share the buckets).
#[derive(Clone)]
pub struct RateLimit {
    limiter: Arc<DefaultKeyedRateLimiter<Client>>,
    per_second: u32,
    by_key: bool,
    loopback: bool,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("per_second", &self.per_second)
            .field("by_key", &self.by_key)
            .field("loopback", &self.loopback)
            .finish_non_exhaustive()
    }
}

impl RateLimit {
    /// The limit of `RATE_LIMIT_PER_SECOND`, `RATE_LIMIT_BURST` and
    /// `RATE_LIMIT_LOOPBACK`, keyed by API key when `API_KEYS` is set; `None` when
    /// `RATE_LIMIT_PER_SECOND` is 0. Starts a task (on the current Tokio runtime) that
    /// forgets idle clients every minute, so the buckets stay bounded; it ends with the
    /// last clone.
    pub fn from_settings(settings: &HttpSettings) -> Option<Self> {
        let per_second = NonZeroU32::new(settings.rate_limit.per_second)?;
        let burst = NonZeroU32::new(settings.rate_limit.burst).unwrap_or(per_second);
        let limiter = Arc::new(RateLimiter::keyed(
            Quota::per_second(per_second).allow_burst(burst),
        ));
        let weak = Arc::downgrade(&limiter);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(60));
                every.tick().await;
                loop {
                    every.tick().await;
                    let Some(limiter) = weak.upgrade() else {
                        return;
                    };
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
            });
        }
        Some(Self {
            limiter,
            per_second: per_second.get(),
            by_key: settings.api_keys.is_some(),
            loopback: settings.rate_limit.loopback,
        })
    }

    /// Who `request` counts against; `None` when it is not limited (loopback).
    fn client(&self, request: &Request) -> Option<Client> {
        if self.by_key
            && let Some(key) = bearer(request)
        {
            return Some(Client::Key(Sha256::digest(key.as_bytes()).into()));
        }
        let address = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |info| info.0.ip());
        if address.is_loopback() && !self.loopback {
            return None;
        }
        Some(Client::Address(address))
    }

    /// `Ok` when `request` is within its client's budget; else how long to wait.
    fn check(&self, request: &Request) -> Result<(), Duration> {
        let Some(client) = self.client(request) else {
            return Ok(());
        };
        self.limiter
            .check_key(&client)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// `router` with every route under `limit`; unchanged when `limit` is `None`. Apply it
/// to the routes that cost something, inside [`super::require_api_key`] (a request with
/// a wrong key is refused before it spends a client's budget).
pub fn rate_limited(router: Router, limit: Option<RateLimit>) -> Router {
    let Some(limit) = limit else {
        return router;
    };
    router.route_layer(middleware::from_fn(move |request: Request, next: Next| {
        let limit = limit.clone();
        async move {
            match limit.check(&request) {
                Ok(()) => next.run(request).await,
                Err(wait) => too_many_requests(limit.per_second, wait),
            }
        }
    }))
}

/// A JSON 429 with `Retry-After` in whole seconds (at least 1).
fn too_many_requests(per_second: u32, wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let mut response = ApiError::TooManyRequests(format!(
        "over the rate limit of {per_second} requests a second per client \
         (RATE_LIMIT_PER_SECOND); retry in {seconds} s"
    ))
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::StatusCode, routing::post};
    use tower::ServiceExt;

    use super::*;
    use crate::http::RateLimitSettings;

    /// A limit of `per_second` with `burst`, keyed by API key when `api_keys` is given.
    fn app(per_second: u32, burst: u32, api_keys: Option<&str>) -> Router {
        let settings = HttpSettings {
            rate_limit: RateLimitSettings {
                per_second,
                burst,
                loopback: false,
            },
            api_keys: api_keys.map(Into::into),
            ..HttpSettings::default()
        };
        let api = Router::new().route("/work", post(|| async { "done" }));
        rate_limited(api, RateLimit::from_settings(&settings))
    }

    async fn post_from(app: &Router, address: [u8; 4], key: Option<&str>) -> Response {
        let mut request = Request::post("/work");
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let mut request = request.body(Body::empty()).expect("request");
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((address, 40_000))));
        app.clone().oneshot(request).await.expect("answer")
    }

    #[tokio::test]
    async fn a_client_over_its_burst_gets_a_json_429_with_retry_after_and_others_go_on() {
        let app = app(1, 3, None);
        for _ in 0..3 {
            assert_eq!(
                post_from(&app, [10, 0, 0, 1], None).await.status(),
                StatusCode::OK
            );
        }
        let refused = post_from(&app, [10, 0, 0, 1], None).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            refused
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        let body = axum::body::to_bytes(refused.into_body(), 1 << 16)
            .await
            .expect("body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(json["error"]["code"], "too_many_requests", "{json}");
        assert_eq!(
            post_from(&app, [10, 0, 0, 2], None).await.status(),
            StatusCode::OK,
            "another address has its own budget"
        );
        for _ in 0..10 {
            assert_eq!(
                post_from(&app, [127, 0, 0, 1], None).await.status(),
                StatusCode::OK,
                "loopback is not limited by default"
            );
        }
    }

    #[tokio::test]
    async fn with_api_keys_each_key_has_its_own_budget_whatever_the_address() {
        let app = app(1, 1, Some("key-one-0001,key-two-0002"));
        let proxy = [10, 0, 0, 9];
        assert_eq!(
            post_from(&app, proxy, Some("key-one-0001")).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            post_from(&app, proxy, Some("key-two-0002")).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            post_from(&app, proxy, Some("key-one-0001")).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[test]
    fn zero_per_second_turns_the_limit_off() {
        let settings = HttpSettings {
            rate_limit: RateLimitSettings {
                per_second: 0,
                ..RateLimitSettings::default()
            },
            ..HttpSettings::default()
        };
        assert!(RateLimit::from_settings(&settings).is_none());
    }
}
