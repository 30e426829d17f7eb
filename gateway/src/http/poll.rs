//! HTTP long-poll at `/poll`, for clients with neither WebSocket nor SSE.
//!
//! `GET /poll?filter=…&since=<position>` answers as soon as there is at least one event,
//! or after `timeout` seconds (default and maximum `browser.poll_timeout`) with none:
//!
//! ```json
//! {"events": [{"op":"msg", …}, {"op":"reset", …}], "position": "<epoch>-<seq>"}
//! ```
//!
//! `events` are the objects WebSocket frames carry. Pass `position` as `since` in the next
//! request: it resumes exactly after the last event, across every filter. Without `since`
//! a poll starts from now (or from `rewind`/`rewind_seconds`), so only the first request of
//! a client should leave it out.

use super::api::error::ApiError;
use crate::stream::StreamHub;
use crate::stream::encode;
use crate::stream::query::StreamQuery;
use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// `GET /poll`.
pub async fn handler(
    State(hub): State<Arc<StreamHub>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let q = StreamQuery::parse(raw.as_deref().unwrap_or(""))?;
    let max_wait = hub.config.poll_timeout;
    let wait = q
        .timeout
        .map_or(max_wait, |s| Duration::from_secs(s).min(max_wait));
    let limit = q
        .limit
        .map_or(hub.config.max_batch, |l| {
            usize::try_from(l).unwrap_or(usize::MAX)
        })
        .clamp(1, hub.config.max_batch);
    let mut stream = q.open(&hub)?;
    hub.open.poll.fetch_add(1, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + wait;
    let shutdown = hub.broker.shutdown.clone();
    let mut events = Vec::new();
    let result = loop {
        match stream.next_events(limit - events.len()) {
            Ok(mut e) => events.append(&mut e),
            Err(e) => break Err(e),
        }
        if events.len() >= limit || (!events.is_empty() && !stream.has_pending()) {
            break Ok(());
        }
        if stream.has_pending() {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = stream.wait() => {}
            _ = tokio::time::sleep_until(deadline) => break Ok(()),
            _ = shutdown.cancelled() => break Ok(()),
        }
    };
    hub.open.poll.fetch_sub(1, Ordering::Relaxed);
    result?;
    let objects: Vec<Box<RawValue>> = events
        .iter()
        .filter_map(|e| RawValue::from_string(encode::event(&hub.encoder, e).to_string()).ok())
        .collect();
    let body = serde_json::json!({
        "events": objects,
        "position": stream.position().to_string(),
    });
    Ok(Json(body))
}
