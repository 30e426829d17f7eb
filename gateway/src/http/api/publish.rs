//! `POST /api/v1/publish` and `POST /api/v1/publish/batch`: the WebSocket `publish` shape
//! over HTTP. The answer comes once the message is accepted (qos 0) or durable (qos 1, 2).

use super::error::ApiError;
use crate::stream::publish::{Ack, PublishIn};
use crate::stream::{StreamError, StreamHub};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Who a REST publish comes from: `web:<X-Client-Id>` or `web:rest`.
fn origin(headers: &HeaderMap) -> String {
    match headers.get("x-client-id").and_then(|v| v.to_str().ok()) {
        Some(c) if !c.is_empty() && c.len() <= 256 => format!("web:{c}"),
        _ => "web:rest".into(),
    }
}

fn body_json<'a, T: Deserialize<'a>>(hub: &StreamHub, body: &'a Bytes) -> Result<T, StreamError> {
    if body.len() > hub.config.max_frame_size {
        return Err(StreamError::FrameTooLarge {
            size: body.len(),
            max: hub.config.max_frame_size,
        });
    }
    serde_json::from_slice(body).map_err(|e| StreamError::BadJson(e.to_string()))
}

fn ack_json(a: Ack) -> Value {
    json!({ "pos": a.pos.to_string(), "duplicate": a.duplicate })
}

/// `POST /publish`.
pub async fn single(
    State(hub): State<Arc<StreamHub>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let p: PublishIn = body_json(&hub, &body)?;
    let prepared = p.prepare(&hub, origin(&headers))?;
    let a = hub
        .log
        .submit(prepared.msg, prepared.dedupe)
        .await
        .map_err(StreamError::from)?;
    Ok(Json(ack_json(a.into())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    messages: Vec<Box<serde_json::value::RawValue>>,
}

/// `POST /publish/batch`: `{"messages": [publish, …]}`. Messages are sequenced in the order
/// given; each gets its own result (an ack or an error), so one bad message does not fail
/// the others.
pub async fn batch(
    State(hub): State<Arc<StreamHub>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: Batch = body_json(&hub, &body)?;
    if b.messages.len() > hub.config.max_batch {
        return Err(StreamError::BadRequest(format!(
            "a batch holds at most {} messages (browser.max_batch)",
            hub.config.max_batch
        ))
        .into());
    }
    let origin = origin(&headers);
    let mut pending = Vec::with_capacity(b.messages.len());
    for raw in &b.messages {
        let prepared = serde_json::from_str::<PublishIn>(raw.get())
            .map_err(|e| StreamError::BadJson(e.to_string()))
            .and_then(|p| p.prepare(&hub, origin.clone()));
        pending.push(prepared.map(|p| hub.log.submit(p.msg, p.dedupe)));
    }
    let mut results = Vec::with_capacity(pending.len());
    for p in pending {
        let r = match p {
            Ok(fut) => fut.await.map(Ack::from).map_err(StreamError::from),
            Err(e) => Err(e),
        };
        results.push(match r {
            Ok(a) => ack_json(a),
            Err(e) => json!({ "code": e.code(), "message": e.to_string() }),
        });
    }
    Ok(Json(json!({ "results": results })))
}
