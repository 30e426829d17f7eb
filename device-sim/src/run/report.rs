//! The result of a run: per class and overall counts, ack latency percentiles and error
//! tallies, printed as a summary table and written as JSON with `--json FILE`.
//!
//! Accounting: for telemetry, `sent` counts messages written to a connection (once each,
//! however often a reconnect re-sent them); `acked` counts QoS 1/2 acknowledgements and QoS 0
//! messages once written; `failed` counts QoS 1/2 messages the broker refused or that were
//! still unacknowledged at the end, so at the end `sent = acked + failed`. `dropped` counts
//! messages that never reached a connection (queue full, or still queued at the end), and
//! `skipped` the ticks that fell while a device was offline (no message was made).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::RunError;
use super::display::ms;
use super::stats::Snapshot;

/// A finished run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// Scenario name.
    pub scenario: String,
    /// Scenario file.
    pub file: String,
    /// Broker URL.
    pub broker: String,
    /// The fault proxy's settings, when devices went through it.
    pub proxy: Option<String>,
    /// Seed of the run (give it as `--seed` to repeat the run's choices).
    pub seed: u64,
    /// How long the run lasted, in seconds.
    pub duration_s: f64,
    /// How long it was planned to last.
    pub planned_duration_s: f64,
    /// True when stopped early (Ctrl-C).
    pub interrupted: bool,
    /// Memory of the device-sim process (Linux only).
    #[serde(default)]
    pub mem: Option<Mem>,
    /// All classes together.
    pub overall: Totals,
    /// Each class.
    pub classes: Vec<Totals>,
}

/// Counts of one class, or of all.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    /// Class name (`all` for the total).
    pub name: String,
    /// Devices.
    pub devices: u64,
    /// Devices connected when the run ended.
    pub connected: u64,
    /// Devices that connected at least once.
    pub ever_connected: u64,
    /// Telemetry written to a connection.
    pub sent: u64,
    /// Telemetry acknowledged (QoS 0: written).
    pub acked: u64,
    /// Telemetry refused or unacknowledged at the end.
    pub failed: u64,
    /// Telemetry that never reached a connection.
    pub dropped: u64,
    /// Ticks that fell while offline.
    pub skipped: u64,
    /// Successful reconnections.
    pub reconnects: u64,
    /// Disconnects injected by the scenario.
    pub injected_disconnects: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// Commands received.
    pub commands: u64,
    /// Replies sent.
    pub replies: u64,
    /// Telemetry sent per second over the run.
    pub sent_per_sec: f64,
    /// Ack latency of QoS 1/2 telemetry, when any was acknowledged.
    pub latency_us: Option<Latency>,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
}

/// Resident memory of the device-sim process, read from `/proc/self/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Mem {
    /// RSS when the run's duration ended, before the devices disconnected (`VmRSS`).
    pub rss_bytes: u64,
    /// Highest RSS of the process so far (`VmHWM`).
    pub peak_rss_bytes: u64,
    /// `rss_bytes` divided by the number of devices (the process's fixed part included).
    pub rss_per_device_bytes: u64,
}

impl Mem {
    /// The process's memory now, for a fleet of `devices`; `None` where `/proc` is missing.
    pub fn now(devices: u64) -> Option<Self> {
        let rss = crate::bench::sys::own_rss()?;
        Some(Self {
            rss_bytes: rss,
            peak_rss_bytes: crate::bench::sys::own_peak_rss().unwrap_or(rss).max(rss),
            rss_per_device_bytes: rss / devices.max(1),
        })
    }
}

/// Ack latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Acks measured.
    pub samples: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl Totals {
    /// From a snapshot, over a run of `secs` seconds.
    pub fn from_snapshot(s: &Snapshot, secs: f64) -> Self {
        let latency_us = s
            .latency
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| Latency {
                samples: h.len(),
                p50: h.value_at_quantile(0.5),
                p90: h.value_at_quantile(0.9),
                p99: h.value_at_quantile(0.99),
                max: h.max(),
            });
        Self {
            name: s.name.clone(),
            devices: s.devices,
            connected: s.connected,
            ever_connected: s.ever_connected,
            sent: s.sent,
            acked: s.acked,
            failed: s.failed,
            dropped: s.dropped,
            skipped: s.skipped,
            reconnects: s.reconnects,
            injected_disconnects: s.injected,
            connect_failures: s.connect_failures,
            commands: s.commands,
            replies: s.replies,
            sent_per_sec: if secs > 0.0 {
                s.sent as f64 / secs
            } else {
                0.0
            },
            latency_us,
            errors: s.errors.clone(),
        }
    }
}

