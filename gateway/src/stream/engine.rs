//! [`Stream`]: one browser connection's subscriptions and its single cursor over the log.
//!
//! A stream holds any number of filters and one cursor, the next sequence number to
//! examine. Each subscription remembers the first sequence number it wants (`from`), so one
//! cursor serves filters that started at different points. The cursor only moves back when a
//! subscription asks for history that lies behind it; the others then skip what they have
//! already been given.
//!
//! Messages come from one of two places, as for MQTT sessions:
//! - *catch-up*: pages read from the log from the cursor, until the log has nothing newer;
//! - *live*: the connection's bounded [`Outbox`], which the broker's fan-out fills. When a
//!   reliable stream's outbox overflows it reports a gap, the stream goes back to catch-up
//!   from its cursor, and nothing is lost; memory stays bounded by the outbox capacity and
//!   one page. A stream whose subscriptions are all qos 0 instead drops the oldest queued
//!   messages and reports how many ([`Event::Dropped`]).
//!
//! The subscription is entered in the broker's index before the first catch-up read, so a
//! message is either released before that read (and read from the log) or handed to the
//! outbox afterwards; live deliveries below the cursor are skipped, so none arrives twice.

use super::options::SubscribeSpec;
use super::start::{self, Reset};
use super::{StreamError, StreamHub};
use crate::broker::outbox::Outbox;
use crate::broker::presence::{Member, PresenceEvent};
use crate::broker::{ConnId, Subscriber};
use crate::core::message::now_ms;
use crate::core::{Position, QoS, StoredMessage, topic};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Messages read from the log per catch-up step.
const PAGE: usize = 256;
/// Catch-up pages examined per [`Stream::next_events`] call, so a long stretch of history
/// that matches nothing does not hold the task.
const PAGES_PER_CALL: usize = 8;

/// Something to send to the client, in order.
#[derive(Debug, Clone)]
pub enum Event {
    /// A message; `retained` when it comes from the retained table on subscribe.
    Msg {
        /// The message, shared.
        msg: Arc<StoredMessage>,
        /// Sent because of `retained: true`, ahead of the stream.
        retained: bool,
    },
    /// Continuity was lost for a subscription.
    Reset(Reset),
    /// qos 0 messages were dropped because the connection was too slow.
    Dropped {
        /// Dropped since the last notice.
        count: u64,
        /// Dropped on this connection so far.
        total: u64,
    },
    /// A presence change for a watched filter.
    Presence {
        /// The watched filter.
        filter: String,
        /// The change.
        event: Arc<PresenceEvent>,
    },
    /// The current members of a watched filter (on watch, and after falling behind).
    Members {
        /// The watched filter.
        filter: String,
        /// Who is present.
        members: Vec<Member>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    CatchUp,
    Live,
}

#[derive(Debug, Clone)]
struct Sub {
    filter: String,
    /// First sequence number this subscription receives.
    from: u64,
    qos: QoS,
    /// The log's trim generation when this subscription last checked what retention took.
    checked_gen: u64,
}

/// One connection's subscriptions and cursor. Dropping it removes its subscriptions from
/// the broker and its presence.
pub struct Stream {
    hub: Arc<StreamHub>,
    conn: ConnId,
    outbox: Arc<Outbox>,
    subs: Vec<Sub>,
    cursor: u64,
    mode: Mode,
    /// Events decided but not yet taken (resets, retained messages, notices).
    queued: VecDeque<Event>,
    /// Channel resets already sent, as (filter, channel, last missing seq), so a later check
    /// does not repeat them; dropped once the cursor is past them.
    reported: Vec<(String, String, u64)>,
    dropped_total: u64,
    watched: Vec<String>,
    presence_rx: Option<broadcast::Receiver<Arc<PresenceEvent>>>,
    client_id: Option<String>,
}

impl Stream {
    /// A stream with no subscriptions yet.
    pub fn new(hub: Arc<StreamHub>) -> Stream {
        let conn = hub.broker.next_conn_id();
        let outbox = Outbox::new(hub.config.outbound_queue, true);
        let cursor = hub.log.released() + 1;
        Stream {
            hub,
            conn,
            outbox,
            subs: Vec::new(),
            cursor,
            mode: Mode::Live,
            queued: VecDeque::new(),
            reported: Vec::new(),
            dropped_total: 0,
            watched: Vec::new(),
            presence_rx: None,
            client_id: None,
        }
    }

    /// The connection id (shown to the client in `welcome`).
    pub fn conn_id(&self) -> ConnId {
        self.conn
    }

    /// Everything before this position has been examined and handed out; a client that has
    /// processed every event so far resumes with it as `since`.
    pub fn position(&self) -> Position {
        Position {
            epoch: self.hub.log.epoch(),
            seq: self.cursor.saturating_sub(1),
        }
    }

