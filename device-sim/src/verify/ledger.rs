//! The accounting of a whole verification run: one [`SeqTracker`] per device, the latency
//! histogram, and the notices that break continuity (resets, lost sessions, drops). Fed
//! observations by the transport loop, or by a test; no I/O. [`Ledger::report`] applies the
//! pass/fail rules.

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;

use super::report::{DeviceReport, Latency, Report, Totals};
use super::tracker::{Outcome, SeqTracker};
use crate::bench::stats::{LatencySummary, new_histogram, record_ns};
use crate::stamp::Stamp;

/// Lost ranges kept per device in the report.
const LOST_RANGES: usize = 20;

/// What makes a run fail besides loss, reordering and resets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    /// Messages start at sequence 1 for every device (`--from-start`).
    pub from_start: bool,
    /// Devices that must be seen (`--expect-devices`).
    pub devices: Option<u64>,
    /// Every device's last sequence number (`--expect-last-seq`): the end of each stream is
    /// checked too.
    pub last_seq: Option<u64>,
    /// Duplicates are reported but do not fail the run (`--allow-duplicates`; MQTT QoS 1
    /// allows them).
    pub allow_duplicates: bool,
}

#[derive(Debug)]
struct Device {
    seq: SeqTracker,
    latency_sum_us: u64,
    latency_max_us: u64,
    latency_count: u64,
}

/// The accounting of one run.
#[derive(Debug)]
pub struct Ledger {
    expect: Expectations,
    devices: HashMap<String, Device>,
    latency: Histogram<u64>,
    totals: Totals,
    resets: Vec<String>,
    errors: BTreeMap<String, u64>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new(expect: Expectations) -> Self {
        Self {
            expect,
            devices: HashMap::new(),
            latency: new_histogram(),
            totals: Totals::default(),
            resets: Vec::new(),
            errors: BTreeMap::new(),
        }
    }

    /// Accounts for a stamped message received at `received_at_us` (µs since the Unix epoch).
    pub fn observe(&mut self, stamp: &Stamp, received_at_us: u64) -> Outcome {
        let from_start = self.expect.from_start;
        let device = self
            .devices
            .entry(stamp.device.clone())
            .or_insert_with(|| Device {
                seq: SeqTracker::new(from_start),
                latency_sum_us: 0,
                latency_max_us: 0,
                latency_count: 0,
            });
        let outcome = device.seq.observe(stamp.seq);
        if outcome != Outcome::Duplicate {
            let latency = match received_at_us.checked_sub(stamp.sent_at_us) {
                Some(us) => us,
                None => {
                    self.totals.clock_skew += 1;
                    0
                }
            };
            record_ns(&mut self.latency, latency.saturating_mul(1000));
            device.latency_sum_us = device.latency_sum_us.saturating_add(latency);
            device.latency_max_us = device.latency_max_us.max(latency);
            device.latency_count += 1;
        }
        outcome
    }

    /// A message without a stamp.
    pub fn unstamped(&mut self) {
        self.totals.unstamped += 1;
    }

    /// A retained message sent on subscribe (not part of the live stream).
    pub fn retained(&mut self) {
        self.totals.retained += 1;
    }

    /// Continuity was lost: a gateway `reset`, or an MQTT session the broker did not keep.
    pub fn reset(&mut self, notice: String) {
        self.totals.resets += 1;
        self.resets.push(notice);
    }

    /// The gateway dropped `count` messages for this connection.
    pub fn dropped(&mut self, count: u64) {
        self.totals.dropped += count;
    }

    /// A reconnection, `planned` when the verifier closed the connection itself.
    pub fn reconnected(&mut self, planned: bool) {
        if planned {
            self.totals.planned_disconnects += 1;
        } else {
            self.totals.reconnects += 1;
        }
    }

