//! The client side of one MQTT connection with no I/O: it is handed the bytes that arrived
//! and the time, and answers with the bytes to write and the [`Event`]s for the device.
//!
//! It owns the packet ids, the in-flight window (QoS 1/2 publishes awaiting their ack, at most
//! `inflight`, and no more than an MQTT 5 broker's receive maximum), the queue of publishes
//! waiting for room (at most `queue`; a publish that finds it full is refused) and the
//! keep-alive (PINGREQ after `keep_alive` without sending, and the connection is dead when the
//! PINGRESP has not come `keep_alive` later). Publishes are written, and reported as
//! [`Event::Sent`], in the order they were accepted.
//!
//! Memory matters here: a fleet holds thousands of these, mostly idle. Nothing is allocated
//! up front, and buffers grown by a burst are let go once they are empty again.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::time::Instant;

use super::codec::{self, In, MAX_PACKET, Out};
use super::{Event, LinkError, LinkSpec, Publish};

/// Bytes waiting to be written above which further publishes wait in the queue.
const OUT_HIGH: usize = 64 * 1024;
/// An empty buffer larger than this is let go rather than kept for the next write.
const KEEP_EMPTY: usize = 4 * 1024;
/// An empty event queue with more room than this is let go.
const KEEP_EVENTS: usize = 8;
/// Largest in-flight window: packet ids must stay free for subscriptions.
const MAX_WINDOW: usize = 60_000;

/// What an outstanding packet id waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    PubAck,
    PubRec,
    PubComp,
    SubAck,
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// CONNECT sent, waiting for CONNACK.
    Connecting,
    /// Accepted.
    Connected,
    /// DISCONNECT queued: nothing more is accepted.
    Closing,
}

/// Why a request was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full (or the connection is closing).
    QueueFull,
    /// The publish is larger than [`MAX_PACKET`].
    TooLarge,
}

impl Refused {
    /// Stable short name for error tallies.
    pub fn kind(self) -> &'static str {
        match self {
            Refused::QueueFull => "queue_full",
            Refused::TooLarge => "packet_too_large",
        }
    }
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Core {
    v5: bool,
    phase: Phase,
    keep_alive: Duration,
    /// Encoded packets not yet written.
    out: BytesMut,
    events: VecDeque<Event>,
    /// Accepted publishes waiting for room in the window or in `out`.
    waiting: VecDeque<Publish>,
    queue: usize,
    window: usize,
    /// Packet ids in use and what each waits for.
    awaiting: HashMap<u16, Awaiting>,
    /// QoS 1/2 publishes in flight (the entries of `awaiting` that are not subscriptions).
    inflight: usize,
    last_pkid: u16,
    last_sent: Instant,
    /// When the unanswered PINGREQ was sent.
    ping_sent: Option<Instant>,
    /// The DISCONNECT has been written and reported.
    closed: bool,
    /// A failure found outside [`Core::receive`] and [`Core::wrote`], reported by
    /// [`Core::take_failure`].
    failed: Option<LinkError>,
}

impl Core {
    /// A connection about to be opened: CONNECT is ready to be written.
    pub fn new(spec: &LinkSpec, now: Instant) -> Result<Self, LinkError> {
        let mut core = Self {
            v5: spec.v5(),
            phase: Phase::Connecting,
            keep_alive: spec.keep_alive,
            out: BytesMut::new(),
            events: VecDeque::new(),
            waiting: VecDeque::new(),
            queue: spec.queue.max(1),
            window: usize::from(spec.inflight).clamp(1, MAX_WINDOW),
            awaiting: HashMap::new(),
            inflight: 0,
            last_pkid: 0,
            last_sent: now,
            ping_sent: None,
            closed: false,
            failed: None,
        };
        core.send(Out::Connect(spec), now)?;
        Ok(core)
    }

    /// Accepts a publish: it is written when the window and the write buffer have room.
    pub fn publish(&mut self, p: Publish, now: Instant) -> Result<(), Refused> {
        if codec::publish_size(&p) > MAX_PACKET {
            return Err(Refused::TooLarge);
        }
        if self.phase != Phase::Connected || self.waiting.len() >= self.queue {
            return Err(Refused::QueueFull);
        }
        self.waiting.push_back(p);
        // Sizes are checked above, so encoding does not fail; if it did, the connection ends.
        if let Err(e) = self.admit(now) {
            self.failed.get_or_insert(e);
        }
        Ok(())
    }

