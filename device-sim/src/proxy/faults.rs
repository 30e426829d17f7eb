//! The fault model of the proxy and its per-direction schedule: when each forwarded chunk of a
//! TCP byte stream may leave the proxy, and when a connection is cut. Pure: no sockets, time is
//! passed in, randomness comes from a seedable generator, so the model is unit-tested.
//!
//! A TCP connection never shows the application a hole in the byte stream: a lost segment is
//! retransmitted, and everything sent after it waits (head-of-line blocking). So the proxy
//! never drops bytes. Per direction, for each chunk read at time `t`:
//! 1. **bandwidth** (optional): the chunk occupies the link for `len / bandwidth` after the
//!    previous chunk has left it;
//! 2. **latency ± jitter**: it arrives `latency + U(-jitter, +jitter)` later (never before `t`);
//! 3. **loss**: with probability `loss` the transmission is lost and retransmitted after `rto`;
//!    a lost retransmission waits twice as long (exponential backoff), like TCP's RTO. After
//!    `max_retransmits` lost transmissions in a row the connection is cut, as TCP gives up;
//! 4. **order**: a chunk is never released before the previous one, so a late chunk holds up
//!    everything behind it, as a TCP receiver does.
//!
//! Separately, **cut**: with probability `cut` per chunk the connection is closed at once in
//! both directions (reset), as a link failure ends it; data still queued is lost with it.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::ProxyError;

/// Which faults the proxy injects. `Faults::default()` injects none: a plain relay.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// One-way delay added to every chunk, in each direction (a round trip gains twice this).
    pub latency: Duration,
    /// Each chunk's delay varies uniformly by up to ± this much around `latency`; order is
    /// kept, so jitter shows as bunching, never as reordering.
    pub jitter: Duration,
    /// Probability (0..=1) that a transmission of a chunk is lost. The chunk is not dropped:
    /// it is released one `rto` later (doubling per further loss), and everything behind it
    /// in that direction waits.
    pub loss: f64,
    /// Retransmission timeout charged for the first loss of a chunk (Linux' minimum RTO is
    /// 200 ms).
    pub rto: Duration,
    /// Lost transmissions in a row after which the connection is cut (TCP gives up too).
    pub max_retransmits: u32,
    /// Probability (0..=1) per forwarded chunk that the connection is cut (both directions
    /// reset at once), as a link failure or a NAT timeout would end it.
    pub cut: f64,
    /// Link rate per direction in bytes per second; `None` is unlimited.
    pub bandwidth: Option<u64>,
    /// Seed of the random choices, for a reproducible run; `None` seeds from the OS.
    pub seed: Option<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            rto: Duration::from_millis(200),
            max_retransmits: 5,
            cut: 0.0,
            bandwidth: None,
            seed: None,
        }
    }
}

impl Faults {
    /// Checks that probabilities are within 0..=1 and rates are positive.
    pub fn validate(&self) -> Result<(), ProxyError> {
        let bad = |what: String| Err(ProxyError::InvalidFaults(what));
        for (name, p) in [("loss", self.loss), ("cut", self.cut)] {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("{name} is a probability between 0 and 1, not {p}"));
            }
        }
        if self.loss > 0.0 && self.rto.is_zero() {
            return bad("rto must be above zero when loss is injected".into());
        }
        if self.bandwidth == Some(0) {
            return bad("bandwidth must be above zero (leave it out for unlimited)".into());
        }
        Ok(())
    }

    /// A one-line description, e.g. `latency 50ms ±10ms, loss 1% (rto 200ms)`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.latency.is_zero() || !self.jitter.is_zero() {
            parts.push(format!(
                "latency {}ms ±{}ms",
                self.latency.as_millis(),
                self.jitter.as_millis()
            ));
        }
        if self.loss > 0.0 {
            parts.push(format!(
                "loss {}% (rto {}ms, cut after {} retransmits)",
                self.loss * 100.0,
                self.rto.as_millis(),
                self.max_retransmits
            ));
        }
        if self.cut > 0.0 {
            parts.push(format!("cut {}% per chunk", self.cut * 100.0));
        }
        if let Some(bw) = self.bandwidth {
            parts.push(format!("bandwidth {bw} B/s"));
        }
        if parts.is_empty() {
            "no faults".into()
        } else {
            parts.join(", ")
        }
    }
}

