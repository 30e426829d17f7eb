//! Live counters of a run, one set per device class, shared by the device tasks (which only
//! add) and the progress display and final report (which take [`Snapshot`]s).
//!
//! Counters are relaxed atomics; the ack-latency histogram and the error tally sit behind a
//! mutex held for one record. The connection state shown while a broker is unreachable is the
//! latest failed attempt of any device and when that device will retry.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

/// Longest ack latency recorded (an hour, in µs); longer ones are clamped.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Counters of one class.
#[derive(Debug)]
pub struct ClassStats {
    /// Class name.
    pub name: String,
    /// Devices in the class.
    pub devices: u64,
    /// Devices connected now.
    pub connected: AtomicU64,
    /// Devices that connected at least once.
    pub ever_connected: AtomicU64,
    /// Devices waiting to retry a failed connection attempt.
    pub waiting: AtomicU64,
    /// Telemetry messages written to a connection (first transmission only).
    pub sent: AtomicU64,
    /// Telemetry messages acknowledged (QoS 1 PUBACK, QoS 2 PUBCOMP) or sent at QoS 0.
    pub acked: AtomicU64,
    /// Telemetry messages the broker refused, or still unacknowledged at the end.
    pub failed: AtomicU64,
    /// Telemetry messages not sent because the device's queue was full, or never written
    /// before the end.
    pub dropped: AtomicU64,
    /// Telemetry ticks that fell while the device was offline (no message was made).
    pub skipped: AtomicU64,
    /// Successful connections after the first one, per device.
    pub reconnects: AtomicU64,
    /// Disconnects injected by the scenario (random and storms).
    pub injected: AtomicU64,
    /// Commands received.
    pub commands: AtomicU64,
    /// Replies written to a connection.
    pub replies: AtomicU64,
    /// Connection attempts that failed.
    pub connect_failures: AtomicU64,
    latency: Mutex<Histogram<u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    retry: Mutex<Option<Retry>>,
}

/// The latest failed connection attempt.
#[derive(Debug, Clone)]
pub struct Retry {
    /// What went wrong, e.g. `connection refused`.
    pub detail: String,
    /// When that device tries again.
    pub at: Instant,
}

/// Numbers of one class (or of the whole run) at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Class name (`all` for the whole run).
    pub name: String,
    /// Devices.
    pub devices: u64,
    /// Connected now.
    pub connected: u64,
    /// Connected at least once.
    pub ever_connected: u64,
    /// Waiting to retry a connection.
    pub waiting: u64,
    /// See [`ClassStats::sent`].
    pub sent: u64,
    /// See [`ClassStats::acked`].
    pub acked: u64,
    /// See [`ClassStats::failed`].
    pub failed: u64,
    /// See [`ClassStats::dropped`].
    pub dropped: u64,
    /// See [`ClassStats::skipped`].
    pub skipped: u64,
    /// See [`ClassStats::reconnects`].
    pub reconnects: u64,
    /// See [`ClassStats::injected`].
    pub injected: u64,
    /// See [`ClassStats::commands`].
    pub commands: u64,
    /// See [`ClassStats::replies`].
    pub replies: u64,
    /// See [`ClassStats::connect_failures`].
    pub connect_failures: u64,
    /// Ack latencies in µs (QoS 1 and 2 telemetry).
    pub latency: Option<Histogram<u64>>,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// The latest failed connection attempt, when a device is waiting to retry.
    pub retry: Option<Retry>,
}

impl ClassStats {
    /// Zeroed counters for a class of `devices` devices.
    pub fn new(name: &str, devices: u64) -> Self {
        Self {
            name: name.to_owned(),
            devices,
            connected: AtomicU64::new(0),
            ever_connected: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            replies: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            latency: Mutex::new(new_histogram()),
            errors: Mutex::new(BTreeMap::new()),
            retry: Mutex::new(None),
        }
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes one from a gauge (never below zero).
    pub fn sub(counter: &AtomicU64) {
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }

    /// Records one ack latency.
    pub fn record_latency(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Ok(mut h) = self.latency.lock() {
            h.saturating_record(us.clamp(1, MAX_LATENCY_US));
        }
    }

    /// Counts one error of `kind`.
    pub fn error(&self, kind: &str) {
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(kind.to_owned()).or_insert(0) += 1;
        }
    }

