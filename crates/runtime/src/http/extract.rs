//! [`Json`], [`Path`] and [`Query`]: axum's extractors with JSON error answers.

use axum::{
    extract::{FromRequest, FromRequestParts, Request, rejection::JsonRejection},
    http::request::Parts,
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};

use super::ApiError;

/// Like `axum::Json`, but a rejected body is an [`ApiError`]: 415 without
/// `Content-Type: application/json`, 400 for malformed JSON, 422 for JSON of the wrong
/// shape (the message names the field), 413 for a body over 1 MiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
                JsonRejection::JsonSyntaxError(err) => {
                    ApiError::BadRequest(format!("body is not valid JSON: {}", err.body_text()))
                }
                JsonRejection::JsonDataError(err) => ApiError::Unprocessable(err.body_text()),
                JsonRejection::BytesRejection(err)
                    if err.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    ApiError::PayloadTooLarge
                }
                other => ApiError::BadRequest(other.body_text()),
            }),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Like `axum::extract::Path`, but a rejected path is an [`ApiError`]: 400 for a
/// segment that is not UTF-8 (`/task-result/%ff`) or does not parse as `T`, 500 when the
/// route has no such parameter (a bug).
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) if rejection.status().is_server_error() => {
                Err(ApiError::Internal(rejection.body_text()))
            }
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// Like `axum::extract::Query`, but a query string that does not parse as `T` is a 400
/// [`ApiError`] naming the field.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, http::StatusCode, routing::get};
    use http_body_util::BodyExt;
    use serde::Deserialize;
    use tower::ServiceExt;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Page {
        limit: u32,
    }

    fn app() -> Router {
        Router::new()
            .route(
                "/item/{id}",
                get(|Path(id): Path<String>| async move { id }),
            )
            .route(
                "/number/{n}",
                get(|Path(n): Path<u32>| async move { n.to_string() }),
            )
            .route(
                "/page",
                get(|Query(page): Query<Page>| async move { page.limit.to_string() }),
            )
    }

    async fn call(uri: &str) -> (StatusCode, Vec<u8>) {
        let response = app()
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, body.to_vec())
    }

    #[tokio::test]
    async fn path_and_query_rejections_are_json_400s() {
        for uri in ["/item/%ff", "/number/seven", "/page?limit=many", "/page"] {
            let (status, body) = call(uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            let body: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|_| panic!("{uri}: not JSON: {}", String::from_utf8_lossy(&body)));
            assert_eq!(body["error"]["code"], "bad_request", "{uri}: {body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{uri}: {body}"
            );
        }
    }

    #[tokio::test]
    async fn good_paths_and_queries_are_extracted() {
        assert_eq!(call("/item/%41b").await, (StatusCode::OK, b"Ab".to_vec()));
        assert_eq!(call("/number/7").await, (StatusCode::OK, b"7".to_vec()));
        assert_eq!(call("/page?limit=5").await, (StatusCode::OK, b"5".to_vec()));
    }
}
