//! The HTTP side of the gateway: the public HTTP listener and the admin listener.
//!
//! The public listener serves MQTT over WebSocket at `/mqtt` and the browser side: the
//! JSON WebSocket protocol at `/ws` ([`crate::ws`]), SSE at `/sse` ([`crate::sse`]),
//! long-poll at `/poll`, REST under `/api/v1`, and the JS client at `/client.js`. The admin listener serves `/healthz`,
//! `/readyz` and `/metrics`. Both are plain axum routers; [`serve`] runs one on a bound
//! listener until a shutdown token fires.
//!
//! Layout:
//! - `mod.rs`: the public router, shared state and [`serve`].
//! - `mqtt_ws.rs`: MQTT over WebSocket (`/mqtt`, subprotocol `mqtt`).
//! - `admin.rs`: health, readiness and Prometheus metrics.
//! - `bridges.rs`: `GET /api/v1/bridges`, the bridges' status.
//! - `poll.rs`: long-poll.
//! - `api/`: the REST API.
//! - `assets.rs`: the JS client and its type declarations.

pub mod admin;
pub mod api;
mod assets;
pub mod bridges;
pub mod mqtt_ws;
pub mod poll;

use crate::broker::Broker;
use axum::Router;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Counters and flags the HTTP handlers update and the admin listener reports.
#[derive(Debug)]
pub struct Stats {
    /// When the gateway started, for `gateway_uptime_seconds`.
    pub started: Instant,
    /// True once the log is open and every listener is bound; false again when shutdown
    /// begins. Drives `/readyz`.
    pub ready: AtomicBool,
    /// `/mqtt` WebSocket connections currently open.
    pub mqtt_ws_open: AtomicU64,
    /// `/mqtt` WebSocket connections accepted since start.
    pub mqtt_ws_total: AtomicU64,
}

impl Stats {
    /// Fresh counters, not ready, started now.
    pub fn new() -> Self {
        Stats {
            started: Instant::now(),
            ready: AtomicBool::new(false),
            mqtt_ws_open: AtomicU64::new(0),
            mqtt_ws_total: AtomicU64::new(0),
        }
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Sets readiness.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

/// What the public HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// The broker MQTT-over-WebSocket connections are served by.
    pub broker: Arc<Broker>,
    /// Counters reported on the admin listener.
    pub stats: Arc<Stats>,
    /// Tracks long-lived connection tasks (upgraded WebSockets), so shutdown can wait for
    /// them to finish.
    pub tasks: TaskTracker,
    /// Largest MQTT packet accepted (`mqtt.max_packet_size`); bounds WebSocket messages on
    /// `/mqtt`.
    pub max_packet_size: u32,
    /// The browser subscription engine behind `/ws`, `/sse`, `/poll` and `/api/v1`.
    pub hub: Arc<crate::stream::StreamHub>,
}

/// The public HTTP router: `/`, `/mqtt`, `/ws`, `/sse`, `/poll`, `/api/v1/…`,
/// `/client.js`.
pub fn router(state: HttpState) -> Router {
    let hub = state.hub.clone();
    let ws = Router::new()
        .route("/ws", get(crate::ws::upgrade))
        .with_state(crate::ws::WsState {
            hub: hub.clone(),
            tasks: state.tasks.clone(),
        });
    let cors = cors_layer(&hub.config);
    let browser = Router::new()
        .route("/sse", get(crate::sse::handler))
        .route("/poll", get(poll::handler))
        .with_state(hub.clone())
        .nest("/api/v1", api::router(hub))
        // A dashboard on another origin imports the client module too.
        .route("/client.js", get(assets::client_js))
        .route("/client.d.ts", get(assets::client_dts))
        .layer(cors);
    Router::new()
        .route("/", get(index))
        .route("/mqtt", get(mqtt_ws::upgrade))
        .with_state(state)
        .merge(ws)
        .merge(browser)
}

/// CORS for the browser routes: the configured origins may read answers and send JSON, with
/// the headers the protocol uses; preflights are cached for an hour.
fn cors_layer(config: &crate::config::BrowserConfig) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origin = if config.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            config
                .allowed_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("last-event-id"),
        ])
        .max_age(std::time::Duration::from_secs(3600))
}

/// What `GET /` says.
const INDEX: &str = "\
IoT gateway: MQTT devices and browser dashboards on one sequenced, durable log.

MQTT over WebSocket: /mqtt (subprotocol \"mqtt\")
Browser protocol: /ws (WebSocket, JSON), /sse (Server-Sent Events), /poll (long-poll)
REST: /api/v1 (OpenAPI at /api/v1/openapi.json); JS client: /client.js
MQTT over TCP, health (/healthz, /readyz) and metrics (/metrics) are on their own listeners.
";

async fn index() -> &'static str {
    INDEX
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then stops accepting and waits
/// for open HTTP requests to finish. Upgraded connections (WebSockets) are not waited for
/// here; they are tracked by their owner. Peers' addresses reach handlers as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}
