//! `device-sim run SCENARIO.toml`: a fleet of simulated devices, described by a scenario
//! file, publishing telemetry, answering commands and suffering scripted faults against any
//! MQTT broker, with live progress and a final report.
//!
//! Each device is one tokio task holding one lean MQTT connection of its own (3.1.1 or 5, over
//! TCP, TLS, WebSocket or secure WebSocket; packets encoded with rumqttc's `mqttbytes`), about
//! 3 kB per idle device, so one process holds tens of thousands. Every telemetry message
//! carries a [`crate::stamp::Stamp`] whose sequence number runs 1, 2, 3, ... per device over
//! the whole run, reconnects included, so `device-sim verify` can find what was lost,
//! duplicated or reordered.
//!
//! ```no_run
//! # async fn demo() -> Result<(), device_sim::run::RunError> {
//! use device_sim::run::{self, RunOptions};
//! let scenario = device_sim::scenario::load("device-sim/scenarios/minimal.toml".as_ref())?;
//! let stop = run::CancellationToken::new();
//! let report = run::run(&scenario, RunOptions::default(), stop).await?;
//! println!("{}", report.summary());
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`cli`]: the `device-sim run` arguments and command.
//! - `device`: one device over the run (connect, backoff, faults); `session`: one connection
//!   (publish, acks, commands); `link`: one MQTT 3.1.1/5 connection (protocol core, codec,
//!   TCP/TLS/WebSocket streams); `outbox`: messages until written or acknowledged;
//!   [`schedule`]: jitter, backoff, fault timing.
//! - `tls`: rustls client configuration from PEM files.
//! - [`stats`]: live counters; [`display`]: progress; [`report`]: summary and JSON.

pub mod cli;
mod device;
pub mod display;
mod link;
mod outbox;
pub mod report;
pub mod schedule;
mod session;
pub mod stats;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
pub use tokio_util::sync::CancellationToken;

use crate::proxy::{Faults, Proxy};
use crate::scenario::{Broker, Scenario, ScenarioError};
use device::{ClassPlan, Device};
pub use display::DisplayMode;
pub use report::{Latency, Mem, RunReport, Totals};
use stats::{ClassStats, Snapshot};

/// Extra time, after the drain, for devices to disconnect before they are abandoned.
const EXIT_GRACE: Duration = Duration::from_secs(3);
/// Open files kept for everything that is not a device's connection.
const FD_MARGIN: u64 = 256;

/// Why a run could not start or its report could not be written. Broker trouble during the
/// run is not an error: it is retried, counted and reported.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario file is unreadable or invalid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The broker's host name did not resolve (needed to start the fault proxy).
    #[error("cannot resolve broker {broker}: {detail}; check the broker host")]
    Resolve {
        /// The broker URL.
        broker: String,
        /// What the resolver said.
        detail: String,
    },
    /// The fault proxy could not start.
    #[error("fault proxy: {0}")]
    Proxy(#[from] crate::proxy::ProxyError),
    /// A TLS file is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The open-file limit is too low for the fleet, and cannot be raised that far.
    #[error(
        "this scenario needs {needed} open files ({devices} devices{via_proxy}) but the limit \
         is {got}; raise the hard limit (`ulimit -Hn {needed}` as root, or LimitNOFILE= in a \
         systemd unit) or run fewer devices"
    )]
    Limits {
        /// Files needed: one per device (three through the fault proxy) plus a margin.
        needed: u64,
        /// Devices in the scenario.
        devices: u64,
        /// `", 3 files each through the fault proxy"` when the proxy is on.
        via_proxy: &'static str,
        /// The soft limit after trying to raise it.
        got: u64,
    },
    /// The JSON report could not be written.
    #[error("cannot write report {}: {detail}", path.display())]
    Report {
        /// The `--json` file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

/// How to run a scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Overrides the scenario's broker.
    pub broker: Option<Broker>,
    /// Overrides the scenario's duration.
    pub duration: Option<Duration>,
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// Progress display.
    pub display: DisplayMode,
    /// At the end, how long connected devices may wait for acks of messages in flight.
    pub drain: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            broker: None,
            duration: None,
            seed: None,
            display: DisplayMode::Off,
            drain: Duration::from_secs(3),
        }
    }
}