    /// Declares the client id of this connection, making it a presence member. A second
    /// call replaces the first.
    pub fn set_client_id(&mut self, id: &str) -> Result<(), StreamError> {
        if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
            return Err(StreamError::BadRequest(
                "\"client_id\" must be 1 to 256 bytes of text without control characters".into(),
            ));
        }
        if self.client_id.as_deref() == Some(id) {
            return Ok(());
        }
        if let Some(old) = self.client_id.take() {
            self.hub.broker.presence.browser_leave(&old);
        }
        self.hub.broker.presence.browser_join(id);
        self.client_id = Some(id.to_owned());
        Ok(())
    }

    /// The declared client id.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// Filters currently subscribed.
    pub fn filters(&self) -> impl Iterator<Item = &str> {
        self.subs.iter().map(|s| s.filter.as_str())
    }

    /// Adds (or replaces) a subscription. Queues its reset, if continuity was lost, and its
    /// retained messages; its history follows from the cursor. Returns the position the
    /// subscription starts after: resuming it later with that `since` misses nothing.
    pub fn subscribe(&mut self, spec: &SubscribeSpec) -> Result<Position, StreamError> {
        let existing = self.subs.iter().position(|s| s.filter == spec.filter);
        if existing.is_none() && self.subs.len() >= self.hub.config.max_subscriptions {
            return Err(StreamError::TooManySubscriptions(
                self.hub.config.max_subscriptions,
            ));
        }
        if existing.is_none() {
            self.hub.broker.subscribe(
                &spec.filter,
                self.conn,
                Subscriber {
                    outbox: self.outbox.clone(),
                    share: None,
                },
            );
        }
        let checked_gen = self.hub.log.trim_generation();
        let resolved = match start::resolve(&*self.hub.log, &spec.filter, spec.start, now_ms()) {
            Ok(r) => r,
            Err(e) => {
                if existing.is_none() {
                    self.hub.broker.unsubscribe(&spec.filter, self.conn);
                }
                return Err(e);
            }
        };
        let retained = if spec.retained {
            self.hub.log.retained(&spec.filter)?
        } else {
            Vec::new()
        };
        if let Some(i) = existing {
            self.subs.remove(i);
        }
        let from = resolved.from_seq;
        if self.subs.is_empty() {
            self.cursor = from;
        } else if from < self.cursor {
            // The others have everything below the cursor already.
            for s in &mut self.subs {
                s.from = s.from.max(self.cursor);
            }
            self.cursor = from;
        }
        self.subs.push(Sub {
            filter: spec.filter.clone(),
            from,
            qos: spec.qos,
            checked_gen,
        });
        self.mode = Mode::CatchUp;
        self.outbox
            .set_reliable(self.subs.iter().any(|s| s.qos.is_reliable()));
        for r in resolved.resets {
            self.note_reported(&r);
            self.queued.push_back(Event::Reset(r));
        }
        for m in retained {
            self.queued.push_back(Event::Msg {
                msg: m,
                retained: true,
            });
        }
        Ok(Position {
            epoch: self.hub.log.epoch(),
            seq: from.saturating_sub(1),
        })
    }

    /// Removes a subscription.
    pub fn unsubscribe(&mut self, filter: &str) -> Result<(), StreamError> {
        let Some(i) = self.subs.iter().position(|s| s.filter == filter) else {
            return Err(StreamError::NotSubscribed(
                filter.chars().take(256).collect(),
            ));
        };
        self.subs.remove(i);
        self.hub.broker.unsubscribe(filter, self.conn);
        self.outbox
            .set_reliable(self.subs.iter().any(|s| s.qos.is_reliable()));
        Ok(())
    }

    /// Starts watching presence for `filter` (valid, checked here); queues the current
    /// members. `false` stops watching.
    pub fn watch_presence(&mut self, filter: &str, on: bool) -> Result<(), StreamError> {
        topic::validate_filter(filter, &self.hub.limits)
            .map_err(|e| StreamError::InvalidFilter(e.to_string()))?;
        self.watched.retain(|f| f != filter);
        if on {
            if self.presence_rx.is_none() {
                self.presence_rx = Some(self.hub.broker.presence.watch());
            }
            self.watched.push(filter.to_owned());
            self.queued.push_back(Event::Members {
                filter: filter.to_owned(),
                members: self.hub.broker.presence.members(filter),
            });
        } else if self.watched.is_empty() {
            self.presence_rx = None;
        }
        Ok(())
    }

    /// True when events can be taken without waiting: queued notices, catch-up to do, or
    /// live deliveries left in the outbox (a drain takes at most a batch, and the outbox's
    /// wake-up permit is already spent).
    pub fn has_pending(&self) -> bool {
        !self.queued.is_empty()
            || (!self.subs.is_empty() && (self.mode == Mode::CatchUp || !self.outbox.is_empty()))
    }

