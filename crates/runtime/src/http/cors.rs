//! Cross-origin requests (CORS): which browser pages on other origins may call a service.
//!
//! `CORS_ALLOW_ORIGINS` holds comma-separated origins, each exactly as a browser sends it
//! in `Origin` (`scheme://host[:port]`: lower case, no path, no trailing slash, no default
//! port), or `*` for any origin. Unset or empty, a service sends no CORS header at all and
//! a browser page on another origin cannot read its answers (the same-origin policy).
//!
//! When set, [`with_common_layers`](super::with_common_layers) answers preflight
//! requests (`OPTIONS` with `Access-Control-Request-Method`) itself, before the API-key
//! check and the rate limit, and adds `Access-Control-Allow-Origin` to every answer for an
//! allowed origin — errors included, so that a page can read a 401 or a 429. Allowed:
//! the methods `GET`, `POST` and `OPTIONS`; the request headers `Content-Type`,
//! `Authorization` (the API key, [`ApiKeys`](super::ApiKeys)) and `Last-Event-ID` (a
//! stream's resumption); a page may read `X-Request-Id` and `Retry-After` of an answer.
//! No credentials mode: a page sends its key as a header, never as a cookie.
//!
//! The protocol is the Fetch standard's "CORS protocol"; the layer is tower-http's
//! [`CorsLayer`].

use std::{sync::Arc, time::Duration};

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::HttpSettings;
use crate::{Error, Result};

/// How long a browser may cache a preflight's answer (10 minutes).
pub const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The origins of `CORS_ALLOW_ORIGINS`, checked. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Origins,
}

#[derive(Debug, Clone)]
enum Origins {
    /// `*`: any origin.
    Any,
    /// These origins, exactly.
    List(Arc<Vec<HeaderValue>>),
}

impl Cors {
    /// The origins of `CORS_ALLOW_ORIGINS`, or `None` when it is unset or empty (no CORS
    /// headers).
    ///
    /// # Errors
    /// As [`Cors::parse`].
    pub fn from_settings(settings: &HttpSettings) -> Result<Option<Self>> {
        settings
            .cors_allow_origins
            .as_deref()
            .map(Self::parse)
            .transpose()
    }

    /// Parses a comma-separated list of origins, or `*` alone.
    ///
    /// # Errors
    /// [`Error::Config`] naming `CORS_ALLOW_ORIGINS` and the entry's position for an empty
    /// entry, `*` among other entries, or an entry that is not an origin as a browser
    /// sends it (with the origin it may have meant, when there is one).
    pub fn parse(list: &str) -> Result<Self> {
        let bad = |position: usize, why: String| {
            Err(Error::Config(format!(
                "CORS_ALLOW_ORIGINS: entry {position} {why}"
            )))
        };
        let entries: Vec<&str> = list.split(',').map(str::trim).collect();
        if entries == ["*"] {
            return Ok(Self {
                origins: Origins::Any,
            });
        }
        let mut origins = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let position = index + 1;
            if entry.is_empty() {
                return bad(position, "is empty".into());
            }
            if entry == "*" {
                return bad(position, "is `*`, which must stand alone".into());
            }
            let shape = "must be an origin as a browser sends it: scheme://host[:port], \
                         in lower case, without path, trailing slash or default port";
            let Ok(url) = url::Url::parse(entry) else {
                return bad(position, format!("(`{entry}`) {shape}"));
            };
            let origin = url.origin();
            if !origin.is_tuple() || !matches!(url.scheme(), "http" | "https") {
                return bad(
                    position,
                    format!("(`{entry}`) {shape}, with scheme http or https"),
                );
            }
            let serialized = origin.ascii_serialization();
            if serialized != entry {
                return bad(position, format!("(`{entry}`) {shape}: `{serialized}`?"));
            }
            let value = HeaderValue::from_str(entry).map_err(|_| {
                Error::Config(format!("CORS_ALLOW_ORIGINS: entry {position} {shape}"))
            })?;
            origins.push(value);
        }
        Ok(Self {
            origins: Origins::List(Arc::new(origins)),
        })
    }

    /// Whether a request from `origin` (its `Origin` header) is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        match &self.origins {
            Origins::Any => true,
            Origins::List(list) => list.iter().any(|allowed| allowed == origin),
        }
    }

    /// The tower-http layer of these origins (see the module's doc for what it allows).
    pub fn layer(&self) -> CorsLayer {
        let origins = match &self.origins {
            Origins::Any => AllowOrigin::any(),
            Origins::List(list) => AllowOrigin::list(list.iter().cloned()),
        };
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
            .max_age(PREFLIGHT_MAX_AGE)
    }
}

#[cfg(test)]
mod tests {
    use axum::{
        Router,
        body::Body,
        http::{Request, StatusCode},
        routing::{get, post},
    };
    use tower::ServiceExt;

    use super::*;
    use crate::http::{ApiKeys, require_api_key, with_common_layers};

    const PAGE: &str = "http://localhost:3000";

    /// A service's shape: a POST and a GET route behind API keys, the health route open.
    fn app(cors: Option<&str>) -> Router {
        let api = Router::new()
            .route("/generate-task", post(|| async { "made" }))
            .route("/task-result/{id}/stream", get(|| async { "events" }));
        let keys = ApiKeys::parse("page-key-0001").expect("keys");
        let api = require_api_key(api, Some(keys), "test");
        let health = Router::new().route("/health", get(|| async { "ok" }));
        let cors = cors.map(|list| Cors::parse(list).expect("origins"));
        with_common_layers(api.merge(health), Duration::from_secs(5), cors)
    }