    /// Notes a failed connection attempt that will be retried at `at`.
    pub fn retrying(&self, detail: String, at: Instant) {
        if let Ok(mut r) = self.retry.lock() {
            *r = Some(Retry { detail, at });
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let waiting = get(&self.waiting);
        Snapshot {
            name: self.name.clone(),
            devices: self.devices,
            connected: get(&self.connected),
            ever_connected: get(&self.ever_connected),
            waiting,
            sent: get(&self.sent),
            acked: get(&self.acked),
            failed: get(&self.failed),
            dropped: get(&self.dropped),
            skipped: get(&self.skipped),
            reconnects: get(&self.reconnects),
            injected: get(&self.injected),
            commands: get(&self.commands),
            replies: get(&self.replies),
            connect_failures: get(&self.connect_failures),
            latency: self.latency.lock().ok().map(|h| h.clone()),
            errors: self.errors.lock().map(|e| e.clone()).unwrap_or_default(),
            retry: if waiting > 0 {
                self.retry.lock().ok().and_then(|r| r.clone())
            } else {
                None
            },
        }
    }
}

impl Snapshot {
    /// The sum of several snapshots, named `name`.
    pub fn total(name: &str, parts: &[Snapshot]) -> Snapshot {
        let mut t = Snapshot {
            name: name.to_owned(),
            latency: Some(new_histogram()),
            ..Snapshot::default()
        };
        for p in parts {
            t.devices += p.devices;
            t.connected += p.connected;
            t.ever_connected += p.ever_connected;
            t.waiting += p.waiting;
            t.sent += p.sent;
            t.acked += p.acked;
            t.failed += p.failed;
            t.dropped += p.dropped;
            t.skipped += p.skipped;
            t.reconnects += p.reconnects;
            t.injected += p.injected;
            t.commands += p.commands;
            t.replies += p.replies;
            t.connect_failures += p.connect_failures;
            if let (Some(total), Some(h)) = (t.latency.as_mut(), p.latency.as_ref()) {
                let _ = total.add(h);
            }
            for (k, v) in &p.errors {
                *t.errors.entry(k.clone()).or_insert(0) += v;
            }
            let later = match (&t.retry, &p.retry) {
                (Some(a), Some(b)) => b.at > a.at,
                (None, Some(_)) => true,
                _ => false,
            };
            if later {
                t.retry = p.retry.clone();
            }
        }
        t
    }

    /// Errors of every kind.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Ack latency at `quantile` (0..=1) in µs, when any was recorded.
    pub fn latency_us(&self, quantile: f64) -> Option<u64> {
        self.latency
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(quantile))
    }
}

fn new_histogram() -> Histogram<u64> {
    // Constant bounds (1 µs .. 1 h, 3 significant digits, a few tens of kB) that the library
    // accepts; no input reaches this call.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant histogram bounds are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_classes_and_keep_the_latest_retry() {
        let a = ClassStats::new("a", 2);
        let b = ClassStats::new("b", 3);
        ClassStats::add(&a.sent, 5);
        ClassStats::add(&b.sent, 7);
        a.record_latency(Duration::from_millis(2));
        b.record_latency(Duration::from_millis(4));
        a.error("socket_error");
        b.error("socket_error");
        ClassStats::add(&b.waiting, 1);
        b.retrying("connection refused".into(), Instant::now());
        ClassStats::sub(&a.connected);
        let t = Snapshot::total("all", &[a.snapshot(), b.snapshot()]);
        assert_eq!((t.devices, t.sent, t.connected), (5, 12, 0));
        assert_eq!(t.errors.get("socket_error"), Some(&2));
        assert_eq!(
            t.retry.as_ref().map(|r| r.detail.as_str()),
            Some("connection refused")
        );
        let p99 = t.latency_us(0.99).unwrap_or(0);
        assert!((3990..=4010).contains(&p99), "{p99}");
    }
}