    /// Waits until [`Stream::next_events`] may have something: a live delivery, a presence
    /// change, or pending catch-up. Cancel-safe.
    pub async fn wait(&mut self) {
        if self.has_pending() {
            return;
        }
        let outbox = self.outbox.clone();
        match &mut self.presence_rx {
            Some(rx) => {
                tokio::select! {
                    _ = outbox.notified() => {}
                    r = rx.recv() => self.on_presence(r),
                }
            }
            None => outbox.notified().await,
        }
    }

    fn on_presence(&mut self, r: Result<Arc<PresenceEvent>, broadcast::error::RecvError>) {
        match r {
            Ok(e) => {
                for f in &self.watched {
                    if topic::matches(f, &e.member.id) {
                        self.queued.push_back(Event::Presence {
                            filter: f.clone(),
                            event: e.clone(),
                        });
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                for f in &self.watched {
                    self.queued.push_back(Event::Members {
                        filter: f.clone(),
                        members: self.hub.broker.presence.members(f),
                    });
                }
            }
            Err(broadcast::error::RecvError::Closed) => self.presence_rx = None,
        }
    }

    /// Takes up to `max` events, in order, without waiting. Returns an empty list when
    /// nothing is ready (or a stretch of history matched nothing: call again while
    /// [`Stream::has_pending`]).
    pub fn next_events(&mut self, max: usize) -> Result<Vec<Event>, StreamError> {
        let mut out = Vec::new();
        if let Some(rx) = &mut self.presence_rx {
            let mut got = Vec::new();
            while let Ok(e) = rx.try_recv() {
                got.push(Ok(e));
            }
            for r in got {
                self.on_presence(r);
            }
        }
        while out.len() < max {
            match self.queued.pop_front() {
                Some(e) => out.push(e),
                None => break,
            }
        }
        let mut pages = 0;
        while out.len() < max && !self.subs.is_empty() {
            match self.mode {
                Mode::CatchUp => {
                    if pages == PAGES_PER_CALL {
                        break;
                    }
                    pages += 1;
                    let before = self.cursor;
                    let page = self.hub.log.read(before, PAGE.min(max - out.len()))?;
                    self.check_trims(before, &mut out);
                    if page.is_empty() {
                        self.mode = Mode::Live;
                        continue;
                    }
                    for m in page {
                        self.offer(m, &mut out);
                    }
                }
                Mode::Live => {
                    let drained = self.outbox.drain(max - out.len());
                    if drained.dropped > 0 {
                        self.dropped_total += drained.dropped;
                        out.push(Event::Dropped {
                            count: drained.dropped,
                            total: self.dropped_total,
                        });
                    }
                    if drained.gap {
                        self.mode = Mode::CatchUp;
                    }
                    if drained.deliveries.is_empty() && !drained.gap {
                        break;
                    }
                    for d in drained.deliveries {
                        self.offer(d.msg, &mut out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// After a catch-up read from `before`: when retention ran since a subscription last
    /// looked, emits a reset for what it removed at or after the cursor (the read cannot
    /// have returned it), once per channel.
    fn check_trims(&mut self, before: u64, out: &mut Vec<Event>) {
        let generation = self.hub.log.trim_generation();
        if self.subs.iter().all(|s| s.checked_gen == generation) {
            return;
        }
        self.reported.retain(|r| r.2 >= before);
        for i in 0..self.subs.len() {
            if self.subs[i].checked_gen == generation {
                continue;
            }
            self.subs[i].checked_gen = generation;
            let from = before.max(self.subs[i].from);
            for r in start::lost_from(&*self.hub.log, &self.subs[i].filter, from) {
                if self.note_reported(&r) {
                    out.push(Event::Reset(r));
                }
            }
        }
    }

    /// Remembers a channel reset; false when the same or a wider one was already sent.
    fn note_reported(&mut self, r: &Reset) -> bool {
        let Some(channel) = &r.channel else {
            return true;
        };
        let to = r.to.map_or(0, |p| p.seq);
        if self
            .reported
            .iter()
            .any(|(f, c, t)| f == &r.filter && c == channel && *t >= to)
        {
            return false;
        }
        self.reported.push((r.filter.clone(), channel.clone(), to));
        true
    }

    /// Advances the cursor over `m` and emits it if a subscription wants it.
    fn offer(&mut self, m: Arc<StoredMessage>, out: &mut Vec<Event>) {
        let seq = m.pos.seq;
        if seq < self.cursor {
            return;
        }
        self.cursor = seq + 1;
        let wanted = self
            .subs
            .iter()
            .any(|s| seq >= s.from && topic::matches(&s.filter, &m.msg.topic));
        if wanted && m.msg.remaining_expiry(now_ms()) != Some(0) {
            out.push(Event::Msg {
                msg: m,
                retained: false,
            });
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        for s in &self.subs {
            self.hub.broker.unsubscribe(&s.filter, self.conn);
        }
        self.outbox.close();
        if let Some(id) = self.client_id.take() {
            self.hub.broker.presence.browser_leave(&id);
        }
    }
}
