//! `GET /api/v1/sessions`: the persistent MQTT sessions the log holds, summarised from their
//! saved records (see [`crate::mqtt::session`]).

use super::error::ApiError;
use crate::broker::presence::MemberKind;
use crate::core::Position;
use crate::mqtt::session::Session;
use crate::stream::{StreamError, StreamHub};
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use std::sync::Arc;

/// Lists every stored session: client id, whether it is connected, its subscriptions, where
/// its cursor stands and how far the log has moved past it, its in-flight count, expiry.
/// The record of a connected client is the one it last saved (about once a second).
pub async fn list(State(hub): State<Arc<StreamHub>>) -> Result<Json<Value>, ApiError> {
    let log = &hub.log;
    let epoch = log.epoch();
    let released = log.released();
    let records = log.session_list().map_err(StreamError::from)?;
    let sessions: Vec<Value> = records
        .iter()
        // Keys starting with NUL are internal records (bridge cursors), not MQTT sessions.
        .filter(|(id, _)| !id.starts_with('\0'))
        .map(|(id, bytes)| {
            let connected = hub.broker.presence.is_present(MemberKind::Mqtt, id);
            match Session::restore(bytes, epoch) {
                Some(r) => {
                    let s = &r.session;
                    let subs: Vec<Value> = s
                        .subs
                        .iter()
                        .map(|sub| json!({ "filter": sub.filter, "qos": sub.qos as u8 }))
                        .collect();
                    json!({
                        "client_id": id,
                        "connected": connected,
                        "subscriptions": subs,
                        "position": Position { epoch, seq: s.cursor.saturating_sub(1) }.to_string(),
                        "log_ahead": released.saturating_sub(s.cursor.saturating_sub(1)),
                        "inflight": r.inflight_seqs.len(),
                        "expiry_interval": s.expiry,
                        "saved_at": r.disconnected_at_ms,
                    })
                }
                None => json!({
                    "client_id": id,
                    "connected": connected,
                    "stale": true,
                    "note": "record from another epoch of the log or another format; it is replaced when the client connects",
                }),
            }
        })
        .collect();
    Ok(Json(json!({ "sessions": sessions })))
}
