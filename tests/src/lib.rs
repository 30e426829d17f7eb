//! Fixtures shared by the end-to-end tests: a gateway started in-process on ephemeral
//! loopback ports with its own temporary data directory, MQTT client helpers, and a patience
//! helper for conditions that become true eventually.
//!
//! ```no_run
//! # async fn demo() {
//! let gw = e2e_tests::GatewayHarness::new().start().await;
//! let addr = gw.mqtt_addr();
//! # let _ = addr;
//! gw.stop().await;
//! # }
//! ```

pub mod bridge;
pub mod http;
pub mod mosquitto;
pub mod mqtt;
pub mod proxy;
pub mod raw;
pub mod sse;
pub mod ws;

use gateway::config::Config;
use gateway::server::Gateway;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Builds a gateway for one test.
pub struct GatewayHarness {
    config: Config,
    dir: Option<tempfile::TempDir>,
}

impl Default for GatewayHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayHarness {
    /// Defaults: every listener on 127.0.0.1 port 0, a fresh temporary data directory.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::default();
        config.data.dir = dir.path().to_path_buf();
        config.mqtt.listen = "127.0.0.1:0".into();
        config.http.listen = "127.0.0.1:0".into();
        config.admin.listen = "127.0.0.1:0".into();
        GatewayHarness {
            config,
            dir: Some(dir),
        }
    }

    /// Changes the configuration before start.
    pub fn with_config(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    /// Uses an existing data directory (restarts); the caller keeps it alive.
    pub fn with_data_dir(mut self, dir: &Path) -> Self {
        self.config.data.dir = dir.to_path_buf();
        self.dir = None;
        self
    }

    /// Starts the gateway; panics with the reason if it cannot.
    pub async fn start(self) -> TestGateway {
        let gw = Gateway::start(self.config.clone())
            .await
            .expect("gateway starts");
        TestGateway {
            gw,
            config: self.config,
            _dir: self.dir,
        }
    }
}

/// A running gateway and what a test needs to reach it.
pub struct TestGateway {
    gw: Gateway,
    config: Config,
    _dir: Option<tempfile::TempDir>,
}

impl TestGateway {
    /// The bound MQTT address.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.gw.mqtt_addr()
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.gw.http_addr()
    }

    /// The bound admin address (`/metrics`, `/healthz`, `/readyz`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.gw.admin_addr()
    }

    /// The data directory in use.
    pub fn data_dir(&self) -> PathBuf {
        self.config.data.dir.clone()
    }

    /// Graceful shutdown.
    pub async fn stop(self) {
        self.gw.shutdown().await;
    }

    /// Graceful shutdown, then a new gateway on the same data directory (and the same
    /// configuration apart from fresh ports).
    pub async fn restart(self) -> TestGateway {
        let TestGateway { gw, config, _dir } = self;
        gw.shutdown().await;
        let gw = Gateway::start(config.clone())
            .await
            .expect("gateway restarts");
        TestGateway { gw, config, _dir }
    }
}

/// Polls `cond` every 20 ms until it is true or `patience` runs out.
pub async fn eventually(patience: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
