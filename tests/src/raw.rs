//! Raw HTTP/1.1 over a `TcpStream`, for what a well-behaved client never sends: garbage,
//! heads cut short, bodies that stall, connections held open.

use std::time::Duration;

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

/// `host:port` of a base URL such as `http://127.0.0.1:8001`.
pub fn authority(base_url: &str) -> &str {
    base_url
        .strip_prefix("http://")
        .unwrap_or(base_url)
        .trim_end_matches('/')
}

/// Opens a connection to `base_url`'s host and port.
///
/// # Panics
/// When the connection is refused.
pub async fn connect(base_url: &str) -> TcpStream {
    TcpStream::connect(authority(base_url))
        .await
        .unwrap_or_else(|err| panic!("cannot connect to {base_url}: {err}"))
}

/// One answer read off a socket.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The status line and header fields, in lower case.
    pub head: String,
    /// The body (`content-length` bytes).
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON, or `{"raw": <text>}` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| serde_json::json!({"raw": String::from_utf8_lossy(&self.body)}))
    }

    /// Asserts the status and the error shape `{"error": {"code", "message"}}` with
    /// `code`, a non-empty message and `content-type: application/json`.
    ///
    /// # Panics
    /// When it does not hold; the message names `what`.
    pub fn assert_error(&self, what: &str, status: u16, code: &str) {
        let body = self.json();
        assert_eq!(self.status, status, "{what}: {}\n{body}", self.head);
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: no message in {body}"
        );
        assert!(
            self.head.contains("content-type: application/json"),
            "{what}: {}",
            self.head
        );
    }
}

/// Sends `raw` on a new connection to `base_url` and reads the answer.
///
/// # Panics
/// When no whole answer comes within 10 s.
pub async fn request(base_url: &str, raw: &[u8]) -> Answer {
    let mut stream = connect(base_url).await;
    // The server may answer and close before it read everything (a head over its
    // limits); the answer is what counts.
    let _ = stream.write_all(raw).await;
    read_answer(&mut stream, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("{base_url}: the connection closed without an answer"))
}

/// Reads one answer (head, then a `content-length` body); `None` when the connection
/// ends first.
///
/// # Panics
/// When nothing whole comes within `timeout`.
pub async fn read_answer(stream: &mut TcpStream, timeout: Duration) -> Option<Answer> {
    let deadline = Instant::now() + timeout;
    let mut bytes = Vec::new();
    loop {
        if let Some(answer) = parse_answer(&bytes) {
            return Some(answer);
        }
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return parse_answer(&bytes),
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Err(_) => panic!(
                "no whole answer within {timeout:?}; got {:?}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
}

fn parse_answer(bytes: &[u8]) -> Option<Answer> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]).to_lowercase();
    let length: usize = match head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
    {
        Some(value) => value.trim().parse().ok()?,
        None => 0,
    };
    let body = bytes.get(end + 4..end + 4 + length)?.to_vec();
    let status = head.get(9..12)?.parse().ok()?;
    Some(Answer { status, head, body })
}

/// Reads (and drops) what the server sends until it closes `stream` (end of stream or
/// reset); returns how long that took, or `None` when it was still open after `within`.
pub async fn wait_closed(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let deadline = started + within;
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}
