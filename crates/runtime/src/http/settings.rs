//! [`HttpSettings`]: the HTTP section of the settings (`PORT`, `BIND_ADDRESS`, `HTTP_*`,
//! `API_KEYS`, `RATE_LIMIT_*`, `CORS_ALLOW_ORIGINS`) and its checks.

use std::time::Duration;

use secrecy::SecretString;

use super::{ApiKeys, Cors, HttpLimits};
use crate::{Error, Result};

/// The HTTP section of the settings: where the service listens, the server's limits, who
/// may call it, how often, and from which browser pages.
///
/// [`HttpSettings::default`] is what an empty environment gives.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `PORT`: HTTP port; each service has its own default (8001, 8000, 8002)
    /// ([`HttpSettings::port_or`]). `0` picks a free port (tests).
    pub port: Option<u16>,
    /// `BIND_ADDRESS`: interface to listen on; default `0.0.0.0`.
    pub bind_address: String,
    /// The server's limits ([`HttpLimits`]):
    ///
    /// - `HTTP_HEADER_READ_TIMEOUT_SECS`: how long a client may take to send a request
    ///   head, from the connection's start or the first byte of a later request (at least
    ///   1); default 10. A head cut short gets a JSON 408, then the connection closes.
    /// - `HTTP_KEEP_ALIVE_TIMEOUT_SECS`: how long a connection may stay idle between
    ///   requests (at least 1); default 75, longer than the 60 s idle timeout of common
    ///   proxies and load balancers, so that they close first and never reuse a
    ///   connection the service is closing.
    /// - `HTTP_BODY_READ_TIMEOUT_SECS`: how long a request body may take to arrive whole,
    ///   from the handler's first read (at least 1); default 30 (a 1 MiB body needs 35
    ///   KB/s). Over it the answer is a JSON 408.
    /// - `HTTP_MAX_CONNECTIONS`: most HTTP connections open at once (1 to 1000000);
    ///   default 2048. At the limit a new connection closes the one that has waited
    ///   longest without a request in flight; when all have one, new connections wait in
    ///   the listen backlog. Lowered to half the open-file limit when that is smaller.
    /// - `HTTP_SHUTDOWN_GRACE_SECS`: after SIGTERM, how long HTTP requests in flight may
    ///   finish before their connections are dropped (idle connections and unfinished
    ///   heads are closed at once); default 10.
    pub limits: HttpLimits,
    /// `API_KEYS` (secret): comma-separated keys (or `sha256:<hex>` digests of keys) that
    /// callers must send as `Authorization: Bearer <key>`; unset leaves the routes open.
    pub api_keys: Option<SecretString>,
    /// `RATE_LIMIT_*`: the per-client limit on the POST routes.
    pub rate_limit: RateLimitSettings,
    /// `CORS_ALLOW_ORIGINS`: comma-separated origins (`http://localhost:3000`, exactly as
    /// a browser sends `Origin`), or `*`, whose pages may call the service from a browser
    /// ([`Cors`]); unset or empty sends no CORS header.
    pub cors_allow_origins: Option<String>,
}

/// The rate-limit part of [`HttpSettings`] (`RATE_LIMIT_*`), made into a
/// [`RateLimit`](super::RateLimit) by [`RateLimit::from_settings`](super::RateLimit::from_settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// `RATE_LIMIT_PER_SECOND`: requests a second each client (its API key, else its
    /// address) may make on the POST routes, on average; 0 turns the limit off; default
    /// 100.
    pub per_second: u32,
    /// `RATE_LIMIT_BURST`: how many requests a client may make at once above the average
    /// (at least 1); default 200.
    pub burst: u32,
    /// `RATE_LIMIT_LOOPBACK`: whether clients on the loopback interface (the host's own
    /// tools, benchmarks, a sidecar proxy) are limited too; default `false`.
    pub loopback: bool,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            per_second: 100,
            burst: 200,
            loopback: false,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            port: None,
            bind_address: "0.0.0.0".into(),
            limits: HttpLimits::default(),
            api_keys: None,
            rate_limit: RateLimitSettings::default(),
            cors_allow_origins: None,
        }
    }
}

impl HttpSettings {
    /// Checks the limits' ranges, the rate limit, and that `API_KEYS` and
    /// `CORS_ALLOW_ORIGINS` parse.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable (never quoting a key).
    pub fn validate(&self) -> Result<()> {
        let bad = |var: &str, why: &str| Err(Error::Config(format!("{var} {why}")));
        ApiKeys::from_settings(self)?;
        Cors::from_settings(self)?;
        if self.rate_limit.per_second > 0 && self.rate_limit.burst == 0 {
            return bad("RATE_LIMIT_BURST", "must be at least 1");
        }
        let limits = &self.limits;
        for (var, timeout) in [
            ("HTTP_HEADER_READ_TIMEOUT_SECS", limits.header_read_timeout),
            ("HTTP_KEEP_ALIVE_TIMEOUT_SECS", limits.keep_alive_timeout),
            ("HTTP_BODY_READ_TIMEOUT_SECS", limits.body_read_timeout),
        ] {
            if timeout < Duration::from_secs(1) {
                return bad(var, "must be at least 1");
            }
        }
        if !(1..=1_000_000).contains(&limits.max_connections) {
            return bad("HTTP_MAX_CONNECTIONS", "must be from 1 to 1000000");
        }
        Ok(())
    }

    /// The HTTP port: `PORT`, or the service's default.
    pub fn port_or(&self, default: u16) -> u16 {
        self.port.unwrap_or(default)
    }
}
