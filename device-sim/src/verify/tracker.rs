//! The sequence accounting of one device: fed the sequence numbers of its messages in the
//! order they arrived, it tells lost, duplicated and reordered messages apart. No I/O, no
//! clock.
//!
//! # Rules
//! - **Baseline.** A verifier that was supposed to see a device from its first message
//!   (`--from-start`) expects sequence 1 first: anything below the first seen number is lost.
//!   Otherwise the first number seen is the baseline: the verifier cannot know what the device
//!   sent before it subscribed, so nothing before it counts as lost.
//! - **Lost**: numbers between the baseline and the highest seen that never arrived. A number
//!   that arrives late is reordered, not lost. Messages missing at the *end* of a stream look
//!   like messages not sent yet; they count as lost only when the last number is known
//!   ([`SeqTracker::lost_until`], `--expect-last-seq`).
//! - **Duplicate**: a number already seen.
//! - **Reordered**: a number lower than the highest seen that had not been seen (it fills a
//!   gap, or lies below a baseline that was not from the start).

use std::collections::BTreeSet;

use super::gaps::Gaps;

/// What one arrival was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The next number expected (or the first one seen).
    InOrder,
    /// Higher than expected: `missing` numbers were skipped (lost unless they come later).
    Gap {
        /// Numbers skipped.
        missing: u64,
    },
    /// Already seen.
    Duplicate,
    /// Not seen before, but lower than the highest seen.
    Reordered,
}

/// Sequence accounting of one device.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    /// Lowest number expected: 1 from the start, else the first number seen.
    first: Option<u64>,
    /// Highest number seen.
    highest: Option<u64>,
    /// Numbers between `first` and `highest` not seen.
    missing: Gaps,
    /// Numbers below the baseline that arrived after it (seen once, for duplicate checks).
    below: BTreeSet<u64>,
    received: u64,
    duplicates: u64,
    reordered: u64,
}

impl SeqTracker {
    /// A tracker expecting `1` first when `from_start`, else taking the first number seen as
    /// the baseline.
    pub fn new(from_start: bool) -> Self {
        Self {
            first: from_start.then_some(1),
            ..Self::default()
        }
    }

    /// Accounts for one arrival of `seq`.
    pub fn observe(&mut self, seq: u64) -> Outcome {
        self.received += 1;
        let first = *self.first.get_or_insert(seq);
        if seq < first {
            if self.below.insert(seq) {
                self.reordered += 1;
                return Outcome::Reordered;
            }
            self.duplicates += 1;
            return Outcome::Duplicate;
        }
        let next = self.highest.map_or(first, |h| h + 1);
        if seq >= next {
            self.missing.add(next, seq);
            self.highest = Some(seq);
            return match seq - next {
                0 => Outcome::InOrder,
                missing => Outcome::Gap { missing },
            };
        }
        if self.missing.remove(seq) {
            self.reordered += 1;
            Outcome::Reordered
        } else {
            self.duplicates += 1;
            Outcome::Duplicate
        }
    }

    /// Numbers lost so far: gaps below the highest number seen.
    pub fn lost(&self) -> u64 {
        self.missing.count()
    }

    /// Numbers lost when the device's last number is `last`: the gaps, plus everything after
    /// the highest seen up to `last`.
    pub fn lost_until(&self, last: u64) -> u64 {
        self.lost() + self.tail_missing(last)
    }

    /// Numbers after the highest seen up to `last`.
    pub fn tail_missing(&self, last: u64) -> u64 {
        match (self.first, self.highest) {
            (_, Some(h)) => last.saturating_sub(h),
            (Some(first), None) => (last + 1).saturating_sub(first),
            (None, None) => 0,
        }
    }

    /// The first `limit` lost ranges, inclusive.
    pub fn lost_ranges(&self, limit: usize) -> Vec<(u64, u64)> {
        self.missing.ranges(limit)
    }

    /// Arrivals, duplicates included.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Distinct numbers seen.
    pub fn unique(&self) -> u64 {
        self.received - self.duplicates
    }

    /// Arrivals of a number already seen.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Arrivals lower than the highest seen, not seen before.
    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// The baseline (lowest expected number), once known.
    pub fn first(&self) -> Option<u64> {
        self.first
    }

