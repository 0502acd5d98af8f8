//! [`Transport`]: a connection's TCP stream as hyper sees it, which notes the bytes of
//! request heads for the connection's timers and turns hyper's own error answers into
//! the JSON error shape.
//!
//! hyper answers a request it cannot parse by itself, before any service sees it, with
//! a bodyless `400 Bad Request`, `414 URI Too Long` or `431 Request Header Fields Too
//! Large` (`Server::on_error` in hyper's `proto/h1/role.rs`: a status line, `content-length:
//! 0` and `date`), then closes the connection. There is no hook for it, so the
//! transport recognises that answer in what hyper writes — nothing of ours in flight on
//! the connection, exactly one response head, one of those three statuses, `content-length:
//! 0`, no `content-type` — and writes the same status with a JSON body and
//! `connection: close` instead. Answers of our own never match: they come while their
//! request is in flight, and carry a JSON body. Should a future hyper write its answer
//! differently, it would go out unchanged (bodyless), not broken; the tests of this
//! module and the e2e tests catch that.
//!
//! When the header-read timeout runs out after part of a head arrived, the transport
//! writes a JSON 408 as the connection closes (best effort: what the socket takes at
//! once).

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::http::StatusCode;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

use super::connection::Activity;
use crate::http::{
    ApiError,
    limits::{TRANSPORT_BUFFER_BYTES, TRANSPORT_MAX_HEADERS},
    timeout::seconds,
};

/// The longest answer of hyper's own that is looked at (its heads are ~80 bytes).
const LONGEST_HYPER_ANSWER: usize = 512;

/// A connection's TCP stream; see the [module docs](self).
pub(super) struct Transport {
    stream: TcpStream,
    activity: Arc<Activity>,
    header_read_timeout: Duration,
    rewrite: Rewrite,
}

/// Where the rewrite of hyper's error answer stands.
enum Rewrite {
    /// Nothing rewritten yet.
    Watching,
    /// hyper's answer was taken; these bytes go out instead, from `written` on.
    Sending { bytes: Vec<u8>, written: usize },
    /// Rewritten and sent (hyper closes the connection after it).
    Sent,
}

impl Transport {
    pub(super) fn new(
        stream: TcpStream,
        activity: Arc<Activity>,
        header_read_timeout: Duration,
    ) -> Self {
        Self {
            stream,
            activity,
            header_read_timeout,
            rewrite: Rewrite::Watching,
        }
    }

    /// Writes what is left of a rewritten answer; ready when nothing is.
    fn poll_send_rewrite(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Rewrite::Sending { bytes, written } = &mut self.rewrite {
            if *written == bytes.len() {
                self.rewrite = Rewrite::Sent;
                break;
            }
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// The JSON answer to write instead of `bufs`, when they are hyper's own error
    /// answer.
    fn replacement(&self, bufs: &[&[u8]]) -> Option<Vec<u8>> {
        if !matches!(self.rewrite, Rewrite::Watching) {
            return None;
        }
        let first = bufs.iter().find(|b| !b.is_empty())?;
        if !first.starts_with(b"HTTP/1.1 4") {
            return None;
        }
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if len > LONGEST_HYPER_ANSWER || self.activity.in_flight() {
            return None;
        }
        let head = bufs.concat();
        let status = hyper_error_status(&head)?;
        Some(json_answer(&hyper_error(status)?))
    }
}

/// The status of `head` when it is a whole bodyless 400, 414 or 431 answer as hyper
/// writes its own: one head, `content-length: 0`, no `content-type` or
/// `transfer-encoding`.
fn hyper_error_status(head: &[u8]) -> Option<StatusCode> {
    let head = head.strip_suffix(b"\r\n\r\n")?;
    let text = std::str::from_utf8(head).ok()?;
    if text.contains("\r\n\r\n") {
        return None;
    }
    let mut lines = text.split("\r\n");
    let status = match lines.next()?.strip_prefix("HTTP/1.1 ")?.get(..4)? {
        "400 " => StatusCode::BAD_REQUEST,
        "414 " => StatusCode::URI_TOO_LONG,
        "431 " => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => return None,
    };
    let mut empty = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") {
            if value.trim() != "0" {
                return None;
            }
            empty = true;
        } else if name.eq_ignore_ascii_case("content-type")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            return None;
        }
    }
    empty.then_some(status)
}

/// What hyper's own answer with `status` means, as an [`ApiError`].
fn hyper_error(status: StatusCode) -> Option<ApiError> {
    Some(match status {
        StatusCode::BAD_REQUEST => ApiError::BadRequest(
            "the request is not valid HTTP/1.1 (malformed request line or header field)".into(),
        ),
        StatusCode::URI_TOO_LONG => ApiError::UriTooLong("the request target is too long".into()),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::HeadersTooLarge(format!(
            "the request head is over {TRANSPORT_BUFFER_BYTES} bytes or has over \
             {TRANSPORT_MAX_HEADERS} header fields"
        )),
        _ => return None,
    })
}

/// `error` as a whole HTTP/1.1 answer that closes the connection.
fn json_answer(error: &ApiError) -> Vec<u8> {
    let body = error.body().to_string();
    let status = error.status();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\ndate: {}\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT"),
    )
    .into_bytes()
}

impl AsyncRead for Transport {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.stream).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_send_rewrite(cx))?;
        if let Some(bytes) = self.replacement(&[buf]) {
            tracing::debug!("rewriting hyper's own error answer as JSON");
            self.rewrite = Rewrite::Sending { bytes, written: 0 };
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_send_rewrite(cx))?;
        let slices: Vec<&[u8]> = bufs.iter().map(|b| &**b).collect();
        if let Some(bytes) = self.replacement(&slices) {
            tracing::debug!("rewriting hyper's own error answer as JSON");
            self.rewrite = Rewrite::Sending { bytes, written: 0 };
            return Poll::Ready(Ok(slices.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_rewrite(cx))?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_rewrite(cx))?;
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Drop for Transport {
    /// After a header-read timeout that cut a head short, tells the client why the
    /// connection closes (what the socket takes without waiting).
    fn drop(&mut self) {
        if self.activity.head_timed_out() {
            let answer = json_answer(&ApiError::RequestTimeout(format!(
                "the request head did not arrive within {}",
                seconds(self.header_read_timeout)
            )));
            let _ = self.stream.try_write(&answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_error_answers_are_recognised() {
        for (head, status) in [
            (
                "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n",
                StatusCode::BAD_REQUEST,
            ),
            (
                "HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n",
                StatusCode::URI_TOO_LONG,
            ),
            (
                "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length:0\r\n\r\n",
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ),
        ] {
            assert_eq!(hyper_error_status(head.as_bytes()), Some(status), "{head}");
        }
    }

    #[test]
    fn other_answers_are_left_alone() {
        for head in [
            // Ours: a JSON body.
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 52\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            // Another status.
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n",
            // No length, chunked, or not whole.
            "HTTP/1.1 400 Bad Request\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            // Two answers in one write.
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\nHTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
            // Not HTTP/1.1.
            "HTTP/1.0 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
        ] {
            assert_eq!(hyper_error_status(head.as_bytes()), None, "{head}");
        }
    }

    #[test]
    fn the_rewritten_answer_is_json_and_closes() {
        let error = hyper_error(StatusCode::BAD_REQUEST).expect("known status");
        let answer = String::from_utf8(json_answer(&error)).expect("text");
        let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(
            head.contains("\r\ncontent-type: application/json\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
            "{head}"
        );
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(
            head.contains("\r\ndate: ") && head.ends_with(" GMT"),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(body["error"]["code"], "bad_request");
    }
}
