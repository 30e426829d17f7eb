//! The on-disk layout of the embedded log (one fjall database) and everything that reads it.
//!
//! Keyspaces (see [`super::keys`] for key encodings):
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `meta` | `format`, `epoch`, `reserved` | postcard `u32` / `u64` / `u64` |
//! | `msgs` | last seq of the block | a history block: many messages (see [`super::block`]) |
//! | `chan` | (channel, its last seq in the block) | postcard [`ChanEntry`]: the block and the channel's messages in it, with their `ts_ms` (age retention reads them) |
//! | `retained` | topic | postcard [`StoredMessage`] |
//! | `dedupe` | de-duplication key | postcard [`DedupeRecord`] |
//! | `dedupe_t` | (created_ms, de-duplication key) | empty (expiry index) |
//! | `sessions` | client id | the session's state bytes, as given |
//! | `trims` | channel | postcard `u64`: highest seq retention removed from it (see [`super::trims`]) |
//!
//! `reserved` is the highest sequence number the writer may hand out without first making a
//! higher mark durable; after a crash the log restarts above it, so no number is reused.

use super::LogError;
use super::block::{Block, ChanEntry};
use super::keys;
use super::trims::TrimMarks;
use crate::core::{Position, StoredMessage, topic};
use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// Version of the layout above. Bump it (and teach `open` to migrate or refuse) whenever a
/// key or value encoding changes.
pub const FORMAT_VERSION: u32 = 2;

/// Memtable size of the history keyspaces.
const HISTORY_MEMTABLE: u64 = 8 * 1024 * 1024;

/// Meta key holding [`FORMAT_VERSION`].
pub const META_FORMAT: &[u8] = b"format";
/// Meta key holding the epoch.
pub const META_EPOCH: &[u8] = b"epoch";
/// Meta key holding the reserved-up-to sequence mark.
pub const META_RESERVED: &[u8] = b"reserved";

/// What the `dedupe` keyspace stores per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupeRecord {
    /// Sequence number the first copy received.
    pub seq: u64,
    /// When the key was written (ms since the Unix epoch); the TTL sweep counts from here.
    pub created_ms: u64,
}

/// Handles to the database and its keyspaces. Cheap to clone; shared by the writer and
/// readers.
#[derive(Clone)]
pub struct Store {
    /// The database; write batches and fsyncs go through it.
    pub db: Database,
    /// Small fixed keys: format version, epoch, reserved mark.
    pub meta: Keyspace,
    /// History blocks by last sequence number.
    pub msgs: Keyspace,
    /// Channel index: which messages of which block belong to a channel, with timestamps.
    pub chan: Keyspace,
    /// Retained copy per topic, independent of history.
    pub retained: Keyspace,
    /// De-duplication keys.
    pub dedupe: Keyspace,
    /// De-duplication keys ordered by creation time, for the TTL sweep.
    pub dedupe_t: Keyspace,
    /// Persistent MQTT sessions.
    pub sessions: Keyspace,
    /// Per-channel trim marks.
    pub trims: Keyspace,
    /// What eviction scans did, for tests that check they never walk deleted entries.
    #[cfg(test)]
    pub probe: Arc<ScanProbe>,
}

/// Counters of eviction scans (tests only).
#[cfg(test)]
#[derive(Debug, Default)]
pub struct ScanProbe {
    /// Eviction scans that found at least one entry.
    pub scans: std::sync::atomic::AtomicU64,
    /// Scans whose first entry was not the key the scan started at: they started below the
    /// channel's oldest live entry, where deleted entries may lie.
    pub below_head: std::sync::atomic::AtomicU64,
    /// Entries the scans read, deleted or not.
    pub visited: std::sync::atomic::AtomicU64,
}

/// Maps any store-engine or encoding failure to [`LogError::Storage`], logging it.
pub fn storage_err(context: &str, e: impl std::fmt::Display) -> LogError {
    tracing::error!(%e, "log store: {context} failed");
    LogError::Storage(format!("{context}: {e}"))
}

/// Encodes a value with postcard.
pub fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, LogError> {
    postcard::to_stdvec(v).map_err(|e| storage_err("encoding a record", e))
}

/// Decodes a postcard value.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, LogError> {
    postcard::from_bytes(bytes).map_err(|e| storage_err("decoding a record", e))
}

