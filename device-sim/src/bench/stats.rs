//! Report arithmetic: rates, loss, and latency percentiles (hdrhistogram, recorded in
//! nanoseconds, reported in microseconds).

use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency a histogram records: one hour in nanoseconds. Larger values are clamped.
const MAX_TRACKABLE_NS: u64 = 3_600_000_000_000;

/// A latency histogram in nanoseconds with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Constant bounds (1 ns .. 1 h, 3 significant digits) that the library accepts; no input
    // reaches this call.
    Histogram::new_with_bounds(1, MAX_TRACKABLE_NS, 3).expect("constant histogram bounds are valid")
}

/// Records one latency, clamping it into the histogram's range.
pub fn record_ns(hist: &mut Histogram<u64>, ns: u64) {
    let _ = hist.record(ns.clamp(1, MAX_TRACKABLE_NS));
}

/// Events per second over `elapsed`; zero when nothing elapsed.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// Messages that should have arrived and did not. Extra deliveries (duplicates) do not hide a
/// loss elsewhere: each subscriber is counted on its own.
pub fn loss(expected_per_subscriber: u64, received: &[u64]) -> u64 {
    received
        .iter()
        .map(|r| expected_per_subscriber.saturating_sub(*r))
        .sum()
}

/// Deliveries beyond what each subscriber expected (duplicates).
pub fn extra(expected_per_subscriber: u64, received: &[u64]) -> u64 {
    received
        .iter()
        .map(|r| r.saturating_sub(expected_per_subscriber))
        .sum()
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Smallest sample.
    pub min_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest sample.
    pub max_us: f64,
}

impl LatencySummary {
    /// Summarises a histogram recorded in nanoseconds.
    pub fn from_ns(hist: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        if hist.is_empty() {
            return Self {
                count: 0,
                min_us: 0.0,
                mean_us: 0.0,
                p50_us: 0.0,
                p90_us: 0.0,
                p99_us: 0.0,
                p999_us: 0.0,
                max_us: 0.0,
            };
        }
        Self {
            count: hist.len(),
            min_us: us(hist.min()),
            mean_us: hist.mean() / 1000.0,
            p50_us: us(hist.value_at_quantile(0.50)),
            p90_us: us(hist.value_at_quantile(0.90)),
            p99_us: us(hist.value_at_quantile(0.99)),
            p999_us: us(hist.value_at_quantile(0.999)),
            max_us: us(hist.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        // 3 significant digits: values are exact to within 0.1 %.
        (a - b).abs() <= b.abs() * 0.001 + 0.001
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut h = new_histogram();
        for us in 1..=10_000u64 {
            record_ns(&mut h, us * 1000);
        }
        let s = LatencySummary::from_ns(&h);
        assert_eq!(s.count, 10_000);
        assert!(close(s.min_us, 1.0), "{s:?}");
        assert!(close(s.p50_us, 5000.0), "{s:?}");
        assert!(close(s.p90_us, 9000.0), "{s:?}");
        assert!(close(s.p99_us, 9900.0), "{s:?}");
        assert!(close(s.p999_us, 9990.0), "{s:?}");
        assert!(close(s.max_us, 10_000.0), "{s:?}");
        assert!(close(s.mean_us, 5000.5), "{s:?}");
    }

    #[test]
    fn one_outlier_moves_only_the_tail() {
        let mut h = new_histogram();
        for _ in 0..999 {
            record_ns(&mut h, 100_000);
        }
        record_ns(&mut h, 50_000_000);
        let s = LatencySummary::from_ns(&h);
        assert!(close(s.p50_us, 100.0));
        assert!(close(s.p99_us, 100.0));
        assert!(close(s.max_us, 50_000.0));
    }

    #[test]
    fn empty_and_out_of_range_samples_are_safe() {
        let mut h = new_histogram();
        assert_eq!(LatencySummary::from_ns(&h).count, 0);
        record_ns(&mut h, 0);
        record_ns(&mut h, u64::MAX);
        assert_eq!(LatencySummary::from_ns(&h).count, 2);
    }

    #[test]
    fn rates_and_loss() {
        assert_eq!(per_second(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
        // Two subscribers expecting 100 each: one got 90, the other 105 (5 duplicates).
        assert_eq!(loss(100, &[90, 105]), 10);
        assert_eq!(extra(100, &[90, 105]), 5);
        assert_eq!(loss(100, &[100, 100]), 0);
    }
}
