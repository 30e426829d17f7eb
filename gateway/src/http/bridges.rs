//! `GET /api/v1/bridges`: the status of every bridge, as JSON.
//!
//! ```json
//! {"bridges": [{"name": "site", "remote": "broker:1883", "protocol": "5", "tls": false,
//!   "state": "connected", "state_since_ms": 1700000000000, "last_error": null,
//!   "lag": 0, "cursor": 42, "inflight": 0, "forwarded_out": 41, "forwarded_in": 3,
//!   "skipped_lag": 0, "lost_retention": 0, "loops_prevented": 0, "refused_out": 0,
//!   "rejected_in": 0, "duplicates_in": 0, "reconnects": 0}]}
//! ```
//!
//! `state` is `connected`, `connecting` or `down`; `last_error` says why a bridge is (or
//! last was) down. The counters are described on [`bridge::Snapshot`].

use crate::bridges::Bridges;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::sync::Arc;

/// The response body.
#[derive(Debug, Serialize)]
pub struct BridgesBody {
    /// One entry per configured bridge, in configuration order.
    pub bridges: Vec<bridge::Snapshot>,
}

/// The router serving `/api/v1/bridges`, merged into the public HTTP router.
pub fn router(bridges: Arc<Bridges>) -> Router {
    Router::new()
        .route("/api/v1/bridges", get(list))
        .with_state(bridges)
}

async fn list(State(bridges): State<Arc<Bridges>>) -> Json<BridgesBody> {
    Json(BridgesBody {
        bridges: bridges.statuses(),
    })
}
