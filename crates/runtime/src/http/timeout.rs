//! The request timeout and the body-read timeout, both answered as a JSON 408.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::{
    BoxError,
    body::{Body, Bytes, HttpBody},
    extract::Request,
    middleware::Next,
    response::{IntoResponse, Response},
};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::ApiError;

/// Answers [`ApiError::RequestTimeout`] when the inner service has not answered within
/// `limit` (the handler's future is dropped).
pub(super) async fn request_timeout(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            ApiError::RequestTimeout(format!("no answer within {}", seconds(limit))).into_response()
        }
    }
}

/// Gives the request body `limit` to arrive, counted from the handler's first read of
/// it; a body that is not whole by then fails the read, and the answer, whatever the
/// handler made of the failed read, is [`ApiError::RequestTimeout`].
pub(super) async fn body_read_timeout(limit: Duration, request: Request, next: Next) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| Body::new(TimedBody::new(body, limit, expired.clone())));
    let response = next.run(request).await;
    if expired.load(Ordering::Acquire) {
        tracing::debug!(limit_secs = limit.as_secs_f64(), "request body timed out");
        return ApiError::RequestTimeout(format!(
            "the request body did not arrive within {}",
            seconds(limit)
        ))
        .into_response();
    }
    response
}

/// `limit` as people write it: `30 s`, `0.5 s`.
pub(super) fn seconds(limit: Duration) -> String {
    format!("{} s", limit.as_secs_f64())
}

/// The error a [`TimedBody`] fails with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {}", seconds(*.0))]
struct BodyTimedOut(Duration);

/// A request body that fails with [`BodyTimedOut`] once `limit` has passed since its
/// first poll without the body being whole, and then sets `expired`.
struct TimedBody {
    inner: Body,
    limit: Duration,
    /// When the first poll came.
    started: Option<Instant>,
    /// Armed only while the body is waited for.
    timer: Option<Pin<Box<Sleep>>>,
    expired: Arc<AtomicBool>,
}

impl TimedBody {
    fn new(inner: Body, limit: Duration, expired: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            limit,
            started: None,
            timer: None,
            expired,
        }
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.expired.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err(BodyTimedOut(this.limit).into())));
        }
        let started = *this.started.get_or_insert_with(Instant::now);
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let limit = this.limit;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(started + limit)));
        ready!(timer.as_mut().poll(cx));
        this.expired.store(true, Ordering::Release);
        Poll::Ready(Some(Err(BodyTimedOut(limit).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use axum::{Router, http::StatusCode, routing::post};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    /// A router whose one route reads the whole body and echoes its length.
    fn echo(limit: Duration) -> Router {
        Router::new()
            .route(
                "/echo",
                post(|body: Bytes| async move { body.len().to_string() }),
            )
            .layer(axum::middleware::from_fn(move |request, next| {
                body_read_timeout(limit, request, next)
            }))
    }

    async fn json_of(response: Response) -> serde_json::Value {
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        serde_json::from_slice(&bytes).expect("a JSON body")
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_is_answered_408_after_the_body_timeout() {
        let (mut sender, body) = mpsc_body();
        sender.send(Bytes::from_static(b"part of a body")).await;
        let request = Request::post("/echo")
            .body(Body::new(body))
            .expect("request");
        let started = Instant::now();
        let response = echo(Duration::from_secs(3))
            .oneshot(request)
            .await
            .expect("response");
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        let body = json_of(response).await;
        assert_eq!(body["error"]["code"], "request_timeout", "{body}");
        assert_eq!(
            body["error"]["message"], "the request body did not arrive within 3 s",
            "{body}"
        );
        drop(sender);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_arrives_in_time_is_read_whole() {
        let request = Request::post("/echo")
            .body(Body::from("twelve bytes"))
            .expect("request");
        let response = echo(Duration::from_secs(3))
            .oneshot(request)
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = response.into_body().collect().await.expect("body");
        assert_eq!(bytes.to_bytes(), "12");
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_that_does_not_answer_in_time_is_answered_408() {
        let app = Router::new()
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "late"
                }),
            )
            .layer(axum::middleware::from_fn(|request, next| {
                request_timeout(Duration::from_millis(1500), request, next)
            }));
        let response = app
            .oneshot(Request::get("/slow").body(Body::empty()).expect("request"))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        let body = json_of(response).await;
        assert_eq!(body["error"]["code"], "request_timeout", "{body}");
        assert_eq!(body["error"]["message"], "no answer within 1.5 s", "{body}");
    }

    /// A body fed chunk by chunk through a channel; it stays open while the sender lives.
    fn mpsc_body() -> (ChunkSender, impl HttpBody<Data = Bytes, Error = BoxError>) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|chunk| (Ok::<_, BoxError>(Frame::data(chunk)), rx))
        });
        (ChunkSender(tx), http_body_util::StreamBody::new(stream))
    }

    struct ChunkSender(tokio::sync::mpsc::Sender<Bytes>);

    impl ChunkSender {
        async fn send(&mut self, chunk: Bytes) {
            self.0.send(chunk).await.expect("receiver alive");
        }
    }
}
