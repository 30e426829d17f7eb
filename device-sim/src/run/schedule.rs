//! Timing decisions of a run, without I/O: telemetry gaps with jitter, reconnect backoff,
//! random disconnect times, which devices a storm takes down, and per-device seeds. All draw
//! from a seeded generator, so a run with a fixed seed makes the same choices.

use std::time::Duration;

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;

use crate::scenario::Backoff;

/// The seed of one device's generator, mixed from the run seed, class and device index.
pub fn device_seed(run_seed: u64, class: usize, n: u64) -> u64 {
    splitmix(splitmix(run_seed ^ splitmix(class as u64 + 1)) ^ n)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The gap before the next message of a stream: `interval` ± uniform `jitter`, at least 1 ms.
pub fn gap(rng: &mut impl Rng, interval: Duration, jitter: Duration) -> Duration {
    let gap = if jitter.is_zero() {
        interval
    } else {
        let j = jitter.as_secs_f64();
        let secs = interval.as_secs_f64() + rng.random_range(-j..=j);
        Duration::from_secs_f64(secs.max(0.0))
    };
    gap.max(Duration::from_millis(1))
}

/// When a stream's first message goes out after the device connects the first time: a
/// uniform point within one interval, so a fleet's messages spread evenly.
pub fn first_offset(rng: &mut impl Rng, interval: Duration) -> Duration {
    interval.mul_f64(rng.random_range(0.0..1.0))
}

/// Time until the next random disconnect when they come at a mean interval `mean`
/// (exponentially distributed, as independent failures are).
pub fn next_failure(rng: &mut impl Rng, mean: Duration) -> Duration {
    let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let secs = -mean.as_secs_f64() * u.ln();
    Duration::from_secs_f64(secs.min(30.0 * 24.0 * 3600.0))
}

/// Which devices (0-based indices) of a class of `count` a storm takes down: exactly
/// `ceil(fraction * count)` of them, chosen by the seeded generator.
pub fn storm_members(seed: u64, count: u32, fraction: f64) -> Vec<bool> {
    let count = count as usize;
    let take = ((fraction.clamp(0.0, 1.0) * count as f64).ceil() as usize).min(count);
    let mut order: Vec<usize> = (0..count).collect();
    order.shuffle(&mut SmallRng::seed_from_u64(seed));
    let mut members = vec![false; count];
    for i in order.into_iter().take(take) {
        members[i] = true;
    }
    members
}

/// Exponential backoff between failed connection attempts, with ±20 % jitter so a fleet
/// that failed together does not retry together.
#[derive(Debug, Clone)]
pub struct Retry {
    config: Backoff,
    next: Duration,
}

impl Retry {
    /// Starts at the configured initial wait.
    pub fn new(config: Backoff) -> Self {
        Self {
            config,
            next: config.initial,
        }
    }

    /// The wait before the next attempt; doubles the one after, up to the maximum.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.config.max);
        base.mul_f64(rng.random_range(0.8..=1.2))
    }

    /// A connection succeeded: the next failure starts from the initial wait again.
    pub fn reset(&mut self) {
        self.next = self.config.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> SmallRng {
        SmallRng::seed_from_u64(42)
    }

    #[test]
    fn gaps_stay_within_the_jitter() {
        let mut r = rng();
        let (i, j) = (Duration::from_millis(100), Duration::from_millis(20));
        for _ in 0..1000 {
            let g = gap(&mut r, i, j);
            assert!(
                g >= Duration::from_millis(80) && g <= Duration::from_millis(120),
                "{g:?}"
            );
        }
        assert_eq!(gap(&mut r, i, Duration::ZERO), i);
        assert_eq!(
            gap(&mut r, Duration::ZERO, Duration::ZERO),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn failures_average_the_mean() {
        let mut r = rng();
        let mean = Duration::from_secs(10);
        let total: f64 = (0..20_000)
            .map(|_| next_failure(&mut r, mean).as_secs_f64())
            .sum();
        let avg = total / 20_000.0;
        assert!((9.5..10.5).contains(&avg), "{avg}");
    }

    #[test]
    fn storms_take_exactly_the_fraction() {
        let m = storm_members(7, 10, 0.25);
        assert_eq!(m.iter().filter(|x| **x).count(), 3);
        assert_eq!(m, storm_members(7, 10, 0.25), "same seed, same devices");
        assert!(storm_members(7, 4, 1.0).iter().all(|x| *x));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut r = rng();
        let mut b = Retry::new(Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(5),
        });
        let waits: Vec<f64> = (0..5).map(|_| b.next_delay(&mut r).as_secs_f64()).collect();
        for (w, base) in waits.iter().zip([1.0, 2.0, 4.0, 5.0, 5.0]) {
            assert!(*w >= base * 0.8 && *w <= base * 1.2, "{waits:?}");
        }
        b.reset();
        assert!(b.next_delay(&mut r) <= Duration::from_millis(1200));
    }

    #[test]
    fn device_seeds_differ() {
        assert_ne!(device_seed(1, 0, 1), device_seed(1, 0, 2));
        assert_ne!(device_seed(1, 0, 1), device_seed(1, 1, 1));
        assert_eq!(device_seed(9, 2, 3), device_seed(9, 2, 3));
    }
}
