//! Retention: trimming history per namespace policy (count and age), expiring old
//! de-duplication keys and expired retained messages.
//!
//! Count is enforced as messages are written ([`evict_head`] from the group commit); age, the
//! de-duplication TTL and retained expiry by [`sweep`], which the writer runs periodically
//! and which takes the time as a parameter so tests need no clock. Both remove a channel's
//! oldest entries first, so history stays a suffix of what was written.
//!
//! Cost: deleted entries stay in the store as tombstones until compaction, and a scan walks
//! every tombstone in its range. So no scan here starts below what is still live: eviction
//! starts at the channel's head (kept in [`super::history::HistoryIndex`]) and the TTL sweep
//! at the time the previous sweep reached. A trim then costs what it removes, however much
//! history was removed before.

use super::LogError;
use super::keys;
use super::state::WriterState;
use super::store::{self, Store, storage_err};
use crate::core::StoredMessage;
use fjall::OwnedWriteBatch;
use std::collections::HashMap;

/// Most deletions put into one write batch by the sweep; larger backlogs take several.
const CHUNK: usize = 8_192;

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// History entries removed (by age, or by count where a batch overshot the limit).
    pub evicted: u64,
    /// De-duplication keys older than the TTL that were forgotten.
    pub dedupe_expired: u64,
    /// Retained messages whose expiry interval had passed.
    pub retained_expired: u64,
}

/// How far count retention lets a channel go past `max_messages` before a write trims it back
/// to `max_messages`: 1/16 of the limit, at least 1. Every trim opens a range scan over the
/// store (memtables and every table file), which costs more than deleting a few entries;
/// trimming in steps pays that once per many writes instead of on each one.
pub fn count_slack(max_messages: u64) -> u64 {
    (max_messages / 16).max(1)
}

/// What [`evict_head`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    /// Entries deleted.
    pub removed: u64,
    /// The channel's oldest entry left in the store, `None` when none is left. (Entries of the
    /// write batch being built are not in the store yet.)
    pub next_head: Option<u64>,
    /// The highest sequence number deleted, if any was.
    pub last_removed: Option<u64>,
}

/// Deletes the oldest history entries of `channel`, whose oldest entry is `head`, into `wb`:
/// the first `over` entries unconditionally, then more while `too_old(ts_ms)` holds; at most
/// `limit`.
///
/// The scan starts at `head`, not at the start of the channel: below the head lie only
/// entries deleted earlier, which the store keeps as tombstones until compaction and which a
/// scan from the start would walk every time.
pub fn evict_head(
    store: &Store,
    wb: &mut OwnedWriteBatch,
    channel: &str,
    head: u64,
    over: u64,
    too_old: impl Fn(u64) -> bool,
    limit: usize,
) -> Result<Evicted, LogError> {
    let range = keys::chan_key(channel, head)..=keys::chan_key(channel, u64::MAX);
    let prefix_len = range.start().len() - keys::SEQ_LEN;
    // Tests check that the scan's first entry is exactly where it started.
    #[cfg(test)]
    let start = range.start().clone();
    let mut removed = 0u64;
    let mut next_head = None;
    let mut last_removed = None;
    for g in store.chan.range(range) {
        let (k, v) = g
            .into_inner()
            .map_err(|e| storage_err("scanning the channel index", e))?;
        #[cfg(test)]
        probe_visit(store, removed == 0, k == start);
        let Some(seq) = keys::chan_key_seq(&k, prefix_len) else {
            return Err(storage_err("scanning the channel index", "malformed key"));
        };
        if removed as usize >= limit {
            next_head = Some(seq);
            break;
        }
        if removed >= over && !too_old(store::decode(&v)?) {
            next_head = Some(seq);
            break;
        }
        wb.remove(&store.chan, k);
        wb.remove(&store.msgs, keys::seq_key(seq));
        removed += 1;
        last_removed = Some(seq);
    }
    Ok(Evicted {
        removed,
        next_head,
        last_removed,
    })
}

#[cfg(test)]
fn probe_visit(store: &Store, first: bool, at_start: bool) {
    use std::sync::atomic::Ordering::Relaxed;
    let p = &store.probe;
    p.visited.fetch_add(1, Relaxed);
    if first {
        p.scans.fetch_add(1, Relaxed);
        if !at_start {
            p.below_head.fetch_add(1, Relaxed);
        }
    }
}

