//! A set of sequence numbers kept as disjoint ranges: the gaps of one device's stream. A jump
//! from 5 to 1,000,005 is one range, not a million entries.

use std::collections::BTreeMap;

/// Missing sequence numbers, as half-open ranges `start..end`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gaps {
    /// start → end (exclusive); ranges never touch or overlap.
    ranges: BTreeMap<u64, u64>,
    /// Numbers in all ranges.
    count: u64,
}

impl Gaps {
    /// Adds `start..end` (empty ranges are ignored). Callers add only above everything held,
    /// but overlapping input is merged correctly anyway.
    pub fn add(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut start, mut end) = (start, end);
        // Merge with every range that overlaps or touches start..end.
        let touching: Vec<(u64, u64)> = self
            .ranges
            .range(..=end)
            .rev()
            .take_while(|&(_, &e)| e >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            self.ranges.remove(&s);
            self.count -= e - s;
            start = start.min(s);
            end = end.max(e);
        }
        self.ranges.insert(start, end);
        self.count += end - start;
    }

    /// Removes `n`; true if it was missing.
    pub fn remove(&mut self, n: u64) -> bool {
        let Some((&start, &end)) = self.ranges.range(..=n).next_back() else {
            return false;
        };
        if n >= end {
            return false;
        }
        self.ranges.remove(&start);
        if start < n {
            self.ranges.insert(start, n);
        }
        if n + 1 < end {
            self.ranges.insert(n + 1, end);
        }
        self.count -= 1;
        true
    }

    /// True if `n` is missing.
    pub fn contains(&self, n: u64) -> bool {
        self.ranges
            .range(..=n)
            .next_back()
            .is_some_and(|(_, &end)| n < end)
    }

    /// How many numbers are missing.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The first `limit` ranges, as inclusive `(first, last)` pairs.
    pub fn ranges(&self, limit: usize) -> Vec<(u64, u64)> {
        self.ranges
            .iter()
            .take(limit)
            .map(|(&s, &e)| (s, e - 1))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_remove_and_count() {
        let mut g = Gaps::default();
        g.add(3, 4);
        g.add(6, 10);
        assert_eq!(g.count(), 5);
        assert_eq!(g.ranges(10), vec![(3, 3), (6, 9)]);
        assert!(g.remove(7));
        assert!(!g.remove(7));
        assert!(!g.remove(10));
        assert!(!g.remove(1));
        assert_eq!(g.ranges(10), vec![(3, 3), (6, 6), (8, 9)]);
        assert!(g.remove(3));
        assert!(g.remove(6));
        assert_eq!(g.count(), 2);
        assert!(g.contains(8) && g.contains(9) && !g.contains(10));
        assert_eq!(g.ranges(1), vec![(8, 9)]);
    }

    #[test]
    fn huge_jumps_stay_small() {
        let mut g = Gaps::default();
        g.add(2, u64::MAX);
        assert_eq!(g.count(), u64::MAX - 2);
        assert!(g.remove(1_000_000));
        assert_eq!(g.ranges(10).len(), 2);
    }

    #[test]
    fn overlapping_adds_merge() {
        let mut g = Gaps::default();
        g.add(1, 5);
        g.add(4, 8);
        g.add(8, 9);
        g.add(20, 20);
        assert_eq!(g.ranges(10), vec![(1, 8)]);
        assert_eq!(g.count(), 8);
    }
}
