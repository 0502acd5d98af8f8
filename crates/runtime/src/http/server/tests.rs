//! [`serve`] over real sockets, with a small router and short limits.

use std::time::Duration;

use axum::{
    Router,
    body::Bytes,
    routing::{get, post},
};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinHandle,
    time::Instant,
};

use super::*;
use crate::http::{bind, with_common_layers};

/// Limits short enough for tests: 500 ms to send a head, 700 ms of keep-alive, 600 ms for
/// a body, 1 s of shutdown grace.
fn short_limits() -> HttpLimits {
    HttpLimits {
        header_read_timeout: Duration::from_millis(500),
        keep_alive_timeout: Duration::from_millis(700),
        body_read_timeout: Duration::from_millis(600),
        max_connections: 64,
        shutdown_grace: Duration::from_secs(1),
    }
}

/// A server with `GET /ok`, `GET /sleep/{ms}` and `POST /echo` (answers the body's
/// length), with the common layers; its address, its shutdown token and its task.
async fn server(limits: HttpLimits) -> (String, CancellationToken, JoinHandle<()>) {
    let router = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/sleep/{ms}",
            get(|crate::http::Path(ms): crate::http::Path<u64>| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                "slept"
            }),
        )
        .route(
            "/echo",
            post(|body: Bytes| async move { body.len().to_string() }),
        );
    let router = with_common_layers(router, Duration::from_secs(30), None);
    let listener = bind("127.0.0.1", 0).await.expect("bound");
    let address = listener.local_addr().expect("address").to_string();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { serve(listener, router, &limits, shutdown).await }
    });
    (address, shutdown, task)
}

/// An answer read off a raw socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "not JSON: {}\n{}",
                self.head,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts the status, and the JSON error shape with `code`.
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert!(
            self.head.contains("content-type: application/json"),
            "{}",
            self.head
        );
    }
}

/// Reads one answer (head and `content-length` body), or `None` when the connection ends
/// before a whole one; waits at most 5 s.
async fn read_answer(stream: &mut TcpStream) -> Option<Answer> {
    let mut bytes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(answer) = parse_answer(&bytes) {
            return Some(answer);
        }
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return parse_answer(&bytes),
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Err(_) => panic!(
                "no answer within 5 s; got {:?}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
}

fn parse_answer(bytes: &[u8]) -> Option<Answer> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(Some(0), |v| v.trim().parse().ok())?;
    let body = bytes.get(end + 4..end + 4 + length)?.to_vec();
    let status = head.get(9..12)?.parse().ok()?;
    Some(Answer { status, head, body })
}

/// Waits until the server closes `stream` (EOF or reset), discarding what it sends;
/// returns how long that took. Panics after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(within, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the connection was still open after {within:?}"),
        }
    }
}

async fn connect(address: &str) -> TcpStream {
    TcpStream::connect(address).await.expect("connected")
}

async fn request(address: &str, raw: &[u8]) -> Answer {
    let mut stream = connect(address).await;
    stream.write_all(raw).await.expect("sent");
    read_answer(&mut stream).await.expect("an answer")
}

#[tokio::test]
async fn a_request_hyper_cannot_parse_gets_a_json_400() {
    let (address, _shutdown, _task) = server(short_limits()).await;
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nbad header\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ] {
        let answer = request(&address, garbage).await;
        answer.assert_error(400, "bad_request");
        assert!(answer.head.contains("connection: close"), "{}", answer.head);
    }
}

#[tokio::test]
async fn a_head_larger_than_hyper_s_buffer_gets_a_json_431() {
    let (address, _shutdown, _task) = server(short_limits()).await;
    let mut raw = b"GET /ok HTTP/1.1\r\nhost: x\r\n".to_vec();
    for i in 0..20 {
        raw.extend_from_slice(format!("x-{i}: {}\r\n", "v".repeat(4000)).as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    request(&address, &raw)
        .await
        .assert_error(431, "headers_too_large");
    let mut many = b"GET /ok HTTP/1.1\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    request(&address, &many)
        .await
        .assert_error(431, "headers_too_large");
}

#[tokio::test]
async fn head_limits_below_hyper_s_answer_json_414_and_431() {
    let (address, _shutdown, _task) = server(short_limits()).await;
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_URI));
    request(&address, long.as_bytes())
        .await
        .assert_error(414, "uri_too_long");
    let big = format!("GET /ok HTTP/1.1\r\nx-big: {}\r\n\r\n", "v".repeat(40_000));
    request(&address, big.as_bytes())
        .await
        .assert_error(431, "headers_too_large");
    let answer = request(&address, b"GET /ok HTTP/1.1\r\n\r\n").await;
    assert_eq!((answer.status, answer.body), (200, b"ok".to_vec()));
}

const MAX_URI: usize = crate::http::MAX_URI_BYTES + 1;

#[tokio::test]
async fn a_head_cut_short_gets_a_json_408_after_the_header_read_timeout() {
    let (address, _shutdown, _task) = server(short_limits()).await;
    let mut stream = connect(&address).await;
    stream
        .write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("sent");
    let started = Instant::now();
    let answer = read_answer(&mut stream).await.expect("an answer");
    let waited = started.elapsed();
    answer.assert_error(408, "request_timeout");
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    closed_within(&mut stream, Duration::from_secs(1)).await;

    let mut silent = connect(&address).await;
    let waited = closed_within(&mut silent, Duration::from_secs(2)).await;
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
}

