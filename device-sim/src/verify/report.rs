//! The result of `device-sim verify`: totals, latency percentiles, per-device rows and the
//! verdict, printed as tables and written as JSON (`--json FILE`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::VerifyError;
use crate::bench::report::render_table;
use crate::bench::stats::LatencySummary;

/// Everything one verification run found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The `--source` URL.
    pub source: String,
    /// The filters subscribed to.
    pub filters: Vec<String>,
    /// Wall time of the run, seconds.
    pub duration_secs: f64,
    /// True when no problem was found.
    pub passed: bool,
    /// Each problem in one sentence; empty when `passed`.
    pub problems: Vec<String>,
    /// Counts over all devices.
    pub totals: Totals,
    /// End-to-end latency (receive time − stamp time) of first arrivals, in microseconds.
    pub latency_us: Latency,
    /// One row per device, worst first (lost, then reordered, then duplicates).
    pub devices: Vec<DeviceReport>,
    /// The continuity notices received (`reset` frames as JSON text, lost MQTT sessions).
    pub resets: Vec<String>,
    /// Transport errors by kind (connections lost, error frames, ...).
    pub errors: BTreeMap<String, u64>,
}

/// Counts over all devices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Devices seen.
    pub devices: u64,
    /// `--expect-devices`, when given.
    pub expected_devices: Option<u64>,
    /// `--expect-last-seq`, when given.
    pub expected_last_seq: Option<u64>,
    /// Stamped messages received, duplicates included.
    pub received: u64,
    /// Distinct (device, seq) received.
    pub unique: u64,
    /// Messages missing: gaps in the sequences (and the missing ends with
    /// `--expect-last-seq`).
    pub lost: u64,
    /// Messages received more than once.
    pub duplicates: u64,
    /// Messages received after a later one of the same device.
    pub reordered: u64,
    /// Messages without a stamp (not counted anywhere else).
    pub unstamped: u64,
    /// Retained messages sent on subscribe (not part of the live stream; not counted).
    pub retained: u64,
    /// Continuity notices: gateway `reset` events, or an MQTT session the broker did not keep.
    pub resets: u64,
    /// Messages the gateway said it dropped for this (too slow, QoS 0) connection.
    pub dropped: u64,
    /// Reconnections after the connection was lost.
    pub reconnects: u64,
    /// Reconnections the verifier made on purpose (`--disconnect-every/-after`).
    pub planned_disconnects: u64,
    /// Stamps from the future (sender clock ahead of ours); their latency counts as 0.
    pub clock_skew: u64,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl From<LatencySummary> for Latency {
    fn from(s: LatencySummary) -> Self {
        Self {
            count: s.count,
            min: s.min_us,
            mean: s.mean_us,
            p50: s.p50_us,
            p90: s.p90_us,
            p99: s.p99_us,
            p999: s.p999_us,
            max: s.max_us,
        }
    }
}

/// One device's accounting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceReport {
    /// Device id from the stamp.
    pub device: String,
    /// Lowest sequence number expected (1 with `--from-start`, else the first seen).
    pub first_seq: u64,
    /// Highest sequence number seen.
    pub highest_seq: u64,
    /// Arrivals, duplicates included.
    pub received: u64,
    /// Messages missing.
    pub lost: u64,
    /// The first missing ranges, inclusive.
    pub lost_ranges: Vec<(u64, u64)>,
    /// Arrivals of a number already seen.
    pub duplicates: u64,
    /// Arrivals after a later message.
    pub reordered: u64,
    /// Mean latency of first arrivals, microseconds.
    pub latency_mean_us: f64,
    /// Largest latency of a first arrival, microseconds.
    pub latency_max_us: f64,
}

impl DeviceReport {
    /// Problems of this device, for sorting: lost, reordered, duplicates.
    pub fn badness(&self) -> (u64, u64, u64) {
        (self.lost, self.reordered, self.duplicates)
    }
}

