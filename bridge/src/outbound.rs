//! The outbound window: messages read from the source and not yet acknowledged by the
//! remote, their packet ids, and the cursor they imply. No I/O: the session drives it with
//! what it reads and receives, which is what the tests below do.
//!
//! The cursor is the position of the oldest message not done yet; a message is done once
//! the remote acknowledged it (PUBACK, or PUBCOMP for QoS 2), once it was written (QoS 0),
//! or once it was given up (refused by the remote, too large, or skipped by the lag bound).
//! Acknowledgements may arrive out of order; the cursor only moves over a done prefix.

use crate::message::{Props, QoS};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};

/// A message ready to publish: already renamed and with its remote QoS and retain flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prepared {
    /// Remote topic.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS at the remote.
    pub qos: QoS,
    /// Retain flag at the remote.
    pub retain: bool,
    /// MQTT 5 properties (with the origin property appended).
    pub props: Props,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not sent on this connection yet.
    Queued,
    /// PUBLISH sent, waiting for PUBACK or PUBREC.
    Sent { pkid: u16 },
    /// QoS 2: PUBREC received and PUBREL sent, waiting for PUBCOMP.
    Released { pkid: u16 },
    /// Nothing more to do.
    Done,
}

#[derive(Debug)]
struct Slot {
    seq: u64,
    msg: Prepared,
    state: State,
}

/// What to send again when a connection resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resend {
    /// PUBLISH again, same packet id, DUP set.
    Publish {
        /// Position of the message.
        seq: u64,
        /// Its packet id.
        pkid: u16,
    },
    /// PUBREL again.
    PubRel {
        /// Packet id.
        pkid: u16,
    },
}

/// How an acknowledgement fitted the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckOutcome {
    /// The message at this position is done.
    Done(u64),
    /// QoS 2: PUBREC accepted; send PUBREL for this packet id.
    Release(u16),
    /// The remote refused the message at this position (reason ≥ 0x80); it is done.
    Refused(u64),
    /// No message waits for this acknowledgement (already done, or from an earlier life of
    /// the session). A PUBREC of an unknown packet id still gets a PUBREL, so that the
    /// remote can end the exchange.
    Unknown,
}

/// The outbound window.
#[derive(Debug)]
pub(crate) struct Window {
    slots: VecDeque<Slot>,
    /// Index in `slots` of the first `Queued` slot (everything before it was sent or done).
    send_idx: usize,
    /// Next source position to read.
    read_pos: u64,
    /// Packet id → position, for messages in flight.
    pkids: HashMap<u16, u64>,
    last_pkid: u16,
    /// QoS 1/2 messages in flight.
    inflight: usize,
    /// Most QoS 1/2 messages in flight at once.
    limit: usize,
    /// Most messages held (in flight or queued).
    capacity: usize,
}

impl Window {
    /// An empty window whose next read starts at `start`.
    pub fn new(start: u64, limit: usize, capacity: usize) -> Window {
        Window {
            slots: VecDeque::new(),
            send_idx: 0,
            read_pos: start,
            pkids: HashMap::new(),
            last_pkid: 0,
            inflight: 0,
            limit: limit.max(1),
            capacity: capacity.max(1),
        }
    }

    /// The cursor: position of the oldest message not done, or the next read position.
    pub fn cursor(&self) -> u64 {
        self.slots.front().map_or(self.read_pos, |s| s.seq)
    }

    /// Next source position to read.
    pub fn read_pos(&self) -> u64 {
        self.read_pos
    }

    /// QoS 1/2 messages in flight.
    pub fn inflight(&self) -> usize {
        self.inflight
    }

    /// How many more messages may be read into the window.
    pub fn room(&self) -> usize {
        self.capacity.saturating_sub(self.slots.len())
    }