/// Runs `scenario` until its duration ends or `stop` is cancelled, then disconnects every
/// device and returns the report.
pub async fn run(
    scenario: &Scenario,
    opts: RunOptions,
    stop: CancellationToken,
) -> Result<RunReport, RunError> {
    let broker = opts
        .broker
        .clone()
        .or_else(|| scenario.broker.clone())
        .unwrap_or_else(default_broker);
    let duration = opts.duration.unwrap_or(scenario.duration);
    let seed = opts.seed.or(scenario.seed).unwrap_or_else(rand::random);
    raise_fd_limit(scenario)?;
    let (proxy, target) = match &scenario.proxy {
        Some(p) => {
            let upstream = resolve(&broker).await?;
            let faults = Faults {
                latency: p.latency,
                jitter: p.jitter,
                loss: p.loss,
                rto: p.rto.unwrap_or(Faults::default().rto),
                max_retransmits: p
                    .max_retransmits
                    .unwrap_or(Faults::default().max_retransmits),
                cut: p.cut,
                bandwidth: p.bandwidth,
                seed: Some(seed),
            };
            let listen = SocketAddr::from(([127, 0, 0, 1], 0));
            let proxy = Proxy::start(listen, upstream, faults.clone()).await?;
            let port = proxy.local_addr().port();
            (
                Some((proxy, faults.describe())),
                broker.via("127.0.0.1", port),
            )
        }
        None => (None, broker.clone()),
    };
    let run_start = Instant::now();
    let mut plans = Vec::with_capacity(scenario.classes.len());
    for (index, class) in scenario.classes.iter().enumerate() {
        let tls = if broker.uses_tls() {
            Some(tls::client_config(class.tls.as_ref())?)
        } else {
            None
        };
        let storm_members = class
            .faults
            .storms
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let storm_seed = schedule::device_seed(seed, index, u64::MAX - i as u64);
                schedule::storm_members(storm_seed, class.count, s.fraction)
            })
            .collect();
        plans.push(Arc::new(ClassPlan {
            index,
            class: class.clone(),
            stats: Arc::new(ClassStats::new(&class.name, u64::from(class.count))),
            broker: target.clone(),
            tls,
            run_start,
            seed,
            storm_members,
            drain: opts.drain,
        }));
    }
    let classes: Arc<[Arc<ClassStats>]> = plans.iter().map(|p| p.stats.clone()).collect();

    let devices_stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let total = scenario.devices().max(1);
    let mut k = 0u64;
    for plan in &plans {
        for n in 1..=u64::from(plan.class.count) {
            let offset = scenario.ramp_up.mul_f64(k as f64 / total as f64);
            let device = Device::new(plan.clone(), n, run_start + offset);
            tasks.spawn(device.run(devices_stop.clone()));
            k += 1;
        }
    }

    let display_stop = CancellationToken::new();
    let header = format!(
        "device-sim run {} -> {}{}",
        scenario.name,
        broker,
        proxy
            .as_ref()
            .map(|(_, f)| format!(" via proxy ({f})"))
            .unwrap_or_default()
    );
    let display = tokio::spawn(display::show(
        opts.display,
        header,
        classes.clone(),
        duration,
        display_stop.clone(),
    ));

    let interrupted = tokio::select! {
        _ = tokio::time::sleep_until(run_start + duration) => false,
        _ = stop.cancelled() => true,
    };
    let ended = Instant::now();
    let at_end: Vec<u64> = classes.iter().map(|c| c.snapshot().connected).collect();
    let mem = Mem::now(scenario.devices());
    // The progress block stays as it was; what follows (Ctrl-C notice, summary) goes below.
    display_stop.cancel();
    let _ = display.await;
    devices_stop.cancel();
    let deadline = Instant::now() + opts.drain + EXIT_GRACE;
    while let Ok(Some(_)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {}
    let abandoned = tasks.len();
    tasks.shutdown().await;
    let proxy_text = match proxy {
        Some((p, text)) => {
            p.shutdown().await;
            Some(text)
        }
        None => None,
    };

    let secs = (ended - run_start).as_secs_f64();
    let mut parts: Vec<Snapshot> = classes.iter().map(|c| c.snapshot()).collect();
    for (part, connected) in parts.iter_mut().zip(at_end) {
        part.connected = connected;
    }
    if abandoned > 0 {
        if let Some(first) = parts.first_mut() {
            *first
                .errors
                .entry("not_disconnected_in_time".into())
                .or_insert(0) += abandoned as u64;
        }
    }
    let overall = Snapshot::total("all", &parts);
    Ok(RunReport {
        scenario: scenario.name.clone(),
        file: scenario.file.display().to_string(),
        broker: broker.to_string(),
        proxy: proxy_text,
        seed,
        duration_s: secs,
        planned_duration_s: duration.as_secs_f64(),
        interrupted,
        mem,
        overall: Totals::from_snapshot(&overall, secs),
        classes: parts
            .iter()
            .map(|p| Totals::from_snapshot(p, secs))
            .collect(),
    })
}

/// The broker used when neither `--broker` nor the scenario names one: the gateway's (and
/// Mosquitto's) default, `mqtt://127.0.0.1:1883`.
pub fn default_broker() -> Broker {
    Broker {
        transport: crate::scenario::Transport::Tcp,
        host: "127.0.0.1".into(),
        port: 1883,
        path: String::new(),
    }
}

/// Raises the open-file limit for the fleet: a socket per device, and two more per device
/// when they go through the in-process fault proxy.
fn raise_fd_limit(scenario: &Scenario) -> Result<(), RunError> {
    let devices = scenario.devices();
    let (per_device, via_proxy) = match scenario.proxy {
        Some(_) => (3, ", 3 files each through the fault proxy"),
        None => (1, ""),
    };
    let needed = devices.saturating_mul(per_device) + FD_MARGIN;
    crate::bench::sys::ensure_fd_limit(needed)
        .map(|_| ())
        .map_err(|e| RunError::Limits {
            needed,
            devices,
            via_proxy,
            got: match e {
                crate::bench::BenchError::FdLimit { got, .. } => got,
                _ => 0,
            },
        })
}

async fn resolve(broker: &Broker) -> Result<SocketAddr, RunError> {
    let err = |detail: String| RunError::Resolve {
        broker: broker.to_string(),
        detail,
    };
    let mut addrs = tokio::net::lookup_host((broker.host.as_str(), broker.port))
        .await
        .map_err(|e| err(e.to_string()))?;
    addrs.next().ok_or_else(|| err("no address".into()))
}
