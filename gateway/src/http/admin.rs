//! The admin listener: `/healthz`, `/readyz` and `/metrics`.
//!
//! - `/healthz` answers 200 whenever the process can answer at all (liveness).
//! - `/readyz` answers 200 once the log is open and every listener is bound, and 503 before
//!   that and from the moment shutdown begins (readiness: stop sending traffic here).
//! - `/metrics` is the Prometheus text format. It reports only what the gateway actually
//!   measures: uptime, readiness, the log's epoch, sequence numbers and fsyncs, connected MQTT
//!   clients, `/mqtt` WebSocket connections, browser connections per transport, bridges.

use super::Stats;
use crate::broker::Broker;
use crate::log::MessageLog;
use crate::log::embedded::EmbeddedLog;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    /// Readiness and counters.
    pub stats: Arc<Stats>,
    /// The log, for its positions.
    pub log: Arc<dyn MessageLog>,
    /// The embedded store behind `log`, when that is what runs, for its fsync count.
    pub embedded: Option<Arc<EmbeddedLog>>,
    /// The broker, for its client count.
    pub broker: Arc<Broker>,
    /// The bridges to remote brokers, for their state and counters.
    pub bridges: Arc<crate::bridges::Bridges>,
    /// The browser side, for its open connections.
    pub hub: Arc<crate::stream::StreamHub>,
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.stats.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting up or shutting down\n",
        )
    }
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&s),
    )
}

/// Renders the metrics in the Prometheus text exposition format.
pub fn render(s: &AdminState) -> String {
    let mut out = String::with_capacity(1024);
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    metric(
        "gateway_uptime_seconds",
        "gauge",
        "Seconds since the gateway started.",
        format!("{:.3}", s.stats.started.elapsed().as_secs_f64()),
    );
    metric(
        "gateway_ready",
        "gauge",
        "1 while the log is open and every listener is bound, else 0.",
        u8::from(s.stats.is_ready()).to_string(),
    );
    metric(
        "gateway_log_epoch",
        "gauge",
        "Epoch of the message store; changes only when history was lost.",
        s.log.epoch().to_string(),
    );
    metric(
        "gateway_log_released_seq",
        "gauge",
        "Highest sequence number released to subscribers.",
        s.log.released().to_string(),
    );
    metric(
        "gateway_log_first_seq",
        "gauge",
        "Lowest sequence number still in history.",
        s.log.first_seq().to_string(),
    );
    if let Some(embedded) = &s.embedded {
        metric(
            "gateway_log_fsyncs_total",
            "counter",
            "fsyncs issued by the log writer; with group commit far fewer than reliable messages.",
            embedded.fsync_count().to_string(),
        );
    }
    metric(
        "gateway_mqtt_clients",
        "gauge",
        "MQTT clients connected now (TCP and WebSocket, after CONNECT).",
        s.broker.client_count().to_string(),
    );
    metric(
        "gateway_mqtt_ws_connections",
        "gauge",
        "MQTT over WebSocket (/mqtt) connections open now.",
        s.stats.mqtt_ws_open.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "gateway_mqtt_ws_connections_total",
        "counter",
        "MQTT over WebSocket (/mqtt) connections accepted since start.",
        s.stats.mqtt_ws_total.load(Ordering::Relaxed).to_string(),
    );
    let open = &s.hub.open;
    let _ = write!(
        out,
        "# HELP gateway_browser_connections Browser connections open now, by transport \
         (poll: requests waiting).\n# TYPE gateway_browser_connections gauge\n"
    );
    for (transport, n) in [("ws", &open.ws), ("sse", &open.sse), ("poll", &open.poll)] {
        let _ = writeln!(
            out,
            "gateway_browser_connections{{transport=\"{transport}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
    s.bridges.render_metrics(&mut out);
    out
}
