//! Reconnect pauses: exponential from `min` to `max`, with jitter so that many bridges (or
//! many gateways) that lost the same remote do not all come back at the same instant.

use rand::Rng;
use std::time::Duration;

/// Exponential backoff with "equal jitter": each pause is half the current step plus a
/// random part of up to the other half. The step doubles after each failure, up to `max`,
/// and returns to `min` after a success.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            step: min,
        }
    }

    /// The pause before the next attempt; doubles the step for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let half = self.step / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let extra = if jitter_ms == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(rand::rng().random_range(0..=jitter_ms))
        };
        let delay = (self.step - half) + extra;
        self.step = (self.step * 2).min(self.max);
        delay
    }

    /// Back to the shortest step (after a connection succeeded).
    pub fn reset(&mut self) {
        self.step = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_bounded_jitter_and_resets() {
        let min = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        let mut b = Backoff::new(min, max);
        let mut step = min;
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(
                d >= step / 2 && d <= step,
                "{d:?} outside [{:?}, {step:?}]",
                step / 2
            );
            step = (step * 2).min(max);
        }
        b.reset();
        assert!(b.next_delay() <= min);
    }
}
