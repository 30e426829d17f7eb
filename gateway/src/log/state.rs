//! The writer's in-memory state, and how it is rebuilt from the store when the log opens:
//! format check, epoch, where sequence numbers continue, per-channel history counts.

use super::LogError;
use super::keys;
use super::store::{
    self, FORMAT_VERSION, META_EPOCH, META_FORMAT, META_RESERVED, Store, storage_err,
};
use crate::core::namespace::NamespaceRules;
use std::collections::HashMap;
use std::sync::Arc;

/// How far the durable "reserved up to" mark is raised at a time. Each raise costs one fsync;
/// a crash leaves at most this many numbers unused.
pub const RESERVE_STEP: u64 = 1_000_000;

/// Everything the single writer owns. Only the writer task touches it, so it needs no locks;
/// it moves into a blocking thread for each commit and back.
pub struct WriterState {
    /// Database handles.
    pub store: Store,
    /// Decides what goes into history and how long it stays.
    pub rules: Arc<NamespaceRules>,
    /// The store's epoch, for the positions handed out.
    pub epoch: u64,
    /// The next sequence number to hand out.
    pub next_seq: u64,
    /// Highest sequence number covered by the durable reserved mark.
    pub reserved: u64,
    /// Messages in history per channel (rebuilt at open), for count retention.
    pub counts: HashMap<String, u64>,
    /// Lowest sequence number in history, if history is not empty.
    pub lowest: Option<u64>,
    /// De-duplication keys older than this many milliseconds are forgotten by the sweep.
    pub dedupe_ttl_ms: u64,
}

impl WriterState {
    /// Loads the state from an opened store, initialising a fresh one (format version, new
    /// epoch) durably. Refuses a store written in another format.
    pub fn load(
        store: Store,
        rules: Arc<NamespaceRules>,
        dedupe_ttl_ms: u64,
    ) -> Result<WriterState, LogError> {
        match store.meta_get::<u32>(META_FORMAT)? {
            Some(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(LogError::Incompatible(format!(
                    "the log store has format version {v}, this gateway reads version \
                     {FORMAT_VERSION}; run a gateway version that matches the data, or point \
                     it at a new data directory"
                )));
            }
            None if store.data_is_empty()? => init_fresh(&store)?,
            None => {
                return Err(LogError::Incompatible(
                    "the log store holds data but no format version; point the gateway at a \
                     new data directory"
                        .into(),
                ));
            }
        }
        let epoch = match store.meta_get::<u64>(META_EPOCH)? {
            Some(e) if e != 0 => e,
            _ => {
                return Err(LogError::Incompatible(
                    "the log store has no epoch; point the gateway at a new data directory".into(),
                ));
            }
        };
        let reserved = store.meta_get::<u64>(META_RESERVED)?.unwrap_or(0);
        let bounds = store.seq_bounds()?;
        let last = bounds.map_or(0, |(_, hi)| hi).max(reserved);
        let counts = count_channels(&store)?;
        Ok(WriterState {
            store,
            rules,
            epoch,
            next_seq: last + 1,
            reserved,
            counts,
            lowest: bounds.map(|(lo, _)| lo),
            dedupe_ttl_ms,
        })
    }

    /// Highest sequence number handed out so far (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Applies a committed change of history to the per-channel counts.
    pub fn apply_counts(&mut self, added: &HashMap<String, u64>, removed: &HashMap<String, u64>) {
        for (ch, n) in added {
            *self.counts.entry(ch.clone()).or_insert(0) += n;
        }
        for (ch, n) in removed {
            if let Some(c) = self.counts.get_mut(ch) {
                *c = c.saturating_sub(*n);
                if *c == 0 {
                    self.counts.remove(ch);
                }
            }
        }
    }

    /// Recomputes the lowest sequence number in history after a commit that added or removed
    /// messages. `min_added` is the lowest one the commit added.
    pub fn refresh_lowest(&mut self, min_added: Option<u64>, removed_any: bool) {
        if removed_any {
            let from = self.lowest.unwrap_or(0);
            match self.store.first_seq_from(from) {
                Ok(lo) => self.lowest = lo,
                // Keep a value that never claims history the store may not have: the new
                // messages are certainly there.
                Err(_) => self.lowest = min_added.or(self.lowest),
            }
        } else if self.lowest.is_none() {
            self.lowest = min_added;
        }
    }
}

/// Writes the meta keys of a new store and makes them durable.
fn init_fresh(store: &Store) -> Result<(), LogError> {
    let epoch = loop {
        let e: u64 = rand::random();
        if e != 0 {
            break e;
        }
    };
    let mut wb = store.db.batch();
    wb.insert(&store.meta, META_FORMAT, store::encode(&FORMAT_VERSION)?);
    wb.insert(&store.meta, META_EPOCH, store::encode(&epoch)?);
    wb.insert(&store.meta, META_RESERVED, store::encode(&0u64)?);
    wb.commit()
        .map_err(|e| storage_err("initialising the store", e))?;
    store
        .db
        .persist(fjall::PersistMode::SyncAll)
        .map_err(|e| storage_err("initialising the store", e))?;
    tracing::info!(epoch, "log store created");
    Ok(())
}

/// Counts history entries per channel by scanning the channel index.
fn count_channels(store: &Store) -> Result<HashMap<String, u64>, LogError> {
    let mut counts = HashMap::new();
    for g in store.chan.iter() {
        let k = g
            .key()
            .map_err(|e| storage_err("scanning the channel index", e))?;
        match keys::decode_chan_key(&k) {
            Some((ch, _)) => *counts.entry(ch).or_insert(0) += 1,
            None => tracing::warn!("log store: skipping a malformed channel index key"),
        }
    }
    Ok(counts)
}
