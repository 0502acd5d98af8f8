//! Limits on the request head, answered as JSON: a request target over
//! [`MAX_URI_BYTES`] gets 414, more than [`MAX_HEADERS`] header fields or more than
//! [`MAX_HEADER_BYTES`] of them get 431.
//!
//! hyper parses the head first, with higher limits of its own (its read buffer,
//! [`TRANSPORT_BUFFER_BYTES`], and [`TRANSPORT_MAX_HEADERS`]); a head over those never
//! reaches this check and gets hyper's answer, which the transport turns into JSON too
//! (see `server::transport`).

use axum::{
    extract::Request,
    http::HeaderMap,
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::ApiError;

/// Longest request target (path and query, or the absolute URI) accepted, in bytes
/// (8 KiB); longer ones get 414 `uri_too_long`.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header fields accepted in one request (100, each repeated name counted); more
/// get 431 `headers_too_large`.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of header fields accepted in one request (32 KiB), counting each field as
/// `name: value` plus its line end; more get 431 `headers_too_large`.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// hyper's read buffer per connection, in bytes (64 KiB): a request head that does not
/// fit is refused by hyper with 431. Above [`MAX_URI_BYTES`] + [`MAX_HEADER_BYTES`], so
/// that those limits answer first with a message that says which one was passed.
pub(crate) const TRANSPORT_BUFFER_BYTES: usize = 64 * 1024;
/// Header fields hyper parses at most (128); more are refused by hyper with 431. Above
/// [`MAX_HEADERS`] for the same reason.
pub(crate) const TRANSPORT_MAX_HEADERS: usize = 128;

const _: () = assert!(TRANSPORT_BUFFER_BYTES > MAX_URI_BYTES + MAX_HEADER_BYTES);
const _: () = assert!(TRANSPORT_MAX_HEADERS > MAX_HEADERS);

/// Refuses a request whose head passes a limit; passes the others on.
pub(super) async fn check_head(request: Request, next: Next) -> Response {
    match head_error(&request) {
        Some(error) => {
            tracing::debug!(status = %error.status(), error = %error, "request head refused");
            error.into_response()
        }
        None => next.run(request).await,
    }
}

/// The limit `request`'s head passes, if any.
fn head_error<B>(request: &axum::http::Request<B>) -> Option<ApiError> {
    let uri = request.uri();
    let uri_bytes = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.scheme_str().map_or(0, |s| s.len() + 3);
    if uri_bytes > MAX_URI_BYTES {
        return Some(ApiError::UriTooLong(format!(
            "the request target has {uri_bytes} bytes, at most {MAX_URI_BYTES} are allowed"
        )));
    }
    let headers = request.headers();
    if headers.len() > MAX_HEADERS {
        return Some(ApiError::HeadersTooLarge(format!(
            "the request has {} header fields, at most {MAX_HEADERS} are allowed",
            headers.len()
        )));
    }
    let header_bytes = header_bytes(headers);
    if header_bytes > MAX_HEADER_BYTES {
        return Some(ApiError::HeadersTooLarge(format!(
            "the request's header fields have {header_bytes} bytes, at most {MAX_HEADER_BYTES} \
             are allowed"
        )));
    }
    None
}

/// The bytes of `headers` on the wire: `name: value\r\n` each.
fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderName, HeaderValue, StatusCode};

    use super::*;

    fn get(uri: &str) -> axum::http::Request<()> {
        axum::http::Request::get(uri).body(()).expect("request")
    }

    #[test]
    fn a_head_within_the_limits_passes() {
        let mut request = get(&format!("/task-results?status={}", "p".repeat(100)));
        request.headers_mut().insert(
            "x-big",
            HeaderValue::from_str(&"v".repeat(20_000)).expect("value"),
        );
        assert!(head_error(&request).is_none());
    }

    #[test]
    fn a_target_over_8_kib_is_414() {
        let at_limit = format!("/{}", "a".repeat(MAX_URI_BYTES - 1));
        assert!(head_error(&get(&at_limit)).is_none());
        let error = head_error(&get(&format!("{at_limit}b"))).expect("refused");
        assert_eq!(error.status(), StatusCode::URI_TOO_LONG);
        assert_eq!(error.code(), "uri_too_long");
        assert_eq!(
            error.to_string(),
            "the request target has 8193 bytes, at most 8192 are allowed"
        );
    }

    #[test]
    fn more_than_100_header_fields_is_431() {
        let mut request = get("/health");
        for i in 0..=MAX_HEADERS {
            request.headers_mut().append(
                HeaderName::from_bytes(format!("x-h{i}").as_bytes()).expect("name"),
                HeaderValue::from_static("1"),
            );
        }
        let error = head_error(&request).expect("refused");
        assert_eq!(error.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(error.code(), "headers_too_large");
        assert!(error.to_string().contains("101 header fields"), "{error}");
    }

    #[test]
    fn header_fields_over_32_kib_are_431() {
        let mut request = get("/health");
        for name in ["x-a", "x-b"] {
            request.headers_mut().insert(
                name,
                HeaderValue::from_str(&"v".repeat(MAX_HEADER_BYTES / 2)).expect("value"),
            );
        }
        let error = head_error(&request).expect("refused");
        assert_eq!(error.code(), "headers_too_large");
        assert_eq!(
            error.to_string(),
            "the request's header fields have 32782 bytes, at most 32768 are allowed"
        );
    }
}