    /// The highest number seen.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// True when every number from the baseline to `last` has arrived.
    pub fn complete_until(&self, last: u64) -> bool {
        self.highest.is_some_and(|h| h >= last) && self.missing.count() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(from_start: bool, seqs: &[u64]) -> (SeqTracker, Vec<Outcome>) {
        let mut t = SeqTracker::new(from_start);
        let out = seqs.iter().map(|&s| t.observe(s)).collect();
        (t, out)
    }

    fn counts(t: &SeqTracker) -> (u64, u64, u64, u64) {
        (t.received(), t.lost(), t.duplicates(), t.reordered())
    }

    #[test]
    fn a_clean_stream_has_nothing_to_report() {
        let (t, out) = feed(true, &[1, 2, 3, 4, 5]);
        assert!(out.iter().all(|o| *o == Outcome::InOrder));
        assert_eq!(counts(&t), (5, 0, 0, 0));
        assert_eq!(t.unique(), 5);
        assert!(t.complete_until(5));
        assert_eq!(t.lost_until(5), 0);
    }

    #[test]
    fn the_crafted_stream_gap_duplicate_reorder() {
        // 3 arrives late (reordered), then again (duplicate); 6 never arrives (lost).
        let (t, out) = feed(true, &[1, 2, 4, 3, 3, 5, 7]);
        use Outcome::*;
        assert_eq!(
            out,
            vec![
                InOrder,
                InOrder,
                Gap { missing: 1 },
                Reordered,
                Duplicate,
                InOrder,
                Gap { missing: 1 }
            ]
        );
        assert_eq!(counts(&t), (7, 1, 1, 1));
        assert_eq!(t.lost_ranges(10), vec![(6, 6)]);
        assert_eq!(t.unique(), 6);
        assert!(!t.complete_until(7));
    }

    #[test]
    fn from_start_counts_a_missing_beginning() {
        let (t, _) = feed(true, &[4, 5]);
        assert_eq!(counts(&t), (2, 3, 0, 0));
        assert_eq!(t.lost_ranges(10), vec![(1, 3)]);
    }

    #[test]
    fn without_from_start_the_first_seen_is_the_baseline() {
        let (t, _) = feed(false, &[40, 41, 43]);
        assert_eq!(counts(&t), (3, 1, 0, 0));
        assert_eq!(t.first(), Some(40));
        // A message from before the baseline arriving later is reordered, once.
        let (t, out) = feed(false, &[40, 41, 38, 38]);
        assert_eq!(out[2], Outcome::Reordered);
        assert_eq!(out[3], Outcome::Duplicate);
        assert_eq!(counts(&t), (4, 0, 1, 1));
    }

    #[test]
    fn the_end_of_a_stream_counts_only_when_the_last_number_is_known() {
        let (t, _) = feed(true, &[1, 2, 3]);
        assert_eq!(t.lost(), 0);
        assert_eq!(t.lost_until(5), 2);
        assert_eq!(t.tail_missing(5), 2);
        assert_eq!(t.lost_until(2), 0);
        let never = SeqTracker::new(true);
        assert_eq!(never.lost_until(5), 5);
        assert_eq!(SeqTracker::new(false).lost_until(5), 0);
    }

    #[test]
    fn a_late_filler_is_not_lost() {
        let (t, _) = feed(true, &[1, 5, 2, 3, 4, 6]);
        assert_eq!(counts(&t), (6, 0, 0, 3));
        assert!(t.complete_until(6));
    }

    #[test]
    fn duplicates_of_every_kind() {
        // Repeat of the highest, of an older one, and of a filled gap.
        let (t, _) = feed(true, &[1, 2, 2, 1, 4, 3, 3, 4]);
        assert_eq!(counts(&t), (8, 0, 4, 1));
    }

    #[test]
    fn a_huge_jump_is_cheap() {
        let (t, _) = feed(true, &[1, 1_000_000_000_000, 2]);
        assert_eq!(t.lost(), 1_000_000_000_000 - 3);
        assert_eq!(t.reordered(), 1);
        assert_eq!(t.lost_ranges(10), vec![(3, 999_999_999_999)]);
    }

    /// The rules written out naively: a set of seen numbers.
    fn model(from_start: bool, seqs: &[u64]) -> (u64, u64, u64, u64) {
        let mut seen = std::collections::HashSet::new();
        let (mut first, mut highest) = (from_start.then_some(1), None::<u64>);
        let (mut dup, mut reord) = (0, 0);
        for &s in seqs {
            let base = *first.get_or_insert(s);
            if !seen.insert(s) {
                dup += 1;
            } else if s < base || highest.is_some_and(|h| s < h) {
                reord += 1;
            }
            if s >= base {
                highest = Some(highest.map_or(s, |h| h.max(s)));
            }
        }
        let base = first.unwrap_or(1);
        let lost = highest.map_or(0, |h| (base..=h).filter(|n| !seen.contains(n)).count());
        (seqs.len() as u64, lost as u64, dup, reord)
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_naive_model(
            from_start: bool,
            seqs in proptest::collection::vec(1u64..60, 0..120),
        ) {
            let (t, _) = feed(from_start, &seqs);
            proptest::prop_assert_eq!(counts(&t), model(from_start, &seqs));
            proptest::prop_assert_eq!(t.unique() + t.duplicates(), t.received());
        }
    }
}
