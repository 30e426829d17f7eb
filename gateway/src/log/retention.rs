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
use super::block::ChanEntry;
use super::history::HistoryIndex;
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

/// Messages retention removed per history block (block key → count), to be turned into block
/// deletions by [`free_blocks`] just before the write commits.
pub type Freed = HashMap<u64, u64>;

/// Deletes the oldest history messages of `channel`, whose oldest message is `head`, into
/// `wb`: the first `over` unconditionally, then more while `too_old(ts_ms)` holds; at most
/// `limit`. Channel-index entries it empties are deleted and one it shortens is rewritten;
/// the messages it removes are counted per block into `freed`.
///
/// The scan starts at the entry holding `head`, not at the start of the channel: below it lie
/// only entries deleted earlier, which the store keeps as tombstones until compaction and
/// which a scan from the start would walk every time. Call it at most once per channel per
/// write batch: a second scan would read the entry the first one rewrote as it was before.
#[allow(clippy::too_many_arguments)]
pub fn evict_head(
    store: &Store,
    wb: &mut OwnedWriteBatch,
    channel: &str,
    head: u64,
    over: u64,
    too_old: impl Fn(u64) -> bool,
    limit: usize,
    freed: &mut Freed,
) -> Result<Evicted, LogError> {
    let range = keys::chan_key(channel, head)..=keys::chan_key(channel, u64::MAX);
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    let mut removed = 0u64;
    let mut next_head = None;
    let mut last_removed = None;
    #[cfg(test)]
    let mut first_entry = true;
    for g in store.chan.range(range) {
        let (k, v) = g
            .into_inner()
            .map_err(|e| storage_err("scanning the channel index", e))?;
        let entry: ChanEntry = store::decode(&v)?;
        // Tests check that the scan's first message is exactly the head.
        #[cfg(test)]
        probe_visit(
            store,
            first_entry,
            entry.items.first().is_some_and(|it| it.seq == head),
        );
        #[cfg(test)]
        {
            first_entry = false;
        }
        let mut kept = Vec::new();
        let mut removed_here = 0u64;
        for item in &entry.items {
            if next_head.is_none()
                && (removed >= limit || (removed >= over && !too_old(item.ts_ms)))
            {
                next_head = Some(item.seq);
            }
            if next_head.is_some() {
                kept.push(*item);
                continue;
            }
            removed += 1;
            removed_here += 1;
            last_removed = Some(item.seq);
            *freed.entry(entry.block).or_insert(0) += 1;
        }
        if kept.is_empty() {
            wb.remove(&store.chan, k);
        } else if removed_here > 0 {
            let block = entry.block;
            wb.insert(
                &store.chan,
                k,
                store::encode(&ChanEntry { block, items: kept })?,
            );
        }
        if next_head.is_some() {
            break;
        }
    }
    Ok(Evicted {
        removed,
        next_head,
        last_removed,
    })
}

/// Adds to `wb` the deletion of every block whose last messages in history `freed` removes.
pub fn free_blocks(store: &Store, history: &HistoryIndex, wb: &mut OwnedWriteBatch, freed: &Freed) {
    for (block, n) in freed {
        let live = history.block_live(*block);
        if live <= *n {
            if live < *n {
                tracing::warn!(block, live, n, "log: history block counts disagree");
            }
            wb.remove(&store.msgs, keys::seq_key(*block));
        }
    }
}

/// Applies committed block removals to the in-memory counts.
pub fn blocks_freed(history: &mut HistoryIndex, freed: Freed) {
    for (block, n) in freed {
        history.free_block(block, n);
    }
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
    // Per channel: entries deleted into `wb` and the head after them; per block: messages
    // removed. Applied on commit.
    let mut trimmed: HashMap<String, Evicted> = HashMap::new();
    let mut freed = Freed::new();
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
            let ev = evict_head(
                &state.store,
                &mut wb,
                &ch,
                head,
                over,
                too_old,
                CHUNK,
                &mut freed,
            )?;
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
            let more = match ev.next_head {
                Some(next) if ev.removed as usize >= CHUNK => Some(next),
                _ => None,
            };
            // The next scan of this channel must see what this one rewrote: commit first.
            if more.is_some() || wb.len() >= CHUNK {
                let full = std::mem::replace(&mut wb, state.store.db.batch());
                commit_history(state, full, &mut trimmed, &mut freed)?;
            }
            match more {
                Some(next) => head = next,
                None => break,
            }
        }
    }
    commit_history(state, wb, &mut trimmed, &mut freed)?;
    report.dedupe_expired = expire_dedupe(state, now_ms)?;
    report.retained_expired = expire_retained(&state.store, now_ms)?;
    Ok(report)
}

/// Commits history deletions (with the blocks they empty) and moves the trimmed channels'
/// counts and heads.
fn commit_history(
    state: &mut WriterState,
    mut wb: OwnedWriteBatch,
    trimmed: &mut HashMap<String, Evicted>,
    freed: &mut Freed,
) -> Result<(), LogError> {
    if wb.is_empty() {
        return Ok(());
    }
    free_blocks(&state.store, &state.history, &mut wb, freed);
    wb.commit().map_err(|e| storage_err("retention", e))?;
    for (ch, t) in trimmed.drain() {
        state.history.trim(&ch, t.removed, t.next_head);
    }
    blocks_freed(&mut state.history, std::mem::take(freed));
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
