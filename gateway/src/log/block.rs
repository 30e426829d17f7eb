//! History blocks and channel-index entries: the record formats of `msgs` and `chan`.
//!
//! History is stored a block at a time, not a message at a time. A group commit packs the
//! messages it adds to history into blocks of up to [`MAX_BLOCK_ENTRIES`] messages or about
//! [`MAX_BLOCK_BYTES`], each written as one record keyed by its *last* sequence number, and
//! writes one channel-index entry per channel and block, keyed by (channel, the channel's last
//! sequence number in that block) and listing that channel's messages in the block. Every
//! store operation (memtable insert, journal entry, table flush, compaction, and the
//! tombstone retention leaves behind) is then paid per block and per channel-block instead of
//! twice per message, which is most of what a durable history costs per message.
//!
//! Keys are last sequence numbers so that a forward range scan starting at `seq` begins with
//! the record that holds `seq` (or the first one after it), and never walks the deleted
//! records that lie below it.
//!
//! Block layout (integers little-endian):
//!
//! ```text
//! data: the messages, postcard-encoded, back to back
//! footer: n × (seq: u64, end: u32)   entry i is data[end(i-1)..end(i)], end(-1) = 0
//!         n: u32
//! ```
//!
//! The footer goes last so a block is built in one buffer with no copy of the data. Sequence
//! numbers within a block strictly ascend. [`Block::parse`] checks all of this once, so the
//! accessors cannot fail on a malformed record.

use super::LogError;
use super::store::storage_err;
use crate::core::Message;
use serde::{Deserialize, Serialize};

/// A block is closed once its data reaches this many bytes.
pub const MAX_BLOCK_BYTES: usize = 64 * 1024;
/// A block is closed once it holds this many messages.
pub const MAX_BLOCK_ENTRIES: usize = 1024;

/// Bytes of one footer entry: seq (8) and end offset (4).
const FOOTER_ENTRY: usize = 12;

/// Builds one block at a time; reused across blocks of a group commit.
#[derive(Debug, Default)]
pub struct BlockBuilder {
    data: Vec<u8>,
    entries: Vec<(u64, u32)>,
}

impl BlockBuilder {
    /// Appends `msg` as entry `seq`, which must be above every seq already in the block. On
    /// error the block is unchanged.
    pub fn push(&mut self, seq: u64, msg: &Message) -> Result<(), LogError> {
        debug_assert!(self.entries.last().is_none_or(|(s, _)| *s < seq));
        let before = self.data.len();
        let written = match postcard::to_io(msg, &mut self.data) {
            Ok(_) => u32::try_from(self.data.len())
                .map_err(|_| storage_err("encoding a history entry", "block too large")),
            Err(e) => Err(storage_err("encoding a history entry", e)),
        };
        match written {
            Ok(end) => {
                self.entries.push((seq, end));
                Ok(())
            }
            Err(e) => {
                self.data.truncate(before);
                Err(e)
            }
        }
    }

    /// Entries so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the block should be closed before another entry is added.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= MAX_BLOCK_ENTRIES || self.data.len() >= MAX_BLOCK_BYTES
    }

    /// The last entry's seq: the block's key.
    pub fn last_seq(&self) -> Option<u64> {
        self.entries.last().map(|(s, _)| *s)
    }

    /// Appends the footer and returns the finished record. Call [`BlockBuilder::reset`]
    /// before the next [`BlockBuilder::push`]; the buffers keep their capacity for the next
    /// block.
    pub fn seal(&mut self) -> &[u8] {
        // At most MAX_BLOCK_ENTRIES entries when `is_full` is checked before each push.
        let count = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        self.data.reserve(self.entries.len() * FOOTER_ENTRY + 4);
        for (seq, end) in &self.entries {
            self.data.extend_from_slice(&seq.to_le_bytes());
            self.data.extend_from_slice(&end.to_le_bytes());
        }
        self.data.extend_from_slice(&count.to_le_bytes());
        &self.data
    }

    /// Empties the builder, keeping its buffers.
    pub fn reset(&mut self) {
        self.data.clear();
        self.entries.clear();
    }

    /// The finished record as an owned buffer; the builder is empty afterwards.
    #[cfg(test)]
    pub fn finish(&mut self) -> Vec<u8> {
        let out = self.seal().to_vec();
        self.reset();
        out
    }
}

/// A parsed block record.
#[derive(Debug)]
pub struct Block<B> {
    bytes: B,
    n: usize,
    data_len: usize,
}

