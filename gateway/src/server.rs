//! Server wiring: turns a [`Config`] into a running gateway and shuts it down in order.
//!
//! [`Gateway::start`] binds the three listeners (MQTT, HTTP, admin) first, so a taken port
//! fails fast before anything touches the disk; then creates the data directory, opens the
//! log, starts the broker and serves. Each bound address is logged once.
//!
//! [`Gateway::shutdown`] is the reverse:
//! 1. `/readyz` turns 503, the MQTT and HTTP listeners stop accepting;
//! 2. bridges stop (each waits, bounded, for the remote to acknowledge what is in flight and
//!    commits its cursor);
//! 3. the broker disconnects every client (MQTT 5: DISCONNECT 0x8B) and saves sessions;
//! 4. remaining `/mqtt` WebSocket tasks get a bounded time to finish;
//! 5. the log is flushed and closed;
//! 6. the admin listener stops last, so health checks see the whole shutdown.
//!
//! Tests start it with every listener on `127.0.0.1:0` and read the ports back with
//! [`Gateway::mqtt_addr`] and friends.

use crate::bridges::Bridges;
use crate::broker::Broker;
use crate::config::{Config, ConfigError};
use crate::http::{self, HttpState, Stats, admin};
use crate::log::embedded::{EmbeddedLog, LogOptions};
use crate::log::{LogError, MessageLog};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long shutdown waits for `/mqtt` WebSocket connections to wind down after the broker
/// has disconnected its clients.
const WS_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid; the message names the setting.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error(
        "cannot listen on {addr} ({field}): {error}; is another process using the port? \
         Choose another address, or port 0 for a free one"
    )]
    Bind {
        /// The setting that gave the address, e.g. `mqtt.listen`.
        field: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error (part of the message, not a separate source).
        error: std::io::Error,
    },
    /// The data directory could not be created.
    #[error(
        "cannot create the data directory {path}: {error}; set data.dir or --data-dir to a \
         writable directory"
    )]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error (part of the message, not a separate source).
        error: std::io::Error,
    },
    /// The log could not be opened.
    #[error("cannot open the message log in {path}: {error}")]
    Log {
        /// The data directory.
        path: PathBuf,
        /// What the log reported (part of the message, not a separate source).
        error: LogError,
    },
}

/// A running gateway. Dropping it without [`Gateway::shutdown`] leaves its tasks running
/// until the runtime ends; call `shutdown` for an orderly stop.
pub struct Gateway {
    mqtt_addr: SocketAddr,
    http_addr: SocketAddr,
    admin_addr: SocketAddr,
    /// Cancelled to make the MQTT and HTTP listeners stop accepting.
    accept_stop: CancellationToken,
    /// Cancelled last, to stop the admin listener.
    admin_stop: CancellationToken,
    /// The MQTT and HTTP listener tasks, and `/mqtt` WebSocket connection tasks.
    tasks: TaskTracker,
    /// The admin listener task.
    admin_task: TaskTracker,
    broker: Arc<Broker>,
    log: Arc<EmbeddedLog>,
    stats: Arc<Stats>,
    /// Bridges to remote brokers; stopped before the broker and the log.
    bridges: Arc<Bridges>,
}

impl Gateway {
    /// Validates `config`, binds the listeners, opens the log in `config.data.dir` and starts
    /// serving. Must be called inside a tokio runtime.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        config.validate()?;
        let [mqtt_a, http_a, admin_a] = config.listen_addrs()?;
        let (mqtt_l, mqtt_addr) = bind(mqtt_a).await?;
        let (http_l, http_addr) = bind(http_a).await?;
        let (admin_l, admin_addr) = bind(admin_a).await?;

