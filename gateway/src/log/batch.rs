//! One group commit: turns the requests the writer drained into a single atomic write batch,
//! commits it (with one fsync when anything in it needs durability) and reports what to
//! release and how to answer each request.
//!
//! Tables that can be touched twice in one batch (retained, de-duplication keys, sessions)
//! are first collected in overlays where the last change wins, and later requests of the same
//! batch read through them, so a batch behaves exactly like its requests run one by one.

use super::block::{ChanEntry, ChanItem};
use super::keys;
use super::retention::{Evicted, Freed, blocks_freed, count_slack, evict_head, free_blocks};
use super::state::{RESERVE_STEP, WriterState};
use super::store::{self, DedupeRecord, META_RESERVED, storage_err};
use super::writer::{Reply, Request};
use super::{Appended, LogError};
use crate::core::message::now_ms;
use crate::core::{Position, StoredMessage};
use fjall::PersistMode;
use std::collections::HashMap;
use std::sync::Arc;

/// What a committed (or failed) batch hands back to the async side of the writer.
pub struct Outcome {
    /// Messages to release, in sequence order; empty when the commit failed.
    pub released: Vec<Arc<StoredMessage>>,
    /// Highest sequence number to publish as released, if the batch released anything.
    pub released_to: Option<u64>,
    /// One answer per request, to send after the release.
    pub replies: Vec<Reply>,
    /// Whether the commit included an fsync.
    pub synced: bool,
}

/// Requests being folded into one write batch.
struct Batch<'a> {
    state: &'a mut WriterState,
    wb: fjall::OwnedWriteBatch,
    durable: bool,
    released: Vec<Arc<StoredMessage>>,
    replies: Vec<Reply>,
    dedupe: HashMap<Vec<u8>, Option<DedupeRecord>>,
    dedupe_t: HashMap<Vec<u8>, bool>,
    retained: HashMap<String, Option<Vec<u8>>>,
    sessions: HashMap<String, Option<Vec<u8>>>,
    /// Per channel: entries this batch writes to history, and the first one's seq.
    added: HashMap<String, (u64, u64)>,
    /// Per channel: its messages in the block being filled.
    block_items: HashMap<String, Vec<ChanItem>>,
    /// Blocks this batch wrote, with their message counts.
    blocks: Vec<(u64, u64)>,
    /// A failure that makes the whole batch fail (nothing of it may be released).
    failed: Option<LogError>,
}

/// True when committing `reqs` certainly needs no fsync: QoS 0 appends only, none with a
/// de-duplication key, and their sequence numbers stay under the durable reservation.
pub fn without_sync(state: &WriterState, reqs: &[Request]) -> bool {
    let appends_only = reqs
        .iter()
        .all(|r| matches!(r, Request::Append { msg, dedupe: None, .. } if !msg.qos.is_reliable()));
    appends_only && state.last_seq().saturating_add(reqs.len() as u64) <= state.reserved
}

/// Runs one group commit over `reqs` (none of which is a sweep or close).
pub fn commit(state: &mut WriterState, reqs: &mut Vec<Request>) -> Outcome {
    // Most requests add no item of their own (their messages share blocks and index entries),
    // so a fraction of the request count covers the usual batch without regrowing.
    let wb = fjall::OwnedWriteBatch::with_capacity(state.store.db.clone(), reqs.len() / 4 + 16);
    let mut b = Batch {
        state,
        wb,
        durable: false,
        released: Vec::with_capacity(reqs.len()),
        replies: Vec::with_capacity(reqs.len()),
        dedupe: HashMap::new(),
        dedupe_t: HashMap::new(),
        retained: HashMap::new(),
        sessions: HashMap::new(),
        added: HashMap::new(),
        block_items: HashMap::new(),
        blocks: Vec::new(),
        failed: None,
    };
    for r in reqs.drain(..) {
        b.apply(r);
    }
    b.finish()
}

