//! API keys: who may call the routes of a service.
//!
//! `API_KEYS` (secret) holds comma-separated keys; an entry `sha256:<64 hex digits>` is
//! the SHA-256 digest of a key rather than the key, so a deployment's Secret need not
//! hold the plain keys. When set, every route [`require_api_key`] wraps needs
//! `Authorization: Bearer <key>` (RFC 6750); a missing or wrong key gets a JSON 401 with
//! `WWW-Authenticate: Bearer`. `/health`, `/ready` (and `/metrics`) stay open for probes.
//! When unset, the routes are open and the service says so loudly at start-up.
//!
//! Only digests are kept. A presented key is hashed and compared with every digest in
//! constant time, so the time of an answer says nothing about how close a guess was.
//! Keys are never logged: the redaction layer ([`crate::redact`]) knows them too.

use std::sync::Arc;

use axum::{
    Router,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::ApiError;
use super::HttpSettings;
use crate::{Error, Result};

/// The accepted keys of a service, as SHA-256 digests. Cheap to clone.
#[derive(Clone)]
pub struct ApiKeys {
    digests: Arc<Vec<[u8; 32]>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.digests.len())
    }
}

impl ApiKeys {
    /// The keys of `API_KEYS`, or `None` when it is unset (open routes).
    ///
    /// # Errors
    /// [`Error::Config`] naming `API_KEYS` for an empty entry or a malformed `sha256:`
    /// digest (never quoting it).
    pub fn from_settings(settings: &HttpSettings) -> Result<Option<Self>> {
        let Some(keys) = &settings.api_keys else {
            return Ok(None);
        };
        Self::parse(keys.expose_secret()).map(Some)
    }

    /// Parses a comma-separated list of keys and `sha256:` digests.
    ///
    /// # Errors
    /// As [`ApiKeys::from_settings`].
    pub fn parse(list: &str) -> Result<Self> {
        let mut digests = Vec::new();
        for (index, entry) in list.split(',').map(str::trim).enumerate() {
            let position = index + 1;
            if entry.is_empty() {
                return Err(Error::Config(format!(
                    "API_KEYS: entry {position} is empty"
                )));
            }
            let digest = match entry.strip_prefix("sha256:") {
                Some(hex) => parse_digest(hex).ok_or_else(|| {
                    Error::Config(format!(
                        "API_KEYS: entry {position} is not sha256: and 64 hex digits"
                    ))
                })?,
                None => Sha256::digest(entry.as_bytes()).into(),
            };
            digests.push(digest);
        }
        Ok(Self {
            digests: Arc::new(digests),
        })
    }

    /// Whether `key` is one of the keys (every digest compared, in constant time).
    pub fn accepts(&self, key: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = 0u8;
        for digest in self.digests.iter() {
            let difference = digest
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            found |= u8::from(difference == 0);
        }
        found == 1
    }
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(digest)
}

/// `router` with every route needing a key of `keys`; unchanged (open) when `keys` is
/// `None`, with one warning line naming `service`. Apply it to the API routes before
/// merging the health routes, which stay open.
pub fn require_api_key(router: Router, keys: Option<ApiKeys>, service: &str) -> Router {
    let Some(keys) = keys else {
        tracing::warn!(
            service,
            "API_KEYS is not set: every route is open to anyone who can reach this port"
        );
        return router;
    };
    router.route_layer(middleware::from_fn(move |request: Request, next: Next| {
        let keys = keys.clone();
        async move {
            match bearer(&request) {
                Some(key) if keys.accepts(key) => next.run(request).await,
                Some(_) => unauthorized("the API key is not valid"),
                None => unauthorized("this route needs an API key: Authorization: Bearer <key>"),
            }
        }
    }))
}

/// The bearer token of `request`'s `Authorization` header (RFC 6750), if any.
pub(super) fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A JSON 401 with `WWW-Authenticate: Bearer`.
fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::Unauthorized(message.to_owned()).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    debug_assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    response
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, routing::get};
    use tower::ServiceExt;

    use super::*;

    fn app(keys: &str) -> Router {
        let api = Router::new().route("/secret", get(|| async { "in" }));
        let api = require_api_key(api, Some(ApiKeys::parse(keys).expect("keys")), "test");
        api.merge(Router::new().route("/health", get(|| async { "ok" })))
    }

    async fn call(
        app: &Router,
        path: &str,
        authorization: Option<&str>,
    ) -> (StatusCode, String, Option<String>) {
        let mut request = Request::get(path);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let answer = app
            .clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        let status = answer.status();
        let challenge = answer
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = axum::body::to_bytes(answer.into_body(), 1 << 16)
            .await
            .expect("body");
        (
            status,
            String::from_utf8_lossy(&body).into_owned(),
            challenge,
        )
    }

    #[tokio::test]
    async fn a_right_key_passes_a_wrong_one_of_the_same_length_and_none_get_a_json_401() {
        let digest = hex(&Sha256::digest(b"second-key-0002"));
        let app = app(&format!("first-key-00001, sha256:{digest}"));
        for key in ["first-key-00001", "second-key-0002"] {
            let (status, body, _) = call(&app, "/secret", Some(&format!("Bearer {key}"))).await;
            assert_eq!((status, body.as_str()), (StatusCode::OK, "in"), "{key}");
        }
        for authorization in [Some("Bearer first-key-00002"), Some("Basic Zmlyc3Q="), None] {
            let (status, body, challenge) = call(&app, "/secret", authorization).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
            assert_eq!(challenge.as_deref(), Some("Bearer"));
            let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            assert_eq!(json["error"]["code"], "unauthorized", "{json}");
            assert!(!body.contains("first-key"), "{body}");
        }
        let (status, _, _) = call(&app, "/health", None).await;
        assert_eq!(status, StatusCode::OK, "health stays open");
    }

    #[test]
    fn a_malformed_entry_is_named_by_position_never_quoted() {
        for list in ["good-key,,", "sha256:abc", "k1, sha256:zz"] {
            let err = ApiKeys::parse(list).expect_err(list).to_string();
            assert!(err.contains("API_KEYS: entry"), "{err}");
            assert!(!err.contains("good-key") && !err.contains("abc"), "{err}");
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