/// What to do with one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Release the chunk at `at`, after `retransmits` simulated losses.
    Forward {
        /// Release time (never before the previous release in this direction).
        at: Instant,
        /// Simulated lost transmissions of this chunk.
        retransmits: u32,
    },
    /// Cut the connection at `at` (`at` is now for a random cut; after the stall when the
    /// retransmissions ran out).
    Cut {
        /// When the connection ends.
        at: Instant,
        /// Simulated lost transmissions before the cut.
        retransmits: u32,
    },
}

/// The release schedule of one direction of one connection.
#[derive(Debug)]
pub struct Schedule {
    faults: Faults,
    rng: StdRng,
    /// Release time of the previous chunk: nothing is released before it (order).
    last_release: Option<Instant>,
    /// When the simulated link finishes sending the previous chunk (bandwidth).
    link_free: Option<Instant>,
}

impl Schedule {
    /// A schedule for one direction; `stream` (connection number × 2 + direction) varies a
    /// fixed seed so directions and connections draw different but reproducible numbers.
    pub fn new(faults: Faults, stream: u64) -> Self {
        let rng = match faults.seed {
            Some(seed) => StdRng::seed_from_u64(seed.wrapping_add(stream.wrapping_mul(0x9e37))),
            None => StdRng::from_os_rng(),
        };
        Self {
            faults,
            rng,
            last_release: None,
            link_free: None,
        }
    }

    /// Decides the fate of a chunk of `len` bytes read at `now`.
    pub fn chunk(&mut self, now: Instant, len: usize) -> Verdict {
        let f = &self.faults;
        if f.cut > 0.0 && self.rng.random::<f64>() < f.cut {
            return Verdict::Cut {
                at: now,
                retransmits: 0,
            };
        }
        let mut sent = now;
        if let Some(bw) = f.bandwidth {
            let start = self.link_free.map_or(now, |free| free.max(now));
            let tx = Duration::from_secs_f64(len as f64 / bw as f64);
            sent = start + tx;
            self.link_free = Some(sent);
        }
        let mut at = sent + f.latency;
        if !f.jitter.is_zero() {
            let j = f.jitter.as_secs_f64();
            let offset = self.rng.random_range(-j..=j);
            at = if offset >= 0.0 {
                at + Duration::from_secs_f64(offset)
            } else {
                at.checked_sub(Duration::from_secs_f64(-offset))
                    .unwrap_or(sent)
                    .max(sent)
            };
        }
        let mut retransmits = 0;
        let mut wait = f.rto;
        while f.loss > 0.0 && self.rng.random::<f64>() < f.loss {
            retransmits += 1;
            at += wait;
            if retransmits >= f.max_retransmits {
                let at = self.release_after(at);
                return Verdict::Cut { at, retransmits };
            }
            wait = wait.saturating_mul(2);
        }
        Verdict::Forward {
            at: self.release_after(at),
            retransmits,
        }
    }

    /// When the end of the stream (FIN) read at `now` may be passed on: after the latency and
    /// after every chunk before it.
    pub fn eof(&mut self, now: Instant) -> Instant {
        self.release_after(now + self.faults.latency)
    }

