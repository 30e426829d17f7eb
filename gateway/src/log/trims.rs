//! Trim marks: per channel, the highest sequence number that retention has removed from its
//! history. They turn "did this channel lose messages after position P?" into a lookup, so a
//! resume or a catch-up that retention overtook is reported as a `reset` instead of a silent
//! gap, for one channel or across a wildcard filter alike.
//!
//! Retention removes a channel's oldest entries first, so a mark `W` means: every message of
//! the channel with `seq <= W` is gone, and the one at `W` was there. A reader that has seen
//! everything of the channel up to `P < W` has therefore lost `P+1 ..= W` of it.
//!
//! Marks are written in the same batch as the deletions (keyspace `trims`, so they survive a
//! restart) and raised in memory *before* that batch commits: a reader whose read already
//! misses deleted entries always finds the mark, and the [`TrimMarks::generation`] it
//! compared before the read has moved. Marks below the lowest sequence number in history say
//! nothing that the global check (`first_seq`) does not, so the sweep prunes them; memory then
//! follows the channels retention is trimming now, not every channel ever trimmed.

use super::LogError;
use super::store::{self, Store, storage_err};
use crate::core::topic;
use fjall::OwnedWriteBatch;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// The marks, shared by the writer (which raises and prunes them) and readers.
#[derive(Debug, Default)]
pub struct TrimMarks {
    /// Bumped after every change, so readers can skip the lookup when nothing moved.
    generation: AtomicU64,
    /// The highest mark over all channels: a reader past it has lost nothing to retention.
    highest: AtomicU64,
    marks: RwLock<HashMap<String, u64>>,
}

impl TrimMarks {
    /// Loads the marks stored in `store`.
    pub fn load(store: &Store) -> Result<TrimMarks, LogError> {
        let mut marks = HashMap::new();
        let mut highest = 0;
        for g in store.trims.iter() {
            let (k, v) = g
                .into_inner()
                .map_err(|e| storage_err("reading trim marks", e))?;
            let Ok(channel) = String::from_utf8(k.to_vec()) else {
                tracing::warn!("log store: skipping a malformed trim mark");
                continue;
            };
            let seq: u64 = store::decode(&v)?;
            highest = highest.max(seq);
            marks.insert(channel, seq);
        }
        Ok(TrimMarks {
            generation: AtomicU64::new(0),
            highest: AtomicU64::new(highest),
            marks: RwLock::new(marks),
        })
    }

    /// Changes so far; a reader that saw the same value before and after a read knows no
    /// mark moved in between.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Records in memory and into `wb` that retention removed `channel`'s entries up to
    /// `seq`. Call before `wb` commits.
    pub fn raise(
        &self,
        store: &Store,
        wb: &mut OwnedWriteBatch,
        channel: &str,
        seq: u64,
    ) -> Result<(), LogError> {
        let value = store::encode(&seq)?;
        {
            let mut marks = self.marks.write();
            let m = marks.entry(channel.to_owned()).or_insert(0);
            if *m >= seq {
                return Ok(());
            }
            *m = seq;
        }
        self.highest.fetch_max(seq, Ordering::AcqRel);
        self.generation.fetch_add(1, Ordering::AcqRel);
        wb.insert(&store.trims, channel.as_bytes(), value);
        Ok(())
    }

    /// Whether retention removed `channel`'s message `seq` (it may still be in a history
    /// block that other channels' messages keep; readers skip it).
    pub fn removed(&self, channel: &str, seq: u64) -> bool {
        seq <= self.highest.load(Ordering::Acquire)
            && self.marks.read().get(channel).is_some_and(|m| seq <= *m)
    }

    /// Channels matching `filter` that lost entries with `seq > after`, each with its mark,
    /// sorted by channel.
    pub fn after(&self, filter: &str, after: u64) -> Vec<(String, u64)> {
        if self.highest.load(Ordering::Acquire) <= after {
            return Vec::new();
        }
        let mut out: Vec<(String, u64)> = if topic::is_wildcard_filter(filter) {
            self.marks
                .read()
                .iter()
                .filter(|(c, m)| **m > after && topic::matches(filter, c))
                .map(|(c, m)| (c.clone(), *m))
                .collect()
        } else {
            self.marks
                .read()
                .get(filter)
                .filter(|m| **m > after)
                .map(|m| vec![(filter.to_owned(), *m)])
                .unwrap_or_default()
        };
        out.sort();
        out
    }

    /// Removes the marks below `lowest` (the lowest sequence number in history, already
    /// published to readers) from memory and from the store. Returns how many went.
    pub fn prune_below(&self, store: &Store, lowest: u64) -> Result<usize, LogError> {
        let gone: Vec<String> = self
            .marks
            .read()
            .iter()
            .filter(|(_, m)| **m < lowest)
            .map(|(c, _)| c.clone())
            .collect();
        if gone.is_empty() {
            return Ok(0);
        }
        let mut wb = store.db.batch();
        for c in &gone {
            wb.remove(&store.trims, c.as_bytes());
        }
        wb.commit()
            .map_err(|e| storage_err("pruning trim marks", e))?;
        let mut marks = self.marks.write();
        for c in &gone {
            if marks.get(c).is_some_and(|m| *m < lowest) {
                marks.remove(c);
            }
        }
        Ok(gone.len())
    }
}
