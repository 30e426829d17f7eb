//! The REST API under `/api/v1`, described by the OpenAPI document it serves at
//! `/api/v1/openapi.json` and in `docs/protocol.md`.
//!
//! Layout:
//! - `mod.rs`: the router.
//! - `error.rs`: [`error::ApiError`], JSON errors with stable codes.
//! - `publish.rs`: `POST /publish` and `POST /publish/batch`.
//! - `read.rs`: history, retained messages, channels, presence.
//! - `sessions.rs`: stored MQTT sessions.

pub mod error;
mod publish;
mod read;
mod sessions;

use crate::stream::StreamHub;
use axum::Router;
use axum::http::{HeaderValue, Uri, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use error::ApiError;
use std::sync::Arc;

/// The OpenAPI 3.1 description of this API.
pub const OPENAPI: &str = include_str!("../../../assets/openapi.json");

/// Routes of `/api/v1` (nest them there).
pub fn router(hub: Arc<StreamHub>) -> Router {
    Router::new()
        .route("/publish", post(publish::single))
        .route("/publish/batch", post(publish::batch))
        .route("/history", get(read::history))
        .route("/retained", get(read::retained))
        .route("/channels", get(read::channels))
        .route("/presence", get(read::presence))
        .route("/sessions", get(sessions::list))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .with_state(hub)
}

async fn openapi() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().chars().take(200).collect())
}