    /// Sends SUBSCRIBE for one filter.
    pub fn subscribe(&mut self, filter: &str, qos: u8, now: Instant) -> Result<(), Refused> {
        if self.phase != Phase::Connected {
            return Err(Refused::QueueFull);
        }
        let pkid = self.next_pkid();
        self.awaiting.insert(pkid, Awaiting::SubAck);
        self.send(Out::Subscribe { pkid, filter, qos }, now)
            .map_err(|_| Refused::TooLarge)
    }

    /// Sends DISCONNECT; [`Event::Disconnected`] follows once it is written. Publishes still
    /// waiting are not written.
    pub fn disconnect(&mut self, now: Instant) -> bool {
        if self.phase != Phase::Connected {
            return false;
        }
        self.phase = Phase::Closing;
        self.send(Out::Disconnect, now).is_ok()
    }

    /// A failure that ends the connection, found while accepting a request.
    pub fn take_failure(&mut self) -> Option<LinkError> {
        self.failed.take()
    }

    /// The next event for the device.
    pub fn pop_event(&mut self) -> Option<Event> {
        let ev = self.events.pop_front();
        if self.events.is_empty() && self.events.capacity() > KEEP_EVENTS {
            self.events = VecDeque::new();
        }
        ev
    }

    /// Bytes to write.
    pub fn to_write(&self) -> &[u8] {
        &self.out
    }

    /// `n` bytes of [`Core::to_write`] were written.
    pub fn wrote(&mut self, n: usize, now: Instant) -> Result<(), LinkError> {
        self.out.advance(n.min(self.out.len()));
        if self.out.is_empty() && self.out.capacity() > KEEP_EMPTY {
            self.out = BytesMut::new();
        }
        self.admit(now)
    }

    /// Everything was written and flushed: after a DISCONNECT, report it.
    pub fn flushed(&mut self) {
        if self.phase == Phase::Closing && self.out.is_empty() && !self.closed {
            self.closed = true;
            self.events.push_back(Event::Disconnected);
        }
    }

    /// Handles every whole packet at the front of `buf`.
    pub fn receive(&mut self, buf: &mut BytesMut, now: Instant) -> Result<(), LinkError> {
        while let Some(packet) = codec::decode(self.v5, buf)? {
            self.handle(packet, now)?;
        }
        Ok(())
    }

    /// When [`Core::on_timer`] must run next: a PINGREQ is due, or a PINGRESP is overdue.
    pub fn deadline(&self) -> Option<Instant> {
        if self.phase == Phase::Connecting || self.keep_alive.is_zero() || self.closed {
            return None;
        }
        let ping = self.last_sent + self.keep_alive;
        Some(match self.ping_sent {
            Some(at) => ping.min(at + self.keep_alive),
            None => ping,
        })
    }

    /// Keep-alive: sends PINGREQ when one is due; fails when the broker left one unanswered
    /// for a whole keep-alive.
    pub fn on_timer(&mut self, now: Instant) -> Result<(), LinkError> {
        if let Some(at) = self.ping_sent {
            if now >= at + self.keep_alive {
                return Err(LinkError {
                    kind: "no_pingresp",
                    detail: format!("no PINGRESP within {:?}", self.keep_alive),
                });
            }
        }
        if self.ping_sent.is_none() && self.deadline().is_some_and(|d| now >= d) {
            self.send(Out::PingReq, now)?;
            self.ping_sent = Some(now);
        }
        Ok(())
    }

