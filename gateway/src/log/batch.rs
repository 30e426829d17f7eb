//! One group commit: turns the requests the writer drained into a single atomic write batch,
//! commits it (with one fsync when anything in it needs durability) and reports what to
//! release and how to answer each request.
//!
//! Tables that can be touched twice in one batch (retained, de-duplication keys, sessions)
//! are first collected in overlays where the last change wins, and later requests of the same
//! batch read through them, so a batch behaves exactly like its requests run one by one.

use super::keys;
use super::retention::{Evicted, count_slack, evict_head};
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
}

/// Runs one group commit over `reqs` (none of which is a sweep or close).
pub fn commit(state: &mut WriterState, reqs: Vec<Request>) -> Outcome {
    // Sized up front: a batch holds up to `max_batch` requests, and growing its item list by
    // doubling would reallocate (and fault in fresh pages) several times per commit.
    let wb = fjall::OwnedWriteBatch::with_capacity(state.store.db.clone(), reqs.len() * 2 + 8);
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
    };
    for r in reqs {
        b.apply(r);
    }
    b.finish()
}

impl Batch<'_> {
    fn apply(&mut self, req: Request) {
        match req {
            Request::Append { msg, dedupe, reply } => {
                let res = self.append(msg, dedupe.map(|k| k.0));
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
        let encoded = if history {
            Some(store::encode(&msg)?)
        } else {
            None
        };
        let ts = store::encode(&msg.ts_ms)?;
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
        // Nothing below can fail: the sequence number is now taken.
        self.state.next_seq += 1;
        let topic = &stored.msg.topic;
        if let Some(value) = encoded {
            self.wb
                .insert(&self.state.store.msgs, keys::seq_key(seq), value);
            self.wb
                .insert(&self.state.store.chan, keys::chan_key(topic, seq), ts);
            self.added.entry(topic.clone()).or_insert((0, seq)).0 += 1;
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
    fn evict_by_count(&mut self) -> HashMap<String, Evicted> {
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
        let trimmed = self.evict_by_count();
        let store = self.state.store.clone();
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
        for (ch, (n, first)) in &self.added {
            self.state.history.add(ch, *n, *first);
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