/// Runs every retention rule once at time `now_ms`. Deletions are committed without fsync:
/// losing one in a crash only means it is repeated.
pub fn sweep(state: &mut WriterState, now_ms: u64) -> Result<SweepReport, LogError> {
    let mut report = SweepReport::default();
    if let Some(lowest) = state.history.lowest() {
        // `lowest` is already published as `first_seq`, which covers every mark below it.
        state.trims.prune_below(&state.store, lowest)?;
    }
    let mut channels: Vec<(String, u64, u64)> = state
        .history
        .iter()
        .map(|(c, h)| (c.to_owned(), h.count, h.head))
        .collect();
    channels.sort();
    let mut wb = state.store.db.batch();
    // Per channel: entries deleted into `wb` and the head after them, applied on commit.
    let mut trimmed: HashMap<String, Evicted> = HashMap::new();
    for (ch, count, mut head) in channels {
        let policy = state.rules.policy_for(&ch);
        let mut over = count.saturating_sub(policy.max_messages);
        let cutoff = policy
            .max_age
            .map(|a| now_ms.saturating_sub(u64::try_from(a.as_millis()).unwrap_or(u64::MAX)));
        if over == 0 && cutoff.is_none() {
            continue;
        }
        loop {
            let too_old = |ts: u64| cutoff.is_some_and(|c| ts < c);
            let ev = evict_head(&state.store, &mut wb, &ch, head, over, too_old, CHUNK)?;
            over = over.saturating_sub(ev.removed);
            report.evicted += ev.removed;
            if let Some(last) = ev.last_removed {
                state.trims.raise(&state.store, &mut wb, &ch, last)?;
            }
            if ev.removed > 0 {
                let t = trimmed.entry(ch.clone()).or_insert(Evicted {
                    removed: 0,
                    next_head: None,
                    last_removed: None,
                });
                t.removed += ev.removed;
                t.next_head = ev.next_head;
            }
            if wb.len() >= CHUNK {
                commit_history(
                    state,
                    std::mem::replace(&mut wb, state.store.db.batch()),
                    &mut trimmed,
                )?;
            }
            match ev.next_head {
                Some(next) if ev.removed as usize >= CHUNK => head = next,
                _ => break,
            }
        }
    }
    commit_history(state, wb, &mut trimmed)?;
    report.dedupe_expired = expire_dedupe(state, now_ms)?;
    report.retained_expired = expire_retained(&state.store, now_ms)?;
    Ok(report)
}

/// Commits history deletions and moves the trimmed channels' counts and heads.
fn commit_history(
    state: &mut WriterState,
    wb: OwnedWriteBatch,
    trimmed: &mut HashMap<String, Evicted>,
) -> Result<(), LogError> {
    if wb.is_empty() {
        return Ok(());
    }
    wb.commit().map_err(|e| storage_err("retention", e))?;
    for (ch, t) in trimmed.drain() {
        state.history.trim(&ch, t.removed, t.next_head);
    }
    Ok(())
}

/// Forgets de-duplication keys created before `now_ms - ttl`. The scan starts at the floor
/// that the previous complete sweep reached, so it does not walk what that one deleted (nor
/// the entries PUBREL removed below it), and each chunk continues after the previous one.
fn expire_dedupe(state: &mut WriterState, now_ms: u64) -> Result<u64, LogError> {
    let store = state.store.clone();
    let cutoff = now_ms.saturating_sub(state.dedupe_ttl_ms);
    if cutoff <= state.dedupe_floor_ms {
        return Ok(0);
    }
    let end = keys::dedupe_time_key(cutoff, &[]);
    let mut from = std::ops::Bound::Included(keys::dedupe_time_key(state.dedupe_floor_ms, &[]));
    let mut total = 0u64;
    loop {
        let mut wb = store.db.batch();
        let mut n = 0usize;
        let range = (from.clone(), std::ops::Bound::Excluded(end.clone()));
        for g in store.dedupe_t.range(range).take(CHUNK) {
            let k = g
                .key()
                .map_err(|e| storage_err("scanning dedupe keys", e))?;
            if let Some((created, key)) = keys::decode_dedupe_time_key(&k) {
                // The key may have been forgotten and written again since; keep the newer one.
                if store
                    .dedupe_get(key)?
                    .is_some_and(|r| r.created_ms == created)
                {
                    wb.remove(&store.dedupe, key.to_vec());
                    total += 1;
                }
            }
            from = std::ops::Bound::Excluded(k.to_vec());
            wb.remove(&store.dedupe_t, k);
            n += 1;
        }
        wb.commit()
            .map_err(|e| storage_err("expiring dedupe keys", e))?;
        if n < CHUNK {
            state.dedupe_floor_ms = cutoff;
            return Ok(total);
        }
    }
}

/// Deletes retained messages whose expiry interval has passed at `now_ms`.
fn expire_retained(store: &Store, now_ms: u64) -> Result<u64, LogError> {
    let mut expired = Vec::new();
    for g in store.retained.iter() {
        let (k, v) = g
            .into_inner()
            .map_err(|e| storage_err("scanning retained", e))?;
        let m: StoredMessage = store::decode(&v)?;
        if m.msg.remaining_expiry(now_ms) == Some(0) {
            expired.push(k);
        }
    }
    for chunk in expired.chunks(CHUNK) {
        let mut wb = store.db.batch();
        for k in chunk {
            wb.remove(&store.retained, k.clone());
        }
        wb.commit()
            .map_err(|e| storage_err("expiring retained messages", e))?;
    }
    Ok(expired.len() as u64)
}