        let dir = config.data.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|error| StartError::DataDir {
            path: dir.clone(),
            error,
        })?;
        let opts = LogOptions {
            max_batch: config.log.max_batch,
            ..LogOptions::default()
        };
        let rules = Arc::new(config.namespace_rules());
        let (log, feed) =
            EmbeddedLog::open(&dir, rules, opts).map_err(|error| StartError::Log {
                path: dir.clone(),
                error,
            })?;
        let dyn_log: Arc<dyn MessageLog> = log.clone();
        let broker = Broker::start(dyn_log.clone(), feed, config.mqtt.clone());
        crate::mqtt::schedule_stored_expiries(&broker);
        // Before the listeners accept anything, so a new bridge's cursor starts before the
        // first message it should forward.
        let bridges = Arc::new(Bridges::start(
            &config.bridge,
            dyn_log.clone(),
            &broker,
            config.topic_limits(),
        ));

        let stats = Arc::new(Stats::new());
        let accept_stop = CancellationToken::new();
        let admin_stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let admin_task = TaskTracker::new();

        tasks.spawn(crate::mqtt::serve_tcp(
            mqtt_l,
            broker.clone(),
            accept_stop.clone(),
        ));
        tracing::info!("mqtt listening on {mqtt_addr}");

        let hub = crate::stream::StreamHub::start(broker.clone(), &config);
        let http_app = http::router(HttpState {
            broker: broker.clone(),
            stats: stats.clone(),
            tasks: tasks.clone(),
            max_packet_size: config.mqtt.max_packet_size,
            hub: hub.clone(),
        })
        .merge(http::bridges::router(bridges.clone()));
        tasks.spawn(serve_logged("http", http_l, http_app, accept_stop.clone()));
        tracing::info!(
            "http listening on {http_addr} (/ws, /sse, /poll, /api/v1, /client.js; MQTT over WebSocket at /mqtt)"
        );

        let admin_app = admin::router(admin::AdminState {
            stats: stats.clone(),
            log: dyn_log,
            embedded: Some(log.clone()),
            broker: broker.clone(),
            bridges: bridges.clone(),
            hub,
        });
        admin_task.spawn(serve_logged(
            "admin",
            admin_l,
            admin_app,
            admin_stop.clone(),
        ));
        tracing::info!("admin listening on {admin_addr} (/healthz, /readyz, /metrics)");

        stats.set_ready(true);
        Ok(Gateway {
            mqtt_addr,
            http_addr,
            admin_addr,
            accept_stop,
            admin_stop,
            tasks,
            admin_task,
            broker,
            log,
            stats,
            bridges,
        })
    }

    /// The bound MQTT (TCP) address.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }

    /// The bound HTTP address (MQTT over WebSocket at `/mqtt`).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound admin address (`/healthz`, `/readyz`, `/metrics`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The broker, for in-process inspection.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// The bridges to remote brokers.
    pub fn bridges(&self) -> &Arc<Bridges> {
        &self.bridges
    }

    /// The message log.
    pub fn log(&self) -> Arc<dyn MessageLog> {
        self.log.clone()
    }

    /// Stops the gateway in order (see the module docs) and returns once the log is closed.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.stats.set_ready(false);
        self.accept_stop.cancel();
        self.bridges.stop().await;
        self.broker.shutdown().await;
        self.tasks.close();
        if tokio::time::timeout(WS_DRAIN_TIMEOUT, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "listeners or /mqtt WebSocket connections still running {} s after shutdown began",
                WS_DRAIN_TIMEOUT.as_secs()
            );
        }
        self.log.close().await;
        self.admin_stop.cancel();
        self.admin_task.close();
        self.admin_task.wait().await;
        tracing::info!("shutdown complete");
    }
}

/// Pending connections a listener queues before the kernel refuses more (capped by the
/// system's `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds one listener and reads back its address (the real port when `addr` has port 0);
/// `field` names the setting in errors.
async fn bind(
    (field, addr): (&'static str, SocketAddr),
) -> Result<(TcpListener, SocketAddr), StartError> {
    let err = |error| StartError::Bind { field, addr, error };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(err)?;
    // Restarting on the same port must not wait for old connections in TIME_WAIT.
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    // A deep accept queue: thousands of devices reconnecting at once (after a network or
    // gateway outage) should wait in the queue, not be dropped into SYN retries.
    let listener = socket.listen(LISTEN_BACKLOG).map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    Ok((listener, bound))
}

async fn serve_logged(
    name: &'static str,
    listener: TcpListener,
    app: axum::Router,
    stop: CancellationToken,
) {
    if let Err(e) = http::serve(listener, app, stop).await {
        tracing::error!(listener = name, error = %e, "listener failed");
    }
}
