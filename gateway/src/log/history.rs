//! The writer's in-memory index of history: per channel, how many entries it holds and the
//! sequence number of its oldest one (its *head*), plus the lowest sequence number over all
//! channels.
//!
//! Retention deletes from a channel's head, so in the store everything below a head is
//! tombstones until compaction drops them. Knowing the head lets every trim seek straight to
//! the first live entry instead of walking those tombstones, which keeps the cost of a trim
//! proportional to what it removes, not to how much was ever removed before. The global lowest
//! is the smallest head (every history entry is in exactly one channel), kept in an ordered
//! map so it is found in `O(log channels)` instead of by scanning history.
//!
//! It also counts, per history block (see [`super::block`]), how many of its messages are
//! still in history: a block is deleted with the retention write that removes its last one.
//! Only blocks with two or more messages left are counted; a block the index does not know
//! has exactly one. At low rates every group commit writes a block of one message, so this
//! keeps memory flat there: the map holds one entry per block that is still shared.

use std::collections::{BTreeMap, HashMap};

/// What the index knows about one channel with history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelHistory {
    /// Entries of the channel in history.
    pub count: u64,
    /// Sequence number of the oldest of them.
    pub head: u64,
}

/// Per-channel counts and heads, and the global lowest. Only channels with at least one entry
/// are present.
#[derive(Debug, Default)]
pub struct HistoryIndex {
    channels: HashMap<String, ChannelHistory>,
    /// Head sequence number → channel. Heads are distinct: a sequence number belongs to one
    /// message, on one channel.
    heads: BTreeMap<u64, String>,
    /// Block key → messages of the block still in history, for blocks with two or more.
    blocks: HashMap<u64, u64>,
}

impl HistoryIndex {
    /// The channel's entry, if it has history.
    pub fn get(&self, channel: &str) -> Option<ChannelHistory> {
        self.channels.get(channel).copied()
    }

    /// Number of channels with history.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Lowest sequence number in history, if history is not empty.
    pub fn lowest(&self) -> Option<u64> {
        self.heads.first_key_value().map(|(seq, _)| *seq)
    }

    /// Every channel with history, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, ChannelHistory)> {
        self.channels.iter().map(|(c, h)| (c.as_str(), *h))
    }

    /// Messages of the block `key` still in history (a block not counted has one).
    pub fn block_live(&self, key: u64) -> u64 {
        self.blocks.get(&key).copied().unwrap_or(1)
    }

    /// Number of blocks counted (those with two or more messages in history).
    #[cfg(test)]
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Records a block just written with `n` messages.
    pub fn new_block(&mut self, key: u64, n: u64) {
        if n > 1 {
            self.blocks.insert(key, n);
        }
    }

    /// While rebuilding: counts `n` more messages of the block `key`. Call
    /// [`HistoryIndex::settle_blocks`] after the last one.
    pub fn count_block(&mut self, key: u64, n: u64) {
        *self.blocks.entry(key).or_insert(0) += n;
    }

    /// Ends a rebuild: forgets the blocks with a single message left.
    pub fn settle_blocks(&mut self) {
        self.blocks.retain(|_, n| *n > 1);
    }

    /// Records that `n` messages of the block `key` left history.
    pub fn free_block(&mut self, key: u64, n: u64) {
        if let Some(live) = self.blocks.get_mut(&key) {
            *live = live.saturating_sub(n);
            if *live <= 1 {
                self.blocks.remove(&key);
            }
        }
    }

    /// Records `n` entries written to `channel`, the lowest of which is `first_seq`.
    pub fn add(&mut self, channel: &str, n: u64, first_seq: u64) {
        if n == 0 {
            return;
        }
        match self.channels.get_mut(channel) {
            Some(h) => {
                h.count += n;
                // Writes come above everything in history; this only guards the rebuild.
                if first_seq < h.head {
                    self.heads.remove(&h.head);
                    h.head = first_seq;
                    self.heads.insert(first_seq, channel.to_owned());
                }
            }
            None => {
                self.channels.insert(
                    channel.to_owned(),
                    ChannelHistory {
                        count: n,
                        head: first_seq,
                    },
                );
                self.heads.insert(first_seq, channel.to_owned());
            }
        }
    }

    /// Records that the `removed` oldest entries of `channel` were deleted and that its oldest
    /// remaining one is `next_head` (`None`: nothing is left).
    pub fn trim(&mut self, channel: &str, removed: u64, next_head: Option<u64>) {
        let Some(h) = self.channels.get_mut(channel) else {
            return;
        };
        match next_head {
            Some(next) => {
                h.count = h.count.saturating_sub(removed);
                if next != h.head {
                    self.heads.remove(&h.head);
                    h.head = next;
                    self.heads.insert(next, channel.to_owned());
                }
            }
            None => {
                self.heads.remove(&h.head);
                self.channels.remove(channel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_follows_the_smallest_head() {
        let mut ix = HistoryIndex::default();
        assert_eq!(ix.lowest(), None);
        ix.add("a", 3, 1);
        ix.add("b", 2, 4);
        ix.add("a", 1, 6);
        assert_eq!(ix.lowest(), Some(1));
        assert_eq!(ix.get("a"), Some(ChannelHistory { count: 4, head: 1 }));
        ix.trim("a", 3, Some(6));
        assert_eq!(ix.get("a"), Some(ChannelHistory { count: 1, head: 6 }));
        assert_eq!(ix.lowest(), Some(4));
        ix.trim("b", 2, None);
        assert_eq!(ix.get("b"), None);
        assert_eq!(ix.lowest(), Some(6));
        ix.trim("a", 1, None);
        assert_eq!((ix.len(), ix.lowest()), (0, None));
        // A channel emptied and written again starts over at its new first entry.
        ix.add("a", 2, 9);
        assert_eq!(ix.get("a"), Some(ChannelHistory { count: 2, head: 9 }));
        assert_eq!(ix.lowest(), Some(9));
    }

    #[test]
    fn blocks_are_counted_while_two_or_more_of_their_messages_are_left() {
        let mut ix = HistoryIndex::default();
        ix.new_block(10, 5);
        ix.new_block(20, 1);
        assert_eq!(
            (ix.block_live(10), ix.block_live(20), ix.blocks()),
            (5, 1, 1)
        );
        ix.free_block(10, 3);
        assert_eq!((ix.block_live(10), ix.blocks()), (2, 1));
        ix.free_block(10, 1);
        // One left: no longer counted, and still reported as one.
        assert_eq!((ix.block_live(10), ix.blocks()), (1, 0));
        ix.free_block(99, 1);
        // A rebuild counts entry by entry and keeps only the shared blocks.
        ix.count_block(30, 1);
        ix.count_block(30, 2);
        ix.count_block(40, 1);
        ix.settle_blocks();
        assert_eq!(
            (ix.block_live(30), ix.block_live(40), ix.blocks()),
            (3, 1, 1)
        );
    }

    #[test]
    fn trimming_an_unknown_channel_changes_nothing() {
        let mut ix = HistoryIndex::default();
        ix.add("a", 1, 5);
        ix.trim("zzz", 1, None);
        assert_eq!((ix.len(), ix.lowest()), (1, Some(5)));
    }
}
