//! A connection's bounded inbox of live deliveries.
//!
//! The fan-out task pushes; the connection drains. When the queue is full a reliable
//! consumer is not slowed down nor is anything buffered without bound: the message is
//! dropped from the live path and the outbox is marked with a *gap*, which tells the
//! consumer to catch up from the store from its cursor. A consumer that only wants QoS 0
//! instead loses its oldest queued delivery, and the loss is counted.

use crate::core::StoredMessage;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::Notify;

/// One live delivery to one connection.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The released message, shared by every subscriber.
    pub msg: Arc<StoredMessage>,
    /// Set when the message reached this connection through a shared subscription: the
    /// full `$share/group/filter` that matched. `None` for ordinary subscriptions.
    pub shared: Option<Arc<str>>,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<Delivery>,
    gap: bool,
    dropped: u64,
    closed: bool,
}

/// Bounded queue between the fan-out task and one connection.
#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
    notify: Notify,
    capacity: usize,
    /// Whether a full queue drops the oldest (QoS 0 only consumers) or marks a gap.
    reliable: std::sync::atomic::AtomicBool,
}

/// What a consumer takes out of its outbox in one go.
#[derive(Debug, Default)]
pub struct Drained {
    /// Deliveries in sequence order.
    pub deliveries: Vec<Delivery>,
    /// True when messages were dropped for lack of room since the last drain and the
    /// consumer must catch up from the store; the queue was cleared with it.
    pub gap: bool,
    /// QoS 0 deliveries dropped (oldest first) since the last drain.
    pub dropped: u64,
}

impl Outbox {
    /// A new outbox holding at most `capacity` deliveries.
    pub fn new(capacity: usize, reliable: bool) -> Arc<Outbox> {
        Arc::new(Outbox {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            capacity: capacity.max(1),
            reliable: std::sync::atomic::AtomicBool::new(reliable),
        })
    }

    /// Switches between catch-up-on-overflow (reliable) and drop-oldest behaviour.
    pub fn set_reliable(&self, reliable: bool) {
        self.reliable
            .store(reliable, std::sync::atomic::Ordering::Relaxed);
    }

    /// Offers a delivery. Always succeeds for ordinary subscriptions (see the module doc).
    pub fn push(&self, d: Delivery) {
        let mut g = self.inner.lock();
        if g.closed {
            return;
        }
        if g.queue.len() >= self.capacity {
            if self.reliable.load(std::sync::atomic::Ordering::Relaxed) {
                g.gap = true;
            } else {
                g.queue.pop_front();
                g.dropped += 1;
                g.queue.push_back(d);
            }
        } else {
            g.queue.push_back(d);
        }
        drop(g);
        self.notify.notify_one();
    }

    /// Offers a shared-subscription delivery; returns false (not taken) when full, so the
    /// group can offer it to another member.
    pub fn try_push(&self, d: Delivery) -> bool {
        let mut g = self.inner.lock();
        if g.closed || g.queue.len() >= self.capacity {
            return false;
        }
        g.queue.push_back(d);
        drop(g);
        self.notify.notify_one();
        true
    }

    /// Takes up to `max` deliveries plus the gap/drop signals. When a gap is reported the
    /// queue is emptied: everything in it will be read again from the store.
    pub fn drain(&self, max: usize) -> Drained {
        let mut g = self.inner.lock();
        let gap = std::mem::take(&mut g.gap);
        let dropped = std::mem::take(&mut g.dropped);
        let deliveries = if gap {
            // Keep shared deliveries: the store catch-up does not cover them.
            g.queue.retain(|d| d.shared.is_some());
            let n = g.queue.len().min(max);
            g.queue.drain(..n).collect()
        } else {
            let n = g.queue.len().min(max);
            g.queue.drain(..n).collect()
        };
        Drained {
            deliveries,
            gap,
            dropped,
        }
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        let g = self.inner.lock();
        g.queue.is_empty() && !g.gap && g.dropped == 0
    }

    /// Waits until something was pushed since the last wait (a stored permit makes this
    /// return at once).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// Stops accepting deliveries (the connection is going away) and frees the queue.
    pub fn close(&self) {
        let mut g = self.inner.lock();
        g.closed = true;
        g.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Message, MessageProps, Position, QoS};

    fn d(seq: u64) -> Delivery {
        Delivery {
            msg: Arc::new(StoredMessage {
                pos: Position { epoch: 1, seq },
                msg: Message {
                    topic: "t".into(),
                    payload: bytes::Bytes::new(),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    props: MessageProps::default(),
                    ts_ms: 0,
                    origin: None,
                },
                wire: Default::default(),
            }),
            shared: None,
        }
    }

    #[test]
    fn reliable_overflow_marks_gap_and_clears() {
        let o = Outbox::new(2, true);
        for s in 1..=5 {
            o.push(d(s));
        }
        let got = o.drain(10);
        assert!(got.gap);
        assert!(
            got.deliveries.is_empty(),
            "queue is re-read from the store after a gap"
        );
        assert!(o.is_empty());
    }

    #[test]
    fn qos0_overflow_drops_oldest_and_counts() {
        let o = Outbox::new(2, false);
        for s in 1..=5 {
            o.push(d(s));
        }
        let got = o.drain(10);
        assert!(!got.gap);
        assert_eq!(got.dropped, 3);
        let seqs: Vec<u64> = got.deliveries.iter().map(|d| d.msg.pos.seq).collect();
        assert_eq!(seqs, vec![4, 5]);
    }

    #[test]
    fn shared_push_refuses_when_full() {
        let o = Outbox::new(1, true);
        assert!(o.try_push(d(1)));
        assert!(!o.try_push(d(2)));
        o.close();
        assert!(!o.try_push(d(3)));
    }
}