    /// Sets the in-flight limit (the remote's receive maximum may lower it).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.max(1);
    }

    /// Records that the source was read up to (not including) `next`.
    pub fn advance_read(&mut self, next: u64) {
        self.read_pos = self.read_pos.max(next);
    }

    /// Adds a message read from the source; positions must increase.
    pub fn push(&mut self, seq: u64, msg: Prepared) {
        debug_assert!(seq >= self.read_pos, "positions must increase");
        self.read_pos = self.read_pos.max(seq + 1);
        self.slots.push_back(Slot {
            seq,
            msg,
            state: State::Queued,
        });
    }

    /// The next message to send, if the window allows one: its position, packet id (0 for
    /// QoS 0) and content. It counts as sent from now on; a QoS 0 message is done at once.
    /// Messages go out in position order: a QoS 1/2 message blocked by the in-flight limit
    /// holds back the ones after it.
    pub fn next_send(&mut self) -> Option<(u64, u16, &Prepared)> {
        while self
            .slots
            .get(self.send_idx)
            .is_some_and(|s| s.state != State::Queued)
        {
            self.send_idx += 1;
        }
        let idx = self.send_idx;
        let qos = self.slots.get(idx)?.msg.qos;
        if qos != QoS::AtMostOnce && self.inflight >= self.limit {
            return None;
        }
        let pkid = if qos == QoS::AtMostOnce {
            0
        } else {
            self.alloc_pkid()
        };
        let slot = self.slots.get_mut(idx)?;
        slot.state = if qos == QoS::AtMostOnce {
            State::Done
        } else {
            State::Sent { pkid }
        };
        if qos != QoS::AtMostOnce {
            self.pkids.insert(pkid, slot.seq);
            self.inflight += 1;
        }
        self.send_idx += 1;
        let slot = self.slots.get(idx)?;
        Some((slot.seq, pkid, &slot.msg))
    }

    /// A packet id no message in flight uses, for a SUBSCRIBE.
    pub fn spare_pkid(&mut self) -> u16 {
        self.alloc_pkid()
    }

    /// The content of the in-flight message at `seq` (for a resend).
    pub fn get(&self, seq: u64) -> Option<&Prepared> {
        self.index_of(seq).map(|i| &self.slots[i].msg)
    }

    /// Gives up the message sent as `pkid` (it could not be encoded); it is done.
    pub fn abandon(&mut self, pkid: u16) {
        if let Some(seq) = self.pkids.remove(&pkid) {
            if let Some(i) = self.index_of(seq) {
                self.slots[i].state = State::Done;
                self.inflight = self.inflight.saturating_sub(1);
            }
        }
    }

    /// A PUBACK (`refused` when its reason code is ≥ 0x80).
    pub fn on_puback(&mut self, pkid: u16, refused: bool) -> AckOutcome {
        match self.in_flight(pkid) {
            Some((i, State::Sent { .. })) if self.slots[i].msg.qos == QoS::AtLeastOnce => {
                self.finish(i, pkid, refused)
            }
            _ => AckOutcome::Unknown,
        }
    }

    /// A PUBREC (`refused` when its reason code is ≥ 0x80: the exchange ends there).
    pub fn on_pubrec(&mut self, pkid: u16, refused: bool) -> AckOutcome {
        match self.in_flight(pkid) {
            Some((i, State::Sent { .. })) if self.slots[i].msg.qos == QoS::ExactlyOnce => {
                if refused {
                    return self.finish(i, pkid, true);
                }
                self.slots[i].state = State::Released { pkid };
                AckOutcome::Release(pkid)
            }
            // A repeated PUBREC: release again.
            Some((_, State::Released { .. })) => AckOutcome::Release(pkid),
            _ if refused => AckOutcome::Unknown,
            _ => AckOutcome::Release(pkid),
        }
    }

    /// A PUBCOMP.
    pub fn on_pubcomp(&mut self, pkid: u16) -> AckOutcome {
        match self.in_flight(pkid) {
            Some((i, State::Released { .. })) => self.finish(i, pkid, false),
            _ => AckOutcome::Unknown,
        }
    }

    /// Drops the done messages at the front; returns how many.
    pub fn pop_done(&mut self) -> usize {
        let mut n = 0;
        while self.slots.front().is_some_and(|s| s.state == State::Done) {
            self.slots.pop_front();
            self.send_idx = self.send_idx.saturating_sub(1);
            n += 1;
        }
        n
    }

    /// A new connection is up. With the session kept (`session_present`), messages in
    /// flight are sent again with their packet ids (DUP set) and released QoS 2 messages get
    /// their PUBREL again, in position order. Without it, the remote knows none of them:
    /// every message not done is queued again and gets a new packet id when sent.
    pub fn resume(&mut self, session_present: bool) -> Vec<Resend> {
        if !session_present {
            for s in &mut self.slots {
                if matches!(s.state, State::Sent { .. } | State::Released { .. }) {
                    s.state = State::Queued;
                }
            }
            self.pkids.clear();
            self.inflight = 0;
            self.send_idx = self
                .slots
                .iter()
                .take_while(|s| s.state == State::Done)
                .count();
            return Vec::new();
        }
        self.slots
            .iter()
            .filter_map(|s| match s.state {
                State::Sent { pkid } => Some(Resend::Publish { seq: s.seq, pkid }),
                State::Released { pkid } => Some(Resend::PubRel { pkid }),
                State::Queued | State::Done => None,
            })
            .collect()
    }

    /// Skips the queued (never sent) messages at positions below `bound`; returns how many.
    /// Messages already sent are left to finish: the remote may have them.
    pub fn skip_queued_below(&mut self, bound: u64) -> u64 {
        let mut n = 0;
        for s in self.slots.iter_mut().skip(self.send_idx) {
            if s.seq >= bound {
                break;
            }
            if s.state == State::Queued {
                s.state = State::Done;
                n += 1;
            }
        }
        // Skipped slots right at the send index count as passed over.
        while self
            .slots
            .get(self.send_idx)
            .is_some_and(|s| s.state == State::Done)
        {
            self.send_idx += 1;
        }
        n
    }

    fn finish(&mut self, i: usize, pkid: u16, refused: bool) -> AckOutcome {
        let seq = self.slots[i].seq;
        self.slots[i].state = State::Done;
        self.pkids.remove(&pkid);
        self.inflight = self.inflight.saturating_sub(1);
        if refused {
            AckOutcome::Refused(seq)
        } else {
            AckOutcome::Done(seq)
        }
    }

    fn in_flight(&self, pkid: u16) -> Option<(usize, State)> {
        let seq = *self.pkids.get(&pkid)?;
        let i = self.index_of(seq)?;
        Some((i, self.slots[i].state))
    }

    fn index_of(&self, seq: u64) -> Option<usize> {
        self.slots.binary_search_by_key(&seq, |s| s.seq).ok()
    }

    fn alloc_pkid(&mut self) -> u16 {
        loop {
            self.last_pkid = self.last_pkid.checked_add(1).unwrap_or(1);
            if !self.pkids.contains_key(&self.last_pkid) {
                return self.last_pkid;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(qos: QoS) -> Prepared {
        Prepared {
            topic: "t".into(),
            payload: Bytes::new(),
            qos,
            retain: false,
            props: Props::default(),
        }
    }

    fn send_all(w: &mut Window) -> Vec<(u64, u16)> {
        let mut out = Vec::new();
        while let Some((seq, pkid, _)) = w.next_send() {
            out.push((seq, pkid));
        }
        out
    }

    #[test]
    fn cursor_moves_over_acknowledged_prefix_only() {
        let mut w = Window::new(10, 8, 16);
        for seq in [10, 12, 13] {
            w.push(seq, msg(QoS::AtLeastOnce));
        }
        let sent = send_all(&mut w);
        assert_eq!(sent.len(), 3);
        assert_eq!(w.cursor(), 10);
        // Out of order: the second acknowledged first.
        assert_eq!(w.on_puback(sent[1].1, false), AckOutcome::Done(12));
        w.pop_done();
        assert_eq!(w.cursor(), 10);
        assert_eq!(w.on_puback(sent[0].1, false), AckOutcome::Done(10));
        w.pop_done();
        assert_eq!(w.cursor(), 13);
        assert_eq!(w.on_puback(sent[2].1, false), AckOutcome::Done(13));
        w.pop_done();
        assert_eq!(w.cursor(), 14, "the read position once everything is done");
        assert_eq!(w.on_puback(sent[2].1, false), AckOutcome::Unknown);
    }

    #[test]
    fn inflight_limit_holds_back_in_order() {
        let mut w = Window::new(1, 2, 16);
        w.push(1, msg(QoS::AtLeastOnce));
        w.push(2, msg(QoS::AtLeastOnce));
        w.push(3, msg(QoS::AtMostOnce));
        w.push(4, msg(QoS::AtLeastOnce));
        let sent = send_all(&mut w);
        // QoS 0 is not limited: 3 follows 2, then 4 waits for a free slot.
        assert_eq!(sent.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(sent[2].1, 0, "QoS 0 has no packet id");
        w.on_puback(sent[0].1, false);
        let more = send_all(&mut w);
        assert_eq!(more.iter().map(|s| s.0).collect::<Vec<_>>(), vec![4]);
        assert_eq!(w.inflight(), 2);
    }

    #[test]
    fn qos2_needs_pubrec_then_pubcomp() {
        let mut w = Window::new(1, 4, 4);
        w.push(1, msg(QoS::ExactlyOnce));
        let (_, pkid, _) = w.next_send().unwrap_or_else(|| panic!("sendable"));
        assert_eq!(w.on_puback(pkid, false), AckOutcome::Unknown);
        assert_eq!(w.on_pubrec(pkid, false), AckOutcome::Release(pkid));
        assert_eq!(w.on_pubrec(pkid, false), AckOutcome::Release(pkid));
        w.pop_done();
        assert_eq!(w.cursor(), 1);
        assert_eq!(w.on_pubcomp(pkid), AckOutcome::Done(1));
        w.pop_done();
        assert_eq!(w.cursor(), 2);
        // A PUBREC nobody waits for still gets a PUBREL.
        assert_eq!(w.on_pubrec(999, false), AckOutcome::Release(999));
    }

    #[test]
    fn refusals_finish_the_message() {
        let mut w = Window::new(1, 4, 4);
        w.push(1, msg(QoS::AtLeastOnce));
        w.push(2, msg(QoS::ExactlyOnce));
        let sent = send_all(&mut w);
        assert_eq!(w.on_puback(sent[0].1, true), AckOutcome::Refused(1));
        assert_eq!(w.on_pubrec(sent[1].1, true), AckOutcome::Refused(2));
        w.pop_done();
        assert_eq!(w.cursor(), 3);
        assert_eq!(w.inflight(), 0);
    }

    #[test]
    fn resume_with_session_resends_with_same_ids_in_order() {
        let mut w = Window::new(1, 8, 8);
        w.push(1, msg(QoS::ExactlyOnce));
        w.push(2, msg(QoS::AtLeastOnce));
        w.push(3, msg(QoS::AtLeastOnce));
        let sent = send_all(&mut w);
        w.on_pubrec(sent[0].1, false);
        let r = w.resume(true);
        assert_eq!(
            r,
            vec![
                Resend::PubRel { pkid: sent[0].1 },
                Resend::Publish {
                    seq: 2,
                    pkid: sent[1].1
                },
                Resend::Publish {
                    seq: 3,
                    pkid: sent[2].1
                },
            ]
        );
        assert_eq!(w.on_pubcomp(sent[0].1), AckOutcome::Done(1));
    }

    #[test]
    fn resume_without_session_requeues_everything_not_done() {
        let mut w = Window::new(1, 8, 8);
        w.push(1, msg(QoS::AtLeastOnce));
        w.push(2, msg(QoS::AtMostOnce));
        w.push(3, msg(QoS::ExactlyOnce));
        let sent = send_all(&mut w);
        w.on_pubrec(sent[2].1, false);
        assert!(w.resume(false).is_empty());
        assert_eq!(w.inflight(), 0);
        let again = send_all(&mut w);
        // The QoS 0 message was written already and is not sent again.
        assert_eq!(again.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(w.on_puback(sent[0].1, false), AckOutcome::Unknown);
    }

    #[test]
    fn packet_ids_skip_those_in_use() {
        let mut w = Window::new(1, 3, 8);
        w.last_pkid = u16::MAX - 1;
        for s in 1..=3 {
            w.push(s, msg(QoS::AtLeastOnce));
        }
        let sent = send_all(&mut w);
        assert_eq!(
            sent.iter().map(|s| s.1).collect::<Vec<_>>(),
            vec![u16::MAX, 1, 2]
        );
        w.on_puback(1, false);
        w.last_pkid = 1;
        w.push(4, msg(QoS::AtLeastOnce));
        // 2 is still in flight, so the next free id is 3.
        assert_eq!(w.next_send().map(|s| s.1), Some(3));
    }

    #[test]
    fn lag_bound_skips_only_unsent_messages() {
        let mut w = Window::new(1, 1, 8);
        for s in 1..=4 {
            w.push(s, msg(QoS::AtLeastOnce));
        }
        let sent = send_all(&mut w);
        assert_eq!(sent.len(), 1);
        assert_eq!(w.skip_queued_below(3), 1, "2 skipped, 1 is in flight");
        w.on_puback(sent[0].1, false);
        w.pop_done();
        assert_eq!(w.cursor(), 3);
        assert_eq!(w.next_send().map(|s| s.0), Some(3));
    }

    #[test]
    fn room_counts_held_messages() {
        let mut w = Window::new(1, 1, 2);
        w.push(1, msg(QoS::AtLeastOnce));
        assert_eq!(w.room(), 1);
        w.advance_read(50);
        assert_eq!(w.read_pos(), 50);
        assert_eq!(w.cursor(), 1);
    }
}