impl Store {
    /// Opens (or creates) the database in `dir` with all keyspaces.
    pub fn open(dir: &Path) -> Result<Store, LogError> {
        let db = Database::builder(dir).open().map_err(|e| {
            tracing::error!(%e, dir = %dir.display(), "cannot open the log store");
            LogError::Storage(format!(
                "cannot open the log store in {}: {e} (is another gateway using this data \
                 directory, or is it unreadable?)",
                dir.display()
            ))
        })?;
        let ks = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(|e| storage_err("opening a keyspace", e))
        };
        // History is read by ranges, and point reads of `msgs` look up keys the channel index
        // just found: bloom filters would only cost CPU on every table flush and compaction.
        let unfiltered = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default()
                    .filter_policy(fjall::config::FilterPolicy::disabled())
                    .max_memtable_size(HISTORY_MEMTABLE)
            })
            .map_err(|e| storage_err("opening a keyspace", e))
        };
        Ok(Store {
            meta: ks("meta")?,
            msgs: unfiltered("msgs")?,
            chan: unfiltered("chan")?,
            retained: ks("retained")?,
            dedupe: ks("dedupe")?,
            dedupe_t: ks("dedupe_t")?,
            sessions: ks("sessions")?,
            trims: ks("trims")?,
            #[cfg(test)]
            probe: Arc::default(),
            db,
        })
    }

    /// Reads and decodes one meta value.
    pub fn meta_get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, LogError> {
        match self
            .meta
            .get(key)
            .map_err(|e| storage_err("reading meta", e))?
        {
            Some(v) => decode(&v).map(Some),
            None => Ok(None),
        }
    }

    /// True when no keyspace other than `meta` holds anything.
    pub fn data_is_empty(&self) -> Result<bool, LogError> {
        for ks in [
            &self.msgs,
            &self.chan,
            &self.retained,
            &self.dedupe,
            &self.sessions,
        ] {
            if !ks
                .is_empty()
                .map_err(|e| storage_err("inspecting the store", e))?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Highest sequence number in history, if any: the last block's key.
    pub fn last_seq(&self) -> Result<Option<u64>, LogError> {
        self.msgs.last_key_value().map(guard_seq).transpose()
    }

    /// Up to `max` history messages with `from <= seq <= to`, ascending, leaving out those
    /// retention removed (`trims`).
    pub fn read_range(
        &self,
        epoch: u64,
        from: u64,
        to: u64,
        max: usize,
        trims: &TrimMarks,
    ) -> Result<Vec<Arc<StoredMessage>>, LogError> {
        let mut out = Vec::new();
        if from > to || max == 0 {
            return Ok(out);
        }
        // Blocks are keyed by their last seq: the first one at or above `from` holds `from`
        // or starts after it.
        for g in self.msgs.range(keys::seq_key(from)..) {
            let v = g.value().map_err(|e| storage_err("reading history", e))?;
            let block = Block::parse(&v[..])?;
            for i in block.lower_bound(from)..block.len() {
                let seq = block.seq(i);
                if seq > to {
                    return Ok(out);
                }
                if push_live(&mut out, epoch, &block, i, trims)? == max {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// Up to `max` history messages with `from <= seq <= to`, newest first, leaving out
    /// those retention removed.
    pub fn read_range_rev(
        &self,
        epoch: u64,
        from: u64,
        to: u64,
        max: usize,
        trims: &TrimMarks,
    ) -> Result<Vec<Arc<StoredMessage>>, LogError> {
        let mut out = Vec::new();
        if from > to || max == 0 {
            return Ok(out);
        }
        // The block holding `to` (or the first after it) is the newest one to read.
        let top = match self.msgs.range(keys::seq_key(to)..).next() {
            Some(g) => guard_seq(g)?,
            None => u64::MAX,
        };
        for g in self
            .msgs
            .range(keys::seq_key(from)..=keys::seq_key(top))
            .rev()
        {
            let v = g.value().map_err(|e| storage_err("reading history", e))?;
            let block = Block::parse(&v[..])?;
            for i in (0..block.lower_bound(to.saturating_add(1))).rev() {
                if block.seq(i) < from {
                    return Ok(out);
                }
                if push_live(&mut out, epoch, &block, i, trims)? == max {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// Up to `max` history messages of `channel` with `from <= seq <= to`, ascending,
    /// leaving out those retention removed.
    pub fn read_channel_range(
        &self,
        epoch: u64,
        channel: &str,
        from: u64,
        to: u64,
        max: usize,
        trims: &TrimMarks,
    ) -> Result<Vec<Arc<StoredMessage>>, LogError> {
        let mut out = Vec::new();
        if from > to || max == 0 {
            return Ok(out);
        }
        let range = keys::chan_key(channel, from)..=keys::chan_key(channel, u64::MAX);
        for g in self.chan.range(range) {
            let v = g
                .value()
                .map_err(|e| storage_err("reading the channel index", e))?;
            let entry: ChanEntry = decode(&v)?;
            let wanted = entry
                .items
                .iter()
                .map(|it| it.seq)
                .filter(|s| *s >= from && !trims.removed(channel, *s))
                .take_while(|s| *s <= to);
            let mut wanted = wanted.peekable();
            if wanted.peek().is_none() {
                if entry.items.first().is_some_and(|it| it.seq > to) {
                    break;
                }
                continue;
            }
            // Retention may have removed the block since the index was read.
            let Some(v) = self
                .msgs
                .get(keys::seq_key(entry.block))
                .map_err(|e| storage_err("reading history", e))?
            else {
                continue;
            };
            let block = Block::parse(&v[..])?;
            for seq in wanted {
                let i = block
                    .find(seq)
                    .ok_or_else(|| corrupt("channel index entry"))?;
                let msg = block.message(i)?;
                out.push(Arc::new(StoredMessage::new(Position { epoch, seq }, msg)));
                if out.len() == max {
                    return Ok(out);
                }
            }
            if entry.items.last().is_some_and(|it| it.seq >= to) {
                break;
            }
        }
        Ok(out)
    }

    /// Retained messages matching `filter`, skipping those expired at `now_ms` and those
    /// with `seq > released` (not yet durable and offered to live subscribers).
    pub fn retained_matching(
        &self,
        filter: &str,
        now_ms: u64,
        released: u64,
    ) -> Result<Vec<Arc<StoredMessage>>, LogError> {
        let mut out = Vec::new();
        let prefix = literal_prefix(filter);
        for g in self.retained.prefix(prefix.as_bytes()) {
            let (k, v) = g
                .into_inner()
                .map_err(|e| storage_err("reading retained", e))?;
            let Ok(name) = std::str::from_utf8(&k) else {
                continue;
            };
            if !topic::matches(filter, name) {
                continue;
            }
            let m: StoredMessage = decode(&v)?;
            if m.pos.seq <= released && m.msg.remaining_expiry(now_ms) != Some(0) {
                out.push(Arc::new(m));
            }
        }
        Ok(out)
    }

    /// One stored session.
    pub fn session(&self, client_id: &str) -> Result<Option<Vec<u8>>, LogError> {
        let v = self
            .sessions
            .get(client_id.as_bytes())
            .map_err(|e| storage_err("reading a session", e))?;
        Ok(v.map(|v| v.to_vec()))
    }

    /// Every stored session.
    pub fn sessions(&self) -> Result<Vec<(String, Vec<u8>)>, LogError> {
        let mut out = Vec::new();
        for g in self.sessions.iter() {
            let (k, v) = g
                .into_inner()
                .map_err(|e| storage_err("reading sessions", e))?;
            match String::from_utf8(k.to_vec()) {
                Ok(id) => out.push((id, v.to_vec())),
                Err(_) => tracing::warn!("log store: skipping a session with a non-UTF-8 id"),
            }
        }
        Ok(out)
    }

    /// A stored de-duplication record.
    pub fn dedupe_get(&self, key: &[u8]) -> Result<Option<DedupeRecord>, LogError> {
        match self
            .dedupe
            .get(key)
            .map_err(|e| storage_err("reading a dedupe key", e))?
        {
            Some(v) => decode(&v).map(Some),
            None => Ok(None),
        }
    }
}

/// The part of a filter before its first wildcard level, without the trailing `/`: every
/// topic it matches starts with these bytes (`a/#` also matches `a` itself).
fn literal_prefix(filter: &str) -> &str {
    let end = filter
        .split('/')
        .take_while(|l| *l != "+" && *l != "#")
        .map(|l| l.len() + 1)
        .sum::<usize>();
    if end > filter.len() {
        filter
    } else {
        &filter[..end.saturating_sub(1)]
    }
}

/// Decodes entry `i` of `block` into `out` unless retention removed it; returns `out.len()`.
fn push_live(
    out: &mut Vec<Arc<StoredMessage>>,
    epoch: u64,
    block: &Block<&[u8]>,
    i: usize,
    trims: &TrimMarks,
) -> Result<usize, LogError> {
    let seq = block.seq(i);
    let msg = block.message(i)?;
    if !trims.removed(&msg.topic, seq) {
        out.push(Arc::new(StoredMessage::new(Position { epoch, seq }, msg)));
    }
    Ok(out.len())
}

fn guard_seq(g: fjall::Guard) -> Result<u64, LogError> {
    let k = g.key().map_err(|e| storage_err("reading history", e))?;
    keys::decode_seq(&k).ok_or_else(|| corrupt("history key"))
}

fn corrupt(what: &str) -> LogError {
    tracing::error!("log store: malformed {what}");
    LogError::Storage(format!(
        "malformed {what} in the store (corrupted data directory?)"
    ))
}

#[cfg(test)]
mod tests {
    use super::literal_prefix;

    #[test]
    fn literal_prefix_stops_at_the_first_wildcard() {
        assert_eq!(literal_prefix("a/b/c"), "a/b/c");
        assert_eq!(literal_prefix("a/b/+"), "a/b");
        assert_eq!(literal_prefix("a/#"), "a");
        assert_eq!(literal_prefix("+/x"), "");
        assert_eq!(literal_prefix("#"), "");
        assert_eq!(literal_prefix("a/+/c"), "a");
    }
}
