//! [`ApiError`]: the one error type of every HTTP endpoint of the browser side (REST, SSE
//! and long-poll refusals). The body is `{"code": "...", "message": "..."}` with the same
//! stable codes as WebSocket `error` frames.

use crate::stream::StreamError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An HTTP error with a stable code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A protocol error (bad input, storage, shutting down).
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// No such endpoint.
    #[error("no such endpoint {0}; see /api/v1/openapi.json")]
    NotFound(String),
}

impl ApiError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Stream(e) => e.code(),
            ApiError::NotFound(_) => "not_found",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Stream(e) => match e {
                StreamError::FrameTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                StreamError::ForbiddenTopic => StatusCode::FORBIDDEN,
                StreamError::NotSubscribed(_) => StatusCode::NOT_FOUND,
                StreamError::TooManySubscriptions(_) => StatusCode::TOO_MANY_REQUESTS,
                StreamError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
                StreamError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                StreamError::BadJson(_)
                | StreamError::UnknownOp(_)
                | StreamError::BadRequest(_)
                | StreamError::InvalidFilter(_)
                | StreamError::InvalidTopic(_)
                | StreamError::BadPosition(_)
                | StreamError::BadPayload(_) => StatusCode::BAD_REQUEST,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "code": self.code(), "message": self.to_string() });
        (self.status(), Json(body)).into_response()
    }
}