impl Batch<'_> {
    fn apply(&mut self, req: Request) {
        match req {
            Request::Append { msg, dedupe, reply } => {
                let res = self.append(*msg, dedupe.map(|k| k.0));
                self.replies.push(Reply::Append(reply, res));
            }
            Request::ForgetDedupe { key, reply } => {
                let res = self.forget(key.0);
                self.durable = true;
                self.replies.push(Reply::Done(reply, res));
            }
            Request::SessionStore {
                client_id,
                state,
                reply,
            } => {
                self.sessions.insert(client_id, Some(state));
                self.durable = true;
                self.replies.push(Reply::Done(reply, Ok(())));
            }
            Request::SessionDelete { client_id, reply } => {
                self.sessions.insert(client_id, None);
                self.durable = true;
                self.replies.push(Reply::Done(reply, Ok(())));
            }
            Request::Flush { reply } => {
                self.durable = true;
                self.replies.push(Reply::Done(reply, Ok(())));
            }
            Request::Sweep { reply, .. } => {
                // The writer runs sweeps on their own; answer rather than drop if one slips in.
                if let Some(r) = reply {
                    self.replies.push(Reply::Sweep(r, Err(LogError::Closed)));
                }
            }
            Request::Close => {}
        }
    }

    fn dedupe_lookup(&self, key: &[u8]) -> Result<Option<DedupeRecord>, LogError> {
        match self.dedupe.get(key) {
            Some(r) => Ok(*r),
            None => self.state.store.dedupe_get(key),
        }
    }

    fn append(
        &mut self,
        msg: crate::core::Message,
        key: Option<Vec<u8>>,
    ) -> Result<Appended, LogError> {
        let epoch = self.state.epoch;
        if let Some(k) = &key {
            if let Some(rec) = self.dedupe_lookup(k)? {
                // The first copy is durable already, or becomes so with this very batch.
                return Ok(Appended::Duplicate(Position {
                    epoch,
                    seq: rec.seq,
                }));
            }
        }
        let reliable = msg.qos.is_reliable();
        let retain_delete = msg.retain && msg.payload.is_empty();
        let history = !retain_delete && self.state.rules.stores(&msg.topic, reliable);
        let seq = self.state.next_seq;
        let stored = Arc::new(StoredMessage {
            pos: Position { epoch, seq },
            msg,
            wire: Default::default(),
        });
        let retained = match (stored.msg.retain, retain_delete) {
            (true, false) => Some(Some(store::encode(&*stored)?)),
            (true, true) => Some(None),
            (false, _) => None,
        };
        if history {
            if self.state.block.is_full() {
                self.close_block();
            }
            self.state.block.push(seq, &stored.msg)?;
        }
        // Nothing below can fail: the sequence number is now taken.
        self.state.next_seq += 1;
        let topic = &stored.msg.topic;
        if history {
            let item = ChanItem {
                seq,
                ts_ms: stored.msg.ts_ms,
            };
            // Looked up before inserting: `entry` would clone the topic for every message.
            match self.block_items.get_mut(topic.as_str()) {
                Some(items) => items.push(item),
                None => {
                    self.block_items.insert(topic.clone(), vec![item]);
                }
            }
            match self.added.get_mut(topic.as_str()) {
                Some((n, _)) => *n += 1,
                None => {
                    self.added.insert(topic.clone(), (1, seq));
                }
            }
        }
        if let Some(change) = retained {
            self.retained.insert(topic.clone(), change);
        }
        if let Some(k) = key {
            let created_ms = now_ms();
            self.dedupe_t
                .insert(keys::dedupe_time_key(created_ms, &k), true);
            // The clock went back below what the TTL sweep already passed: let it look again.
            self.state.dedupe_floor_ms = self.state.dedupe_floor_ms.min(created_ms);
            self.dedupe
                .insert(k, Some(DedupeRecord { seq, created_ms }));
            self.durable = true;
        }
        self.durable |= reliable;
        self.released.push(stored);
        Ok(Appended::New(Position { epoch, seq }))
    }

    /// Writes the block being filled, and its channel-index entries, into the batch. A
    /// failure fails the batch.
    fn close_block(&mut self) {
        let Some(key) = self.state.block.last_seq() else {
            return;
        };
        let n = self.state.block.len() as u64;
        let store = &self.state.store;
        let mut entries = Vec::with_capacity(self.block_items.len());
        for (ch, items) in self.block_items.drain() {
            let Some(last) = items.last().map(|it| it.seq) else {
                continue;
            };
            match store::encode(&ChanEntry { block: key, items }) {
                Ok(value) => entries.push((keys::chan_key(&ch, last), value)),
                Err(e) => {
                    self.failed.get_or_insert(e);
                    return;
                }
            }
        }
        for (k, v) in entries {
            self.wb.insert(&store.chan, k, v);
        }
        self.wb
            .insert(&store.msgs, keys::seq_key(key), self.state.block.seal());
        self.state.block.reset();
        self.blocks.push((key, n));
    }

    fn forget(&mut self, key: Vec<u8>) -> Result<(), LogError> {
        if let Some(rec) = self.dedupe_lookup(&key)? {
            self.dedupe_t
                .insert(keys::dedupe_time_key(rec.created_ms, &key), false);
            self.dedupe.insert(key, None);
        }
        Ok(())
    }

    /// Count retention for the channels this batch added to: a channel that would go past
    /// its limit plus [`count_slack`] is trimmed back to its limit. The batch's own messages
    /// are never evicted here (the next write or sweep trims a batch that alone overshoots).
    fn evict_by_count(&mut self, freed: &mut Freed) -> HashMap<String, Evicted> {
        let mut trimmed = HashMap::new();
        for (ch, (new, _)) in &self.added {
            let Some(on_disk) = self.state.history.get(ch) else {
                continue;
            };
            let max = self.state.rules.policy_for(ch).max_messages;
            let total = on_disk.count + new;
            if total <= max.saturating_add(count_slack(max)) {
                continue;
            }
            let over = (total - max).min(on_disk.count);
            let limit = usize::try_from(over).unwrap_or(usize::MAX);
            let store = &self.state.store;
            match evict_head(
                store,
                &mut self.wb,
                ch,
                on_disk.head,
                over,
                |_| false,
                limit,
                freed,
            ) {
                Ok(ev) if ev.removed > 0 => {
                    if let Some(last) = ev.last_removed {
                        // Marks are raised before the commit; see `trims`.
                        if let Err(e) = self.state.trims.raise(store, &mut self.wb, ch, last) {
                            tracing::warn!(%e, channel = %ch, "log: trim mark not recorded");
                        }
                    }
                    trimmed.insert(ch.clone(), ev);
                }
                Ok(_) => {}
                // Retention is best effort: a failed scan must not fail the appends.
                Err(e) => tracing::warn!(%e, channel = %ch, "log: count retention skipped"),
            }
        }
        trimmed
    }

    fn finish(mut self) -> Outcome {
        self.close_block();
        // A failed close leaves the block half-written; the next batch starts a new one.
        self.state.block.reset();
        if let Some(e) = self.failed.take() {
            return fail(self.replies, e);
        }
        let mut freed = Freed::new();
        let trimmed = self.evict_by_count(&mut freed);
        let store = self.state.store.clone();
        free_blocks(&store, &self.state.history, &mut self.wb, &freed);
        for (k, v) in self.dedupe.drain() {
            match v {
                Some(rec) => match store::encode(&rec) {
                    Ok(bytes) => self.wb.insert(&store.dedupe, k, bytes),
                    Err(e) => return fail(self.replies, e),
                },
                None => self.wb.remove(&store.dedupe, k),
            }
        }
        for (k, insert) in self.dedupe_t.drain() {
            if insert {
                self.wb.insert(&store.dedupe_t, k, []);
            } else {
                self.wb.remove(&store.dedupe_t, k);
            }
        }
        for (topic, v) in self.retained.drain() {
            match v {
                Some(bytes) => self.wb.insert(&store.retained, topic.into_bytes(), bytes),
                None => self.wb.remove(&store.retained, topic.into_bytes()),
            }
        }
        for (id, v) in self.sessions.drain() {
            match v {
                Some(bytes) => self.wb.insert(&store.sessions, id.into_bytes(), bytes),
                None => self.wb.remove(&store.sessions, id.into_bytes()),
            }
        }
        let last = self.state.last_seq();
        let mut reserved = self.state.reserved;
        if last > reserved {
            // Make the raised mark durable with this batch, before any of it is released.
            reserved = last.saturating_add(RESERVE_STEP);
            match store::encode(&reserved) {
                Ok(bytes) => self.wb.insert(&store.meta, META_RESERVED, bytes),
                Err(e) => return fail(self.replies, e),
            }
            self.durable = true;
        }
        let wb = std::mem::replace(&mut self.wb, store.db.batch());
        let written = wb.commit().map_err(|e| storage_err("writing a batch", e));
        let synced = written.and_then(|()| {
            if self.durable {
                store
                    .db
                    .persist(PersistMode::SyncAll)
                    .map_err(|e| storage_err("fsync", e))
            } else {
                Ok(())
            }
        });
        if let Err(e) = synced {
            return fail(self.replies, e);
        }
        self.state.reserved = reserved;
        // Trims first: they concern entries already on disk, which lie below this batch's.
        for (ch, ev) in &trimmed {
            self.state.history.trim(ch, ev.removed, ev.next_head);
        }
        blocks_freed(&mut self.state.history, freed);
        for (ch, (n, first)) in &self.added {
            self.state.history.add(ch, *n, *first);
        }
        for (key, n) in &self.blocks {
            self.state.history.new_block(*key, *n);
        }
        Outcome {
            released_to: self.released.last().map(|m| m.pos.seq),
            released: self.released,
            replies: self.replies,
            synced: self.durable,
        }
    }
}

/// Turns every successful answer into the storage error: nothing of the batch is released.
fn fail(replies: Vec<Reply>, e: LogError) -> Outcome {
    let msg = e.to_string();
    let err = || LogError::Storage(msg.clone());
    let replies = replies
        .into_iter()
        .map(|r| match r {
            Reply::Append(tx, Ok(_)) => Reply::Append(tx, Err(err())),
            Reply::Done(tx, Ok(())) => Reply::Done(tx, Err(err())),
            other => other,
        })
        .collect();
    Outcome {
        released: Vec::new(),
        released_to: None,
        replies,
        synced: false,
    }
}