    /// The answer to a preflight from `origin` for a POST with a JSON body and a key.
    async fn preflight(app: &Router, origin: &str) -> axum::response::Response {
        let request = Request::options("/generate-task")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "content-type,authorization",
            )
            .body(Body::empty())
            .expect("request");
        app.clone().oneshot(request).await.expect("answer")
    }

    fn header_of(answer: &axum::response::Response, name: HeaderName) -> Option<String> {
        answer
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_lowercase())
    }

    #[tokio::test]
    async fn a_preflight_from_an_allowed_origin_gets_the_cors_headers_before_the_key_check() {
        let app = app(Some("http://localhost:3000, https://app.example.com"));
        let answer = preflight(&app, PAGE).await;
        assert_eq!(
            answer.status(),
            StatusCode::OK,
            "not 401: no key on a preflight"
        );
        assert_eq!(
            header_of(&answer, header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
            Some(PAGE)
        );
        let methods = header_of(&answer, header::ACCESS_CONTROL_ALLOW_METHODS).expect("methods");
        for method in ["get", "post", "options"] {
            assert!(methods.contains(method), "{methods}");
        }
        let headers = header_of(&answer, header::ACCESS_CONTROL_ALLOW_HEADERS).expect("headers");
        for name in ["content-type", "authorization", "last-event-id"] {
            assert!(headers.contains(name), "{headers}");
        }
        assert_eq!(
            header_of(&answer, header::ACCESS_CONTROL_MAX_AGE).as_deref(),
            Some("600")
        );
        assert_eq!(
            header_of(&answer, header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            None
        );
        let vary = header_of(&answer, header::VARY).expect("vary");
        assert!(vary.contains("origin"), "{vary}");
    }

    #[tokio::test]
    async fn an_answer_to_an_allowed_origin_is_readable_errors_included() {
        let app = app(Some(PAGE));
        for (authorization, status) in [
            (Some("Bearer page-key-0001"), StatusCode::OK),
            (None, StatusCode::UNAUTHORIZED),
        ] {
            let mut request = Request::get("/task-result/t1/stream").header(header::ORIGIN, PAGE);
            if let Some(value) = authorization {
                request = request.header(header::AUTHORIZATION, value);
            }
            let answer = app
                .clone()
                .oneshot(request.body(Body::empty()).expect("request"))
                .await
                .expect("answer");
            assert_eq!(answer.status(), status);
            assert_eq!(
                header_of(&answer, header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
                Some(PAGE),
                "{status}"
            );
            let exposed =
                header_of(&answer, header::ACCESS_CONTROL_EXPOSE_HEADERS).expect("exposed");
            assert_eq!(exposed, "x-request-id,retry-after");
        }
    }

    #[tokio::test]
    async fn another_origin_is_not_allowed() {
        let app = app(Some(PAGE));
        for origin in ["http://localhost:3001", "https://localhost:3000", "null"] {
            let answer = preflight(&app, origin).await;
            assert_eq!(
                header_of(&answer, header::ACCESS_CONTROL_ALLOW_ORIGIN),
                None,
                "{origin}"
            );
            let request = Request::get("/health")
                .header(header::ORIGIN, origin)
                .body(Body::empty())
                .expect("request");
            let answer = app.clone().oneshot(request).await.expect("answer");
            assert_eq!(answer.status(), StatusCode::OK);
            assert_eq!(
                header_of(&answer, header::ACCESS_CONTROL_ALLOW_ORIGIN),
                None,
                "{origin}"
            );
        }
    }

    #[tokio::test]
    async fn any_origin_with_a_star() {
        let answer = preflight(&app(Some("*")), "http://anywhere.test:8080").await;
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(
            header_of(&answer, header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
            Some("*")
        );
    }

    #[tokio::test]
    async fn without_the_setting_no_cors_header_is_sent() {
        let app = app(None);
        let answer = preflight(&app, PAGE).await;
        assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED, "as before");
        let request = Request::get("/health")
            .header(header::ORIGIN, PAGE)
            .body(Body::empty())
            .expect("request");
        let ok = app.oneshot(request).await.expect("answer");
        for answer in [&answer, &ok] {
            let cors: Vec<&HeaderName> = answer
                .headers()
                .keys()
                .filter(|name| name.as_str().starts_with("access-control-"))
                .collect();
            assert!(cors.is_empty(), "{cors:?}");
        }
    }

    #[test]
    fn origins_are_taken_exactly_as_a_browser_sends_them() {
        let cors = Cors::parse(" http://localhost:3000 ,https://app.example.com").expect("valid");
        assert!(cors.allows("http://localhost:3000"));
        assert!(cors.allows("https://app.example.com"));
        assert!(!cors.allows("http://localhost:3001"));
        assert!(Cors::parse("*").expect("any").allows("http://x.test"));
        assert!(Cors::parse("http://[::1]:8080,http://127.0.0.1:1").is_ok());
    }

    #[test]
    fn a_bad_entry_is_named_by_position_with_the_origin_it_may_mean() {
        for (list, says) in [
            (
                "http://localhost:3000/",
                "entry 1 (`http://localhost:3000/`)",
            ),
            ("http://a.test,HTTP://B.test", "`http://b.test`?"),
            ("https://a.test:443", "`https://a.test`?"),
            ("http://a.test/app", "`http://a.test`?"),
            ("http://a.test,,http://b.test", "entry 2 is empty"),
            ("http://a.test,*", "entry 2 is `*`, which must stand alone"),
            ("localhost:3000", "with scheme http or https"),
            ("file:///tmp/page.html", "with scheme http or https"),
            ("null", "entry 1 (`null`) must be an origin"),
            ("", "entry 1 is empty"),
        ] {
            let err = Cors::parse(list).expect_err(list).to_string();
            assert!(err.contains("CORS_ALLOW_ORIGINS: entry"), "{list}: {err}");
            assert!(err.contains(says), "{list}: {err}");
        }
    }
}