    fn release_after(&mut self, at: Instant) -> Instant {
        let at = self.last_release.map_or(at, |last| last.max(at));
        self.last_release = Some(at);
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn forward_at(v: Verdict) -> Instant {
        match v {
            Verdict::Forward { at, .. } => at,
            Verdict::Cut { .. } => panic!("unexpected cut: {v:?}"),
        }
    }

    #[test]
    fn default_is_a_plain_relay() {
        let mut s = Schedule::new(Faults::default(), 0);
        let now = Instant::now();
        assert_eq!(
            s.chunk(now, 100),
            Verdict::Forward {
                at: now,
                retransmits: 0
            }
        );
        assert_eq!(s.eof(now), now);
    }

    #[test]
    fn latency_delays_every_chunk() {
        let faults = Faults {
            latency: ms(50),
            ..Faults::default()
        };
        let mut s = Schedule::new(faults, 0);
        let t0 = Instant::now();
        assert_eq!(forward_at(s.chunk(t0, 1)), t0 + ms(50));
        assert_eq!(forward_at(s.chunk(t0 + ms(10), 1)), t0 + ms(60));
        assert_eq!(s.eof(t0 + ms(20)), t0 + ms(70));
    }

    #[test]
    fn jitter_stays_in_bounds_and_never_reorders() {
        let faults = Faults {
            latency: ms(50),
            jitter: ms(40),
            seed: Some(7),
            ..Faults::default()
        };
        let mut s = Schedule::new(faults, 0);
        let t0 = Instant::now();
        let mut prev = t0;
        let mut spread = (Duration::MAX, Duration::ZERO);
        for i in 0..1000u64 {
            let now = t0 + Duration::from_micros(i * 100);
            let at = forward_at(s.chunk(now, 10));
            assert!(at >= prev, "chunk {i} released before its predecessor");
            assert!(
                at >= now + ms(10),
                "chunk {i} earlier than latency - jitter"
            );
            let d = at - now;
            spread = (spread.0.min(d), spread.1.max(d));
            prev = at;
        }
        // Order is kept, so only the upper bound is strict: a chunk may wait for a late one.
        assert!(
            spread.0 < ms(30),
            "jitter never drew low values: {spread:?}"
        );
    }

    #[test]
    fn a_loss_stalls_the_chunk_and_everything_behind_it() {
        let faults = Faults {
            loss: 1.0,
            rto: ms(200),
            max_retransmits: 3,
            ..Faults::default()
        };
        let mut s = Schedule::new(faults, 0);
        let t0 = Instant::now();
        // Three losses in a row (200 + 400 + 800 ms): the connection is given up.
        assert_eq!(
            s.chunk(t0, 1),
            Verdict::Cut {
                at: t0 + ms(1400),
                retransmits: 3
            }
        );

        let faults = Faults {
            loss: 0.5,
            rto: ms(200),
            max_retransmits: 100,
            seed: Some(1),
            ..Faults::default()
        };
        let mut s = Schedule::new(faults, 0);
        let mut stalled = 0;
        let mut prev = t0;
        for i in 0..200u64 {
            let now = t0 + ms(i);
            match s.chunk(now, 1) {
                Verdict::Forward { at, retransmits } => {
                    assert!(at >= prev);
                    if retransmits > 0 {
                        stalled += 1;
                        assert!(at >= now + ms(200));
                    }
                    prev = at;
                }
                Verdict::Cut { .. } => panic!("no cut expected"),
            }
        }
        assert!((60..=140).contains(&stalled), "{stalled} of 200 stalled");
    }

    #[test]
    fn cut_probability_one_cuts_at_once() {
        let faults = Faults {
            cut: 1.0,
            latency: ms(100),
            ..Faults::default()
        };
        let mut s = Schedule::new(faults, 0);
        let now = Instant::now();
        assert_eq!(
            s.chunk(now, 1),
            Verdict::Cut {
                at: now,
                retransmits: 0
            }
        );
    }

    #[test]
    fn bandwidth_spaces_chunks() {
        let faults = Faults {
            bandwidth: Some(1000),
            ..Faults::default()
        };
        let mut s = Schedule::new(faults, 0);
        let t0 = Instant::now();
        assert_eq!(forward_at(s.chunk(t0, 100)), t0 + ms(100));
        assert_eq!(forward_at(s.chunk(t0, 100)), t0 + ms(200));
        // An idle link starts sending at once.
        assert_eq!(forward_at(s.chunk(t0 + ms(1000), 500)), t0 + ms(1500));
    }

    #[test]
    fn validation_names_the_bad_value() {
        let bad = [
            Faults {
                loss: 1.5,
                ..Faults::default()
            },
            Faults {
                cut: -0.1,
                ..Faults::default()
            },
            Faults {
                loss: f64::NAN,
                ..Faults::default()
            },
            Faults {
                loss: 0.1,
                rto: Duration::ZERO,
                ..Faults::default()
            },
            Faults {
                bandwidth: Some(0),
                ..Faults::default()
            },
        ];
        for f in bad {
            assert!(f.validate().is_err(), "{f:?} accepted");
        }
        assert!(Faults::default().validate().is_ok());
        assert_eq!(Faults::default().describe(), "no faults");
    }

    #[test]
    fn a_seed_makes_runs_reproducible() {
        let faults = Faults {
            jitter: ms(20),
            loss: 0.3,
            seed: Some(42),
            ..Faults::default()
        };
        let t0 = Instant::now();
        let run = |stream| {
            let mut s = Schedule::new(faults.clone(), stream);
            (0..50).map(|i| s.chunk(t0 + ms(i), 1)).collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}