impl Report {
    /// The report as tables: verdict, totals, latency, then the `top` worst devices.
    pub fn render(&self, top: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "verify {} · filters {} · {:.1} s",
            self.source,
            self.filters.join(" "),
            self.duration_secs
        );
        let t = &self.totals;
        let expected = |n: Option<u64>| n.map(|n| format!(" (expected {n})")).unwrap_or_default();
        let rate = if self.duration_secs > 0.0 {
            t.received as f64 / self.duration_secs
        } else {
            0.0
        };
        let rows: Vec<Vec<String>> = [
            (
                "devices",
                format!("{}{}", t.devices, expected(t.expected_devices)),
            ),
            ("received", format!("{} ({rate:.1}/s)", t.received)),
            ("unique", t.unique.to_string()),
            ("lost", t.lost.to_string()),
            ("duplicates", t.duplicates.to_string()),
            ("reordered", t.reordered.to_string()),
            ("unstamped", t.unstamped.to_string()),
            ("resets", t.resets.to_string()),
            ("dropped", t.dropped.to_string()),
            (
                "reconnects",
                format!("{} (+{} planned)", t.reconnects, t.planned_disconnects),
            ),
        ]
        .into_iter()
        .map(|(k, v)| vec![k.to_string(), v])
        .collect();
        out.push_str(&render_table(&["overall", "value"], &rows));
        let l = &self.latency_us;
        let ms = |us: f64| format!("{:.2}", us / 1000.0);
        let _ = writeln!(
            out,
            "latency ms: p50 {} · p90 {} · p99 {} · p99.9 {} · max {} · mean {} ({} samples{})",
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max),
            ms(l.mean),
            l.count,
            if t.clock_skew > 0 {
                format!(", {} with the sender clock ahead", t.clock_skew)
            } else {
                String::new()
            }
        );
        if !self.devices.is_empty() {
            let shown = self.devices.len().min(top);
            let rows: Vec<Vec<String>> = self
                .devices
                .iter()
                .take(shown)
                .map(|d| {
                    vec![
                        d.device.clone(),
                        d.received.to_string(),
                        d.lost.to_string(),
                        d.duplicates.to_string(),
                        d.reordered.to_string(),
                        format!("{}..{}", d.first_seq, d.highest_seq),
                        ms(d.latency_mean_us),
                        ms(d.latency_max_us),
                        lost_ranges(&d.lost_ranges),
                    ]
                })
                .collect();
            if shown < self.devices.len() {
                let _ = writeln!(
                    out,
                    "worst {shown} of {} devices (--top to see more):",
                    self.devices.len()
                );
            }
            out.push_str(&render_table(
                &[
                    "device",
                    "received",
                    "lost",
                    "dup",
                    "reord",
                    "seq",
                    "mean ms",
                    "max ms",
                    "lost seqs",
                ],
                &rows,
            ));
        }
        for (kind, n) in &self.errors {
            let _ = writeln!(out, "transport: {kind}: {n}");
        }
        for reset in &self.resets {
            let _ = writeln!(out, "reset: {reset}");
        }
        if self.passed {
            let _ = writeln!(out, "PASS");
        } else {
            let _ = writeln!(out, "FAIL: {}", self.problems.join("; "));
        }
        out
    }

    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<(), VerifyError> {
        let text = serde_json::to_string_pretty(self).map_err(|source| VerifyError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        std::fs::write(path, text + "\n").map_err(|source| VerifyError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads a report written by [`Report::write_json`].
    pub fn read_json(path: &Path) -> Result<Self, VerifyError> {
        let text = std::fs::read_to_string(path).map_err(|source| VerifyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| VerifyError::Json {
            path: path.to_path_buf(),
            source,
        })
    }
}

fn lost_ranges(ranges: &[(u64, u64)]) -> String {
    let parts: Vec<String> = ranges
        .iter()
        .take(5)
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    let more = if ranges.len() > 5 { " …" } else { "" };
    format!("{}{more}", parts.join(","))
}
