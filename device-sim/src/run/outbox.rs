//! A device's outgoing messages from the moment they are queued to the client until they are
//! written (QoS 0) or acknowledged (QoS 1, 2), so a device can count what was sent and acked,
//! measure ack latency, and after a lost connection re-send what was not finished, in the
//! original order and with the original stamp. No I/O: it is driven by link events.
//!
//! The link reports each publish it writes as `Sent(pkid)`, in the order it accepted them, and
//! never reuses a packet id still in flight.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use tokio::time::Instant;

/// MQTT 5 properties of one publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props {
    /// User properties (the stamp).
    pub user_properties: Vec<(String, String)>,
    /// Correlation data of a response.
    pub correlation: Option<Bytes>,
}

/// What a message is, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Telemetry with its stamp's sequence number (0 when unstamped).
    Telemetry(u64),
    /// A reply to a command.
    Reply,
    /// The birth message.
    Birth,
}

/// One outgoing message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Topic.
    pub topic: String,
    /// Payload (with the stamp already in it).
    pub payload: Bytes,
    /// QoS.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
    /// MQTT 5 properties.
    pub props: Option<Props>,
    /// What it is.
    pub kind: Kind,
    /// When it was made (ack latency is measured from here).
    pub created: Instant,
    /// Whether it was written at least once (so it is counted as sent once).
    pub sent: bool,
    order: u64,
}

/// A message that was just written or finished.
#[derive(Debug, Clone)]
pub struct Done {
    /// What it is.
    pub kind: Kind,
    /// QoS.
    pub qos: u8,
    /// True the first time it is written (false for a re-send after reconnecting).
    pub first: bool,
}

/// The messages of one device between "queued" and "finished".
#[derive(Debug, Default)]
pub struct Outbox {
    queued: VecDeque<Message>,
    inflight: HashMap<u16, Message>,
    next_order: u64,
}

impl Message {
    /// A new message made now.
    pub fn new(topic: String, payload: Bytes, qos: u8, retain: bool, kind: Kind) -> Self {
        Self {
            topic,
            payload,
            qos,
            retain,
            props: None,
            kind,
            created: Instant::now(),
            sent: false,
            order: 0,
        }
    }
}

impl Outbox {
    /// Notes a message the client accepted into its queue.
    pub fn queued(&mut self, mut m: Message) {
        if m.order == 0 {
            self.next_order += 1;
            m.order = self.next_order;
        }
        self.queued.push_back(m);
    }

    /// A publish was written with packet id `pkid`. Returns what it was; QoS 0 messages are
    /// finished here.
    pub fn on_sent(&mut self, pkid: u16) -> Option<Done> {
        let mut m = self.queued.pop_front()?;
        if self.queued.is_empty() {
            // Most devices are idle most of the time: hold no memory for them meanwhile.
            self.queued = VecDeque::new();
        }
        let done = Done {
            kind: m.kind,
            qos: m.qos,
            first: !m.sent,
        };
        m.sent = true;
        if m.qos > 0 {
            self.inflight.insert(pkid, m);
        }
        Some(done)
    }

    /// A QoS 1/2 publish finished; `None` for an ack of nothing the outbox holds.
    pub fn on_acked(&mut self, pkid: u16) -> Option<Message> {
        let m = self.inflight.remove(&pkid);
        if self.inflight.is_empty() {
            self.inflight = HashMap::new();
        }
        m
    }

    /// The connection is gone: everything unfinished is returned in its original order, to
    /// be queued again on the next connection (birth messages are dropped: a new one is sent).
    pub fn take_unfinished(&mut self) -> Vec<Message> {
        let mut all: Vec<Message> = self.inflight.drain().map(|(_, m)| m).collect();
        all.extend(self.queued.drain(..));
        all.retain(|m| m.kind != Kind::Birth);
        all.sort_by_key(|m| m.order);
        all
    }

    /// Nothing is waiting to be written or acknowledged.
    pub fn is_idle(&self) -> bool {
        self.queued.is_empty() && self.inflight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, qos: u8) -> Message {
        Message::new("t".into(), Bytes::new(), qos, false, Kind::Telemetry(seq))
    }

    #[test]
    fn sent_and_acked_in_order() {
        let mut o = Outbox::default();
        o.queued(msg(1, 0));
        o.queued(msg(2, 1));
        let d = o.on_sent(0).map(|d| (d.kind, d.first));
        assert_eq!(d, Some((Kind::Telemetry(1), true)));
        assert!(o.on_sent(1).is_some());
        assert!(!o.is_idle());
        assert_eq!(o.on_acked(1).map(|m| m.kind), Some(Kind::Telemetry(2)));
        assert!(o.on_acked(1).is_none(), "a second ack finds nothing");
        assert!(o.is_idle());
        // An idle device holds no memory for messages.
        assert_eq!((o.queued.capacity(), o.inflight.capacity()), (0, 0));
    }

    #[test]
    fn unfinished_messages_come_back_in_order_and_count_as_resent() {
        let mut o = Outbox::default();
        for seq in 1..=4 {
            o.queued(msg(seq, 1));
        }
        o.queued(Message::new("b".into(), Bytes::new(), 1, true, Kind::Birth));
        assert!(o.on_sent(7).is_some());
        assert!(o.on_sent(8).is_some());
        assert!(o.on_acked(7).is_some());
        let back = o.take_unfinished();
        let seqs: Vec<Kind> = back.iter().map(|m| m.kind).collect();
        assert_eq!(seqs, [2, 3, 4].map(Kind::Telemetry));
        assert!(o.is_idle());
        for m in back {
            o.queued(m);
        }
        assert_eq!(
            o.on_sent(1).map(|d| d.first),
            Some(false),
            "seq 2 was written before"
        );
        assert_eq!(o.on_sent(2).map(|d| d.first), Some(true));
    }
}