impl RunReport {
    /// The summary table printed at the end.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} {} on {}{}: {:.1} s{}, seed {}",
            if self.interrupted {
                "stopped"
            } else {
                "finished"
            },
            self.scenario,
            self.broker,
            self.proxy
                .as_ref()
                .map(|p| format!(" via proxy ({p})"))
                .unwrap_or_default(),
            self.duration_s,
            if self.interrupted {
                format!(" of {:.0} s", self.planned_duration_s)
            } else {
                String::new()
            },
            self.seed
        );
        let rows: Vec<&Totals> = if self.classes.len() > 1 {
            self.classes.iter().chain([&self.overall]).collect()
        } else {
            vec![&self.overall]
        };
        let width = rows.iter().map(|t| t.name.len()).max().unwrap_or(3).max(5);
        let _ = writeln!(
            s,
            "{:width$}  {:>9}  {:>9}  {:>9}  {:>6}  {:>7}  {:>10}  {:>9}  {:>9}  {:>8}  {:>6}",
            "class",
            "connected",
            "sent",
            "acked",
            "failed",
            "dropped",
            "reconnects",
            "ack p50",
            "ack p99",
            "commands",
            "errors"
        );
        for t in rows {
            let (p50, p99) = t
                .latency_us
                .as_ref()
                .map_or(("-".into(), "-".into()), |l| (ms(l.p50), ms(l.p99)));
            let _ = writeln!(
                s,
                "{:width$}  {:>9}  {:>9}  {:>9}  {:>6}  {:>7}  {:>10}  {:>9}  {:>9}  {:>8}  {:>6}",
                t.name,
                format!("{}/{}", t.connected, t.devices),
                t.sent,
                t.acked,
                t.failed,
                t.dropped,
                t.reconnects,
                p50,
                p99,
                t.commands,
                t.errors.values().sum::<u64>()
            );
        }
        if !self.overall.errors.is_empty() {
            let kinds: Vec<String> = self
                .overall
                .errors
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = writeln!(s, "errors: {}", kinds.join(", "));
        }
        if let Some(m) = self.mem {
            let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
            // Below a thousand devices the process's fixed few MB make "per device" misleading.
            let per_device = if self.overall.devices >= 1000 {
                format!(
                    " ({:.1} kB per device)",
                    m.rss_per_device_bytes as f64 / 1024.0
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "memory: {:.1} MB resident at the end{per_device}, peak {:.1} MB",
                mb(m.rss_bytes),
                mb(m.peak_rss_bytes)
            );
        }
        s
    }

    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<(), RunError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| RunError::Report {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        std::fs::write(path, text + "\n").map_err(|e| RunError::Report {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_classes_and_total() {
        let a = Totals {
            name: "press".into(),
            devices: 2,
            connected: 2,
            sent: 10,
            acked: 10,
            latency_us: Some(Latency {
                samples: 10,
                p50: 1500,
                p90: 2000,
                p99: 3000,
                max: 4000,
            }),
            ..Totals::default()
        };
        let mut all = a.clone();
        all.name = "all".into();
        let r = RunReport {
            scenario: "factory".into(),
            file: "factory.toml".into(),
            broker: "mqtt://127.0.0.1:1883".into(),
            proxy: None,
            seed: 7,
            duration_s: 10.0,
            planned_duration_s: 10.0,
            interrupted: false,
            mem: Some(Mem {
                rss_bytes: 40 * 1024 * 1024,
                peak_rss_bytes: 41 * 1024 * 1024,
                rss_per_device_bytes: 4096,
            }),
            overall: all,
            classes: vec![
                a.clone(),
                Totals {
                    name: "line".into(),
                    ..a
                },
            ],
        };
        let s = r.summary();
        assert!(
            s.starts_with("finished factory on mqtt://127.0.0.1:1883: 10.0 s, seed 7"),
            "{s}"
        );
        assert!(s.contains("press"), "{s}");
        assert!(s.contains("1.5 ms"), "{s}");
        assert!(
            s.ends_with("memory: 40.0 MB resident at the end, peak 41.0 MB\n"),
            "{s}"
        );
        assert_eq!(s.lines().count(), 6, "{s}");
        let mut big = r.clone();
        big.overall.devices = 10_000;
        assert!(
            big.summary()
                .contains("at the end (4.0 kB per device), peak"),
            "{}",
            big.summary()
        );
    }
}
