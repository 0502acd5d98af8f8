//! [`Json`]: axum's JSON extractor with JSON error answers.

use axum::{
    extract::{FromRequest, Request, rejection::JsonRejection},
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