    fn handle(&mut self, packet: In, now: Instant) -> Result<(), LinkError> {
        if self.phase == Phase::Connecting {
            return match packet {
                In::ConnAck {
                    refused: Some(reason),
                    ..
                } => Err(LinkError {
                    kind: "connection_refused_by_broker",
                    detail: format!("the broker refused the connection: {reason}"),
                }),
                In::ConnAck { receive_max, .. } => {
                    if let Some(max) = receive_max {
                        self.window = self.window.min(usize::from(max).max(1));
                    }
                    self.phase = Phase::Connected;
                    self.events.push_back(Event::ConnAck);
                    Ok(())
                }
                other => Err(LinkError {
                    kind: "unexpected_packet",
                    detail: format!("expected CONNACK, got {}", name(&other)),
                }),
            };
        }
        match packet {
            In::Publish { pkid, qos, msg } => {
                match qos {
                    1 => self.send(Out::PubAck(pkid), now)?,
                    2 => self.send(Out::PubRec(pkid), now)?,
                    _ => {}
                }
                self.events.push_back(Event::Received(Box::new(msg)));
            }
            In::PubAck { pkid, ok } => {
                self.take(pkid, Awaiting::PubAck)?;
                self.finish(pkid, ok, now)?;
            }
            In::PubRec { pkid, ok } => {
                self.take(pkid, Awaiting::PubRec)?;
                if ok {
                    self.awaiting.insert(pkid, Awaiting::PubComp);
                    self.send(Out::PubRel(pkid), now)?;
                } else {
                    self.finish(pkid, false, now)?;
                }
            }
            In::PubComp(pkid) => {
                self.take(pkid, Awaiting::PubComp)?;
                self.finish(pkid, true, now)?;
            }
            In::PubRel(pkid) => self.send(Out::PubComp(pkid), now)?,
            In::SubAck { pkid, refused } => {
                self.take(pkid, Awaiting::SubAck)?;
                self.events.push_back(Event::SubAck(refused));
            }
            In::PingResp => self.ping_sent = None,
            In::Disconnect(reason) => {
                return Err(LinkError {
                    kind: "disconnected_by_broker",
                    detail: format!("the broker sent DISCONNECT: {reason}"),
                });
            }
            other => {
                return Err(LinkError {
                    kind: "protocol_error",
                    detail: format!("unexpected {} from the broker", name(&other)),
                });
            }
        }
        Ok(())
    }

    /// Frees `pkid`, which must be waiting for `what`.
    fn take(&mut self, pkid: u16, what: Awaiting) -> Result<(), LinkError> {
        match self.awaiting.get(&pkid) {
            Some(w) if *w == what => {
                self.awaiting.remove(&pkid);
                Ok(())
            }
            _ => Err(LinkError {
                kind: "unsolicited_ack",
                detail: format!("{what:?} for packet id {pkid}, which is not waiting for one"),
            }),
        }
    }

    /// A QoS 1/2 publish is finished: report it and let a waiting one in.
    fn finish(&mut self, pkid: u16, ok: bool, now: Instant) -> Result<(), LinkError> {
        self.inflight = self.inflight.saturating_sub(1);
        self.events.push_back(Event::Acked { pkid, ok });
        self.admit(now)
    }

    /// Writes waiting publishes, in order, while the window and the write buffer have room.
    fn admit(&mut self, now: Instant) -> Result<(), LinkError> {
        while let Some(front) = self.waiting.front() {
            if self.out.len() >= OUT_HIGH || (front.qos > 0 && self.inflight >= self.window) {
                break;
            }
            let Some(p) = self.waiting.pop_front() else {
                break;
            };
            let pkid = if p.qos > 0 {
                let pkid = self.next_pkid();
                let what = if p.qos == 1 {
                    Awaiting::PubAck
                } else {
                    Awaiting::PubRec
                };
                self.awaiting.insert(pkid, what);
                self.inflight += 1;
                pkid
            } else {
                0
            };
            self.send(Out::Publish(pkid, &p), now)?;
            self.events.push_back(Event::Sent(pkid));
        }
        if self.waiting.is_empty() && self.waiting.capacity() > 0 {
            self.waiting = VecDeque::new();
        }
        Ok(())
    }

    /// A packet id not in use (there are always some: the window is below 65,535).
    fn next_pkid(&mut self) -> u16 {
        loop {
            self.last_pkid = self.last_pkid.checked_add(1).unwrap_or(1);
            if !self.awaiting.contains_key(&self.last_pkid) {
                return self.last_pkid;
            }
        }
    }

    fn send(&mut self, packet: Out<'_>, now: Instant) -> Result<(), LinkError> {
        codec::encode(self.v5, packet, &mut self.out)?;
        self.last_sent = now;
        Ok(())
    }
}

fn name(p: &In) -> &'static str {
    match p {
        In::ConnAck { .. } => "CONNACK",
        In::Publish { .. } => "PUBLISH",
        In::PubAck { .. } => "PUBACK",
        In::PubRec { .. } => "PUBREC",
        In::PubRel(_) => "PUBREL",
        In::PubComp(_) => "PUBCOMP",
        In::SubAck { .. } => "SUBACK",
        In::PingResp => "PINGRESP",
        In::Disconnect(_) => "DISCONNECT",
        In::Unexpected(name) => name,
    }
}

#[cfg(test)]
mod tests;