    /// A transport error of `kind` (counted, reported, not fatal).
    pub fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_insert(0) += 1;
    }

    /// Stamped messages received so far.
    pub fn received(&self) -> u64 {
        self.devices.values().map(|d| d.seq.received()).sum()
    }

    /// A one-line summary while the run goes on. Losses are the gaps so far: the ends of the
    /// streams may still be on their way.
    pub fn progress(&self) -> String {
        let sum =
            |f: fn(&SeqTracker) -> u64| -> u64 { self.devices.values().map(|d| f(&d.seq)).sum() };
        let p99 = self.latency.value_at_quantile(0.99) as f64 / 1e6;
        format!(
            "{} devices, {} received, {} missing, {} duplicates, {} reordered, {} resets, \
             {} reconnects (+{} planned), p99 {p99:.2} ms",
            self.devices.len(),
            sum(SeqTracker::received),
            sum(SeqTracker::lost),
            sum(SeqTracker::duplicates),
            sum(SeqTracker::reordered),
            self.totals.resets,
            self.totals.reconnects,
            self.totals.planned_disconnects,
        )
    }

    /// True when the expected devices have each delivered everything up to the expected last
    /// number (needs both `devices` and `last_seq`).
    pub fn complete(&self) -> bool {
        let (Some(n), Some(last)) = (self.expect.devices, self.expect.last_seq) else {
            return false;
        };
        self.devices.len() as u64 >= n && self.devices.values().all(|d| d.seq.complete_until(last))
    }

    /// The report of everything observed, with the verdict.
    pub fn report(&self, source: &str, filters: &[String], duration_secs: f64) -> Report {
        let mut totals = self.totals.clone();
        totals.devices = self.devices.len() as u64;
        totals.expected_devices = self.expect.devices;
        totals.expected_last_seq = self.expect.last_seq;
        let mut devices: Vec<DeviceReport> = self
            .devices
            .iter()
            .map(|(id, d)| {
                let lost = match self.expect.last_seq {
                    Some(last) => d.seq.lost_until(last),
                    None => d.seq.lost(),
                };
                let mut lost_ranges = d.seq.lost_ranges(LOST_RANGES);
                if let (Some(last), Some(h)) = (self.expect.last_seq, d.seq.highest()) {
                    if h < last && lost_ranges.len() < LOST_RANGES {
                        lost_ranges.push((h + 1, last));
                    }
                }
                DeviceReport {
                    device: id.clone(),
                    first_seq: d.seq.first().unwrap_or(0),
                    highest_seq: d.seq.highest().unwrap_or(0),
                    received: d.seq.received(),
                    lost,
                    lost_ranges,
                    duplicates: d.seq.duplicates(),
                    reordered: d.seq.reordered(),
                    latency_mean_us: if d.latency_count > 0 {
                        d.latency_sum_us as f64 / d.latency_count as f64
                    } else {
                        0.0
                    },
                    latency_max_us: d.latency_max_us as f64,
                }
            })
            .collect();
        devices.sort_by(|a, b| {
            b.badness()
                .cmp(&a.badness())
                .then_with(|| b.latency_max_us.total_cmp(&a.latency_max_us))
                .then_with(|| a.device.cmp(&b.device))
        });
        for d in &devices {
            totals.received += d.received;
            totals.unique += d.received - d.duplicates;
            totals.lost += d.lost;
            totals.duplicates += d.duplicates;
            totals.reordered += d.reordered;
        }
        let problems = self.problems(&totals);
        Report {
            source: source.to_string(),
            filters: filters.to_vec(),
            duration_secs,
            passed: problems.is_empty(),
            problems,
            totals,
            latency_us: Latency::from(LatencySummary::from_ns(&self.latency)),
            devices,
            resets: self.resets.clone(),
            errors: self.errors.clone(),
        }
    }

    fn problems(&self, t: &Totals) -> Vec<String> {
        let mut p = Vec::new();
        if t.received == 0 {
            p.push("no stamped message was received (check --filter and the publishers)".into());
        }
        if t.lost > 0 {
            p.push(format!("{} lost", t.lost));
        }
        if t.reordered > 0 {
            p.push(format!("{} reordered", t.reordered));
        }
        if t.duplicates > 0 && !self.expect.allow_duplicates {
            p.push(format!("{} duplicated", t.duplicates));
        }
        if t.resets > 0 {
            p.push(format!("continuity lost {} time(s) (reset)", t.resets));
        }
        if t.dropped > 0 {
            p.push(format!("{} dropped by the gateway", t.dropped));
        }
        match self.expect.devices {
            Some(n) if t.devices < n => {
                p.push(format!("{} of {n} expected devices seen", t.devices));
            }
            _ => {}
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(dev: &str, seq: u64, sent_at_us: u64) -> Stamp {
        Stamp {
            device: dev.into(),
            seq,
            sent_at_us,
        }
    }

    fn feed(expect: Expectations, stream: &[(&str, u64)]) -> Report {
        let mut l = Ledger::new(expect);
        for (i, &(dev, seq)) in stream.iter().enumerate() {
            let sent = 1_000_000 + i as u64 * 1000;
            l.observe(&stamp(dev, seq, sent), sent + 2000);
        }
        l.report("test://", &["sim/#".into()], 1.0)
    }

    #[test]
    fn a_crafted_stream_fails_with_the_right_counts() {
        let stream = [
            ("a", 1),
            ("b", 1),
            ("a", 2),
            ("a", 4),
            ("b", 2),
            ("a", 3),
            ("a", 3),
            ("a", 5),
            ("a", 7),
            ("b", 3),
        ];
        let r = feed(Expectations::default(), &stream);
        assert!(!r.passed);
        let t = &r.totals;
        assert_eq!((t.devices, t.received, t.unique), (2, 10, 9));
        assert_eq!((t.lost, t.duplicates, t.reordered), (1, 1, 1));
        assert_eq!(r.devices[0].device, "a", "worst device first");
        assert_eq!(r.devices[0].lost_ranges, vec![(6, 6)]);
        assert_eq!(r.devices[1].badness(), (0, 0, 0));
        assert_eq!(r.problems.len(), 3, "{:?}", r.problems);
        assert_eq!(r.latency_us.count, 9, "duplicates carry no latency sample");
        assert!(
            (r.latency_us.p50 - 2000.0).abs() < 5.0,
            "{:?}",
            r.latency_us
        );
    }

    #[test]
    fn a_clean_stream_passes_and_duplicates_can_be_allowed() {
        let clean = [("a", 1), ("a", 2), ("b", 1), ("b", 2)];
        assert!(feed(Expectations::default(), &clean).passed);
        let dup = [("a", 1), ("a", 2), ("a", 2)];
        assert!(!feed(Expectations::default(), &dup).passed);
        let allow = Expectations {
            allow_duplicates: true,
            ..Expectations::default()
        };
        let r = feed(allow, &dup);
        assert!(r.passed, "{:?}", r.problems);
        assert_eq!(r.totals.duplicates, 1);
    }

    #[test]
    fn expectations_catch_missing_devices_and_ends() {
        let expect = Expectations {
            from_start: true,
            devices: Some(3),
            last_seq: Some(4),
            allow_duplicates: false,
        };
        let mut l = Ledger::new(expect.clone());
        for seq in 1..=4 {
            l.observe(&stamp("a", seq, 0), 10);
        }
        assert!(!l.complete());
        for seq in 2..=3 {
            l.observe(&stamp("b", seq, 0), 10);
        }
        let r = l.report("x", &[], 1.0);
        assert_eq!(r.totals.lost, 2, "b lost 1 at the start and 4 at the end");
        let b = r.devices.iter().find(|d| d.device == "b");
        assert_eq!(b.map(|d| d.lost_ranges.clone()), Some(vec![(1, 1), (4, 4)]));
        assert!(r.problems.iter().any(|p| p.contains("2 of 3 expected")));

        let mut l = Ledger::new(Expectations {
            devices: Some(1),
            ..expect
        });
        for seq in 1..=4 {
            l.observe(&stamp("a", seq, 0), 10);
        }
        assert!(l.complete());
    }

    #[test]
    fn notices_fail_the_run_and_skew_is_counted() {
        let mut l = Ledger::new(Expectations::default());
        l.observe(&stamp("a", 1, 5_000), 4_000);
        l.unstamped();
        assert!(l.report("x", &[], 1.0).passed);
        l.reset(r#"{"op":"reset"}"#.into());
        l.dropped(3);
        let r = l.report("x", &[], 1.0);
        assert!(!r.passed);
        assert_eq!((r.totals.resets, r.totals.dropped), (1, 3));
        assert_eq!((r.totals.unstamped, r.totals.clock_skew), (1, 1));
        assert!(r.render(10).contains("FAIL"));
    }

    #[test]
    fn nothing_received_is_a_failure() {
        let r = Ledger::new(Expectations::default()).report("x", &[], 1.0);
        assert!(!r.passed);
    }
}
