//! The writer's in-memory state, and how it is rebuilt from the store when the log opens:
//! format check, epoch, where sequence numbers continue, the per-channel history index.

use super::LogError;
use super::block::{BlockBuilder, ChanEntry};
use super::history::HistoryIndex;
use super::keys;
use super::store::{
    self, FORMAT_VERSION, META_EPOCH, META_FORMAT, META_RESERVED, Store, storage_err,
};
use super::trims::TrimMarks;
use crate::core::namespace::NamespaceRules;
use std::sync::Arc;

/// How far the durable "reserved up to" mark is raised at a time. Each raise costs one fsync;
/// a crash leaves at most this many numbers unused.
pub const RESERVE_STEP: u64 = 1_000_000;

/// Everything the single writer owns. Only the writer task touches it, so it needs no locks;
/// it moves into a blocking thread for each commit that may block, and back.
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
    /// Per-channel counts and heads, and the lowest sequence number in history (rebuilt at
    /// open), so that retention seeks past what it already deleted.
    pub history: HistoryIndex,
    /// The history block being built, kept so its buffers are reused from batch to batch.
    pub block: BlockBuilder,
    /// Per-channel marks of what retention removed, shared with readers.
    pub trims: Arc<TrimMarks>,
    /// De-duplication keys older than this many milliseconds are forgotten by the sweep.
    pub dedupe_ttl_ms: u64,
    /// No live de-duplication expiry entry is older than this (ms): the TTL sweep starts here
    /// instead of walking what earlier sweeps deleted. 0 after open; raised by a complete
    /// sweep, lowered by a write of an older key (a clock stepping back).
    pub dedupe_floor_ms: u64,
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
        let last = store.last_seq()?.unwrap_or(0).max(reserved);
        let history = index_channels(&store)?;
        let trims = Arc::new(TrimMarks::load(&store)?);
        Ok(WriterState {
            store,
            rules,
            epoch,
            next_seq: last + 1,
            reserved,
            history,
            block: BlockBuilder::default(),
            trims,
            dedupe_ttl_ms,
            dedupe_floor_ms: 0,
        })
    }

    /// Highest sequence number handed out so far (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
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

/// Rebuilds the history index with one pass over the channel index. Entries come in
/// (channel, seq) order, so the first item of each channel's first entry is its head; every
/// item counts once for its channel and once for its block.
fn index_channels(store: &Store) -> Result<HistoryIndex, LogError> {
    let mut index = HistoryIndex::default();
    // The channel being counted: its key prefix, name, message count and head.
    let mut cur: Option<(Vec<u8>, String, u64, u64)> = None;
    for g in store.chan.iter() {
        let (k, v) = g
            .into_inner()
            .map_err(|e| storage_err("scanning the channel index", e))?;
        let entry: ChanEntry = match store::decode(&v) {
            Ok(e) => e,
            Err(_) => {
                tracing::warn!("log store: skipping a malformed channel index entry");
                continue;
            }
        };
        let (Some(first), n) = (entry.items.first(), entry.items.len() as u64) else {
            continue;
        };
        index.count_block(entry.block, n);
        if let Some((prefix, _, count, _)) = &mut cur {
            if k.starts_with(prefix) && k.len() == prefix.len() + keys::SEQ_LEN {
                *count += n;
                continue;
            }
        }
        match keys::decode_chan_key(&k) {
            Some((ch, _)) => {
                if let Some((_, name, count, head)) = cur.take() {
                    index.add(&name, count, head);
                }
                cur = Some((keys::chan_prefix(&ch), ch, n, first.seq));
            }
            None => tracing::warn!("log store: skipping a malformed channel index key"),
        }
    }
    if let Some((_, name, count, head)) = cur {
        index.add(&name, count, head);
    }
    index.settle_blocks();
    Ok(index)
}
