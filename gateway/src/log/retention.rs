//! Retention: trimming history per namespace policy (count and age), expiring old
//! de-duplication keys and expired retained messages.
//!
//! Count is enforced as messages are written ([`evict_head`] from the group commit); age, the
//! de-duplication TTL and retained expiry by [`sweep`], which the writer runs periodically
//! and which takes the time as a parameter so tests need no clock. Both remove a channel's
//! oldest entries first, so history stays a suffix of what was written.

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

/// Deletes the oldest history entries of `channel` into `wb`: the first `over` entries
/// unconditionally, then more while `too_old(ts_ms)` holds; at most `limit`. Returns how
/// many it deleted.
pub fn evict_head(
    store: &Store,
    wb: &mut OwnedWriteBatch,
    channel: &str,
    over: u64,
    too_old: impl Fn(u64) -> bool,
    limit: usize,
) -> Result<u64, LogError> {
    let mut n = 0u64;
    for g in store.chan.prefix(keys::chan_prefix(channel)) {
        if n as usize >= limit {
            break;
        }
        let (k, v) = g
            .into_inner()
            .map_err(|e| storage_err("scanning the channel index", e))?;
        let ts: u64 = store::decode(&v)?;
        if n >= over && !too_old(ts) {
            break;
        }
        let Some((_, seq)) = keys::decode_chan_key(&k) else {
            return Err(storage_err("scanning the channel index", "malformed key"));
        };
        wb.remove(&store.chan, k);
        wb.remove(&store.msgs, keys::seq_key(seq));
        n += 1;
    }
    Ok(n)
}

/// Runs every retention rule once at time `now_ms`. Deletions are committed without fsync:
/// losing one in a crash only means it is repeated.
pub fn sweep(state: &mut WriterState, now_ms: u64) -> Result<SweepReport, LogError> {
    let mut report = SweepReport::default();
    let mut channels: Vec<(String, u64)> =
        state.counts.iter().map(|(c, n)| (c.clone(), *n)).collect();
    channels.sort();
    let mut wb = state.store.db.batch();
    let mut removed: HashMap<String, u64> = HashMap::new();
    for (ch, count) in channels {
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
            let n = evict_head(&state.store, &mut wb, &ch, over, too_old, CHUNK)?;
            over = over.saturating_sub(n);
            report.evicted += n;
            if n > 0 {
                *removed.entry(ch.clone()).or_insert(0) += n;
            }
            if wb.len() >= CHUNK {
                commit_history(
                    state,
                    std::mem::replace(&mut wb, state.store.db.batch()),
                    &mut removed,
                )?;
            }
            if (n as usize) < CHUNK {
                break;
            }
        }
    }
    commit_history(state, wb, &mut removed)?;
    report.dedupe_expired = expire_dedupe(state, now_ms)?;
    report.retained_expired = expire_retained(&state.store, now_ms)?;
    Ok(report)
}

/// Commits history deletions and updates counts and the lowest sequence number.
fn commit_history(
    state: &mut WriterState,
    wb: OwnedWriteBatch,
    removed: &mut HashMap<String, u64>,
) -> Result<(), LogError> {
    if wb.is_empty() {
        return Ok(());
    }
    wb.commit().map_err(|e| storage_err("retention", e))?;
    state.apply_counts(&HashMap::new(), removed);
    state.refresh_lowest(None, true);
    removed.clear();
    Ok(())
}

/// Forgets de-duplication keys created before `now_ms - ttl`.
fn expire_dedupe(state: &WriterState, now_ms: u64) -> Result<u64, LogError> {
    let store = &state.store;
    let cutoff = now_ms.saturating_sub(state.dedupe_ttl_ms);
    let mut total = 0u64;
    loop {
        let mut wb = store.db.batch();
        let mut n = 0usize;
        for g in store
            .dedupe_t
            .range(..keys::dedupe_time_key(cutoff, &[]))
            .take(CHUNK)
        {
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
            wb.remove(&store.dedupe_t, k);
            n += 1;
        }
        wb.commit()
            .map_err(|e| storage_err("expiring dedupe keys", e))?;
        if n < CHUNK {
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