impl<B: AsRef<[u8]>> Block<B> {
    /// Checks a record and wraps it.
    pub fn parse(bytes: B) -> Result<Block<B>, LogError> {
        let b = bytes.as_ref();
        let bad = || storage_err("reading history", "malformed history block");
        let count_at = b.len().checked_sub(4).ok_or_else(bad)?;
        let n = u32::from_le_bytes(b[count_at..].try_into().map_err(|_| bad())?) as usize;
        let footer = n
            .checked_mul(FOOTER_ENTRY)
            .and_then(|f| f.checked_add(4))
            .ok_or_else(bad)?;
        let data_len = b.len().checked_sub(footer).ok_or_else(bad)?;
        let block = Block { bytes, n, data_len };
        let mut prev_seq = None;
        let mut prev_end = 0usize;
        for i in 0..n {
            let (seq, end) = block.entry(i);
            if prev_seq.is_some_and(|p| p >= seq) || end < prev_end || end > data_len {
                return Err(bad());
            }
            prev_seq = Some(seq);
            prev_end = end;
        }
        Ok(block)
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Seq of entry `i` (`i < len()`).
    pub fn seq(&self, i: usize) -> u64 {
        self.entry(i).0
    }

    /// Index of the first entry with seq >= `seq` (`len()` when there is none).
    pub fn lower_bound(&self, seq: u64) -> usize {
        let (mut lo, mut hi) = (0, self.n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.seq(mid) < seq {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Index of the entry with exactly `seq`.
    pub fn find(&self, seq: u64) -> Option<usize> {
        let i = self.lower_bound(seq);
        (i < self.n && self.seq(i) == seq).then_some(i)
    }

    /// Decodes entry `i` (`i < len()`).
    pub fn message(&self, i: usize) -> Result<Message, LogError> {
        let start = if i == 0 { 0 } else { self.entry(i - 1).1 };
        let end = self.entry(i).1;
        super::store::decode(&self.bytes.as_ref()[start..end])
    }

    fn entry(&self, i: usize) -> (u64, usize) {
        let at = self.data_len + i * FOOTER_ENTRY;
        let b = &self.bytes.as_ref()[at..at + FOOTER_ENTRY];
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[..8]);
        let mut end = [0u8; 4];
        end.copy_from_slice(&b[8..]);
        (u64::from_le_bytes(seq), u32::from_le_bytes(end) as usize)
    }
}

/// One message of a channel-index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChanItem {
    /// The message's sequence number.
    pub seq: u64,
    /// When it was accepted (ms since the Unix epoch): age retention reads it here.
    pub ts_ms: u64,
}

/// A channel's messages in one block, oldest first. Retention removes a channel's messages
/// from the front: an entry it empties is deleted, one it shortens is rewritten under the same
/// key (the last seq does not change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChanEntry {
    /// Key of the block holding the messages (its last seq).
    pub block: u64,
    /// The messages, ascending.
    pub items: Vec<ChanItem>,
}

#[cfg(test)]
mod tests {
    // A failed unwrap here is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::core::{MessageProps, QoS};
    use proptest::prelude::*;

    fn msg(topic: &str, payload: &[u8]) -> Message {
        Message {
            topic: topic.into(),
            payload: bytes::Bytes::copy_from_slice(payload),
            qos: QoS::AtMostOnce,
            retain: false,
            props: MessageProps::default(),
            ts_ms: 7,
            origin: None,
        }
    }

    proptest! {
        #[test]
        fn blocks_round_trip(
            entries in proptest::collection::vec((1u64..1000, any::<Vec<u8>>()), 1..40)
        ) {
            let mut b = BlockBuilder::default();
            let mut seq = 0;
            let mut written = Vec::new();
            for (gap, payload) in entries {
                seq += gap;
                b.push(seq, &msg("t/x", &payload)).unwrap();
                written.push((seq, payload));
            }
            prop_assert_eq!(b.last_seq(), Some(seq));
            let block = Block::parse(b.finish()).unwrap();
            prop_assert_eq!(b.len(), 0);
            prop_assert_eq!(block.len(), written.len());
            for (i, (seq, payload)) in written.iter().enumerate() {
                prop_assert_eq!(block.seq(i), *seq);
                prop_assert_eq!(block.find(*seq), Some(i));
                prop_assert_eq!(block.lower_bound(*seq), i);
                prop_assert_eq!(&block.message(i).unwrap().payload[..], &payload[..]);
                prop_assert_eq!(block.find(seq + 1).is_some(), written.get(i + 1).is_some_and(|n| n.0 == seq + 1));
            }
            prop_assert_eq!(block.lower_bound(u64::MAX), block.len());
        }

        #[test]
        fn parsing_garbage_never_panics(bytes in any::<Vec<u8>>()) {
            if let Ok(block) = Block::parse(&bytes[..]) {
                for i in 0..block.len() {
                    let _ = block.message(i);
                    let _ = block.find(block.seq(i));
                }
            }
        }
    }

    #[test]
    fn a_truncated_or_reordered_block_is_refused() {
        let mut b = BlockBuilder::default();
        b.push(1, &msg("a", b"one")).unwrap();
        b.push(2, &msg("b", b"two")).unwrap();
        let good = b.finish();
        assert!(Block::parse(&good[..]).is_ok());
        assert!(Block::parse(&good[..good.len() - 1]).is_err());
        assert!(Block::parse(&good[1..]).is_err());
        assert!(Block::parse(&[][..]).is_err());
        // Swap the two footer seqs: no longer ascending.
        let mut swapped = good.clone();
        let footer = swapped.len() - 4 - 2 * FOOTER_ENTRY;
        swapped[footer..footer + 8].copy_from_slice(&2u64.to_le_bytes());
        swapped[footer + FOOTER_ENTRY..footer + FOOTER_ENTRY + 8]
            .copy_from_slice(&1u64.to_le_bytes());
        assert!(Block::parse(&swapped[..]).is_err());
    }

    #[test]
    fn a_block_closes_at_its_entry_or_byte_limit() {
        let mut b = BlockBuilder::default();
        for seq in 1..=MAX_BLOCK_ENTRIES as u64 {
            assert!(!b.is_full());
            b.push(seq, &msg("t", b"")).unwrap();
        }
        assert!(b.is_full());
        b.finish();
        b.push(1, &msg("t", &vec![0; MAX_BLOCK_BYTES])).unwrap();
        assert!(b.is_full());
    }
}