#[tokio::test]
async fn a_slow_head_does_not_get_more_time_by_trickling() {
    let (address, _shutdown, _task) = server(short_limits()).await;
    let mut stream = connect(&address).await;
    let started = Instant::now();
    stream
        .write_all(b"GET /ok HTTP/1.1\r\n")
        .await
        .expect("sent");
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if stream
            .write_all(format!("x-{i}: 1\r\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
    }
    closed_within(&mut stream, Duration::from_secs(2)).await;
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let (address, _shutdown, _task) = server(short_limits()).await;
    let mut stream = connect(&address).await;
    for _ in 0..2 {
        // Within the keep-alive, the connection serves the next request.
        stream
            .write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("sent");
        let answer = read_answer(&mut stream).await.expect("an answer");
        assert_eq!(answer.status, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let waited = closed_within(&mut stream, Duration::from_secs(2)).await;
    // 700 ms of keep-alive, 300 of which already passed.
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(1000),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_body_that_stalls_gets_a_json_408_after_the_body_read_timeout() {
    let (address, _shutdown, _task) = server(short_limits()).await;
    let mut stream = connect(&address).await;
    stream
        .write_all(b"POST /echo HTTP/1.1\r\ncontent-length: 100\r\n\r\nonly part")
        .await
        .expect("sent");
    let started = Instant::now();
    let answer = read_answer(&mut stream).await.expect("an answer");
    answer.assert_error(408, "request_timeout");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let whole = request(
        &address,
        b"POST /echo HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!((whole.status, whole.body), (200, b"5".to_vec()));
}

#[tokio::test]
async fn at_the_connection_limit_a_new_client_takes_the_place_of_an_idle_one() {
    let limits = HttpLimits {
        max_connections: 4,
        header_read_timeout: Duration::from_secs(30),
        keep_alive_timeout: Duration::from_secs(30),
        ..short_limits()
    };
    let (address, _shutdown, _task) = server(limits).await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut stream = connect(&address).await;
        stream.write_all(b"GET /ok HT").await.expect("sent");
        idle.push(stream);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..3 {
        let answer = tokio::time::timeout(
            Duration::from_secs(2),
            request(&address, b"GET /ok HTTP/1.1\r\n\r\n"),
        )
        .await
        .expect("answered at the limit");
        assert_eq!(answer.status, 200);
    }
    // The oldest waited longest and were closed first.
    closed_within(&mut idle[0], Duration::from_secs(1)).await;
}

#[tokio::test]
async fn at_the_limit_with_every_request_in_flight_new_connections_wait() {
    let limits = HttpLimits {
        max_connections: 2,
        ..short_limits()
    };
    let (address, _shutdown, _task) = server(limits).await;
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let address = address.clone();
            tokio::spawn(async move { request(&address, b"GET /sleep/800 HTTP/1.1\r\n\r\n").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let answer = request(&address, b"GET /ok HTTP/1.1\r\n\r\n").await;
    assert_eq!(answer.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "answered before a place was free: {:?}",
        started.elapsed()
    );
    for task in slow {
        assert_eq!(task.await.expect("joined").status, 200);
    }
}

#[tokio::test]
async fn shutdown_closes_idle_and_half_open_connections_and_lets_requests_in_flight_finish() {
    let (address, shutdown, task) = server(short_limits()).await;
    let mut half_open = connect(&address).await;
    half_open
        .write_all(b"GET /ok HTTP/1.1\r\nhost:")
        .await
        .expect("sent");
    let mut idle = connect(&address).await;
    idle.write_all(b"GET /ok HTTP/1.1\r\n\r\n")
        .await
        .expect("sent");
    assert_eq!(read_answer(&mut idle).await.expect("answer").status, 200);
    let in_flight = tokio::spawn({
        let address = address.clone();
        async move { request(&address, b"GET /sleep/600 HTTP/1.1\r\n\r\n").await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    shutdown.cancel();
    assert!(
        closed_within(&mut half_open, Duration::from_millis(300)).await
            < Duration::from_millis(300)
    );
    closed_within(&mut idle, Duration::from_millis(300)).await;
    let answer = in_flight.await.expect("joined");
    assert_eq!((answer.status, answer.body), (200, b"slept".to_vec()));
    assert!(answer.head.contains("connection: close"), "{}", answer.head);
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("serve returned")
        .expect("joined");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(
        TcpStream::connect(&address).await.is_err(),
        "still listening"
    );
}

#[tokio::test]
async fn shutdown_drops_a_request_still_in_flight_at_the_end_of_the_grace() {
    let (address, shutdown, task) = server(short_limits()).await;
    let mut stream = connect(&address).await;
    stream
        .write_all(b"GET /sleep/10000 HTTP/1.1\r\n\r\n")
        .await
        .expect("sent");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("serve returned within the grace")
        .expect("joined");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1600),
        "{took:?}"
    );
    closed_within(&mut stream, Duration::from_millis(200)).await;
}
