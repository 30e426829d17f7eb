//! Deliveries to the client: filling the pending queue from the outbox (live) or the store
//! (catch-up), the in-flight window, PUBLISH encoding, and resends after a resume.

use super::connection::{Connection, Mode};
use super::qos_out;
use super::resume::Resend;
use super::session::{Inflight, Stage};
use crate::broker::Subscriber;
use crate::core::message::now_ms;
use crate::core::{QoS, StoredMessage};
use rumqttc::v5::mqttbytes::v5::{Packet, PubRel, Publish, PublishProperties};
use std::sync::Arc;
use tokio::io::AsyncWrite;

/// Messages read from the store per catch-up step, and taken from the outbox per drain.
const STEP: usize = 256;
/// Bytes of PUBLISH to queue per pass before writing.
const WRITE_BATCH: usize = 64 * 1024;

/// A delivery decided but not yet written.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub msg: Arc<StoredMessage>,
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
    /// Sent because of a subscribe (retained message), not part of the cursor's stream.
    pub from_retained: bool,
    /// Reached us through a shared subscription.
    pub shared: bool,
}

impl<W: AsyncWrite + Unpin> Connection<W> {
    /// The number of QoS 1/2 messages we may have unacknowledged at the client.
    fn window(&self) -> usize {
        usize::from(
            self.receive_max
                .min(self.broker.settings.max_inflight)
                .max(1),
        )
    }

    /// True when `pump` could move something into the write buffer now: a pending delivery
    /// the window admits, history to read, or deliveries waiting in the outbox.
    pub(super) fn has_work(&self) -> bool {
        match self.pending.front() {
            Some(head) => !head.qos.is_reliable() || self.session.inflight.len() < self.window(),
            None => self.mode == Mode::CatchUp || !self.outbox.is_empty(),
        }
    }

    /// Moves deliveries into the write buffer as far as the window and batch size allow,
    /// refilling from the outbox or the store.
    pub(super) fn pump(&mut self) {
        while self.out.len() < WRITE_BATCH {
            if self.pending.is_empty() && !self.refill() {
                break;
            }
            let Some(head) = self.pending.front() else {
                break;
            };
            if head.qos.is_reliable() && self.session.inflight.len() >= self.window() {
                break;
            }
            if let Some(p) = self.pending.pop_front() {
                self.publish(p);
            }
        }
    }

    /// Refills `pending`; false when there is nothing to take right now.
    fn refill(&mut self) -> bool {
        match self.mode {
            Mode::CatchUp => {
                let batch = match self.broker.log.read(self.session.cursor, STEP) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(client_id = %self.client_id, error = %e, "catch-up read failed; retrying live");
                        Vec::new()
                    }
                };
                if batch.is_empty() {
                    self.mode = Mode::Live;
                    return self.refill();
                }
                for m in batch {
                    self.session.cursor = m.pos.seq + 1;
                    if let Some(r) = self.session.route(&m, None, &self.origin, true) {
                        self.pending.push_back(Pending {
                            msg: m,
                            qos: r.qos,
                            retain: r.retain,
                            sub_ids: r.sub_ids,
                            from_retained: false,
                            shared: false,
                        });
                    }
                }
                self.session.dirty = true;
                true
            }
            Mode::Live => {
                let drained = self.outbox.drain(STEP);
                if drained.dropped > 0 {
                    self.dropped += drained.dropped;
                    tracing::info!(client_id = %self.client_id, dropped = drained.dropped, total = self.dropped, "slow QoS 0 subscriber: oldest messages dropped");
                }
                if drained.gap {
                    self.mode = Mode::CatchUp;
                }
                let had = !drained.deliveries.is_empty();
                for d in drained.deliveries {
                    let shared = d.shared.is_some();
                    if !shared {
                        if d.msg.pos.seq < self.session.cursor {
                            continue;
                        }
                        self.session.cursor = d.msg.pos.seq + 1;
                        self.session.dirty = true;
                    }
                    if let Some(r) =
                        self.session
                            .route(&d.msg, d.shared.as_deref(), &self.origin, false)
                    {
                        self.pending.push_back(Pending {
                            msg: d.msg,
                            qos: r.qos,
                            retain: r.retain,
                            sub_ids: r.sub_ids,
                            from_retained: false,
                            shared,
                        });
                    }
                }
                had || self.mode == Mode::CatchUp
            }
        }
    }

    /// Writes one PUBLISH (skipping expired messages and ones too large for the client).
    fn publish(&mut self, p: Pending) {
        // The clock is read only for messages that expire.
        let remaining = p
            .msg
            .msg
            .expires_at_ms()
            .and_then(|_| p.msg.msg.remaining_expiry(now_ms()));
        if remaining == Some(0) {
            return;
        }
        if !p.qos.is_reliable() && !p.retain && p.sub_ids.is_empty() && remaining.is_none() {
            // The same bytes for every subscriber of this protocol version: encode once.
            self.publish_shared(&p.msg);
            return;
        }
        let pkid = if p.qos.is_reliable() {
            match self.session.next_pkid() {
                Some(id) => id,
                None => return,
            }
        } else {
            0
        };
        let publish =
            self.build_publish(&p.msg, p.qos, p.retain, &p.sub_ids, pkid, false, remaining);
        let before = self.out.len();
        self.send(&Packet::Publish(publish));
        if self.out.len() == before {
            // Larger than the client's maximum packet size: dropped as if delivered.
            return;
        }
        if p.qos.is_reliable() {
            self.session.inflight.insert(
                pkid,
                Inflight {
                    msg: p.msg,
                    qos: p.qos,
                    retain: p.retain,
                    sub_ids: p.sub_ids,
                    stage: Stage::Sent,
                },
            );
            self.session.dirty = true;
        }
    }

    /// Writes a QoS 0 PUBLISH from the message's shared encoding for this protocol version.
    fn publish_shared(&mut self, msg: &Arc<StoredMessage>) {
        let slot = usize::from(self.v5);
        let bytes = msg.wire.get_or_encode(slot, || {
            let m = &msg.msg;
            // Fixed header, topic length, topic and payload; properties may grow it.
            let size = 8 + m.topic.len() + m.payload.len();
            let mut buf = bytes::BytesMut::with_capacity(size);
            if (!self.v5 || m.props.is_empty())
                && self
                    .codec
                    .encode_plain_publish(&m.topic, &m.payload, &mut buf)
                    .is_some()
            {
                return Some(buf.freeze());
            }
            let publish = self.build_publish(msg, QoS::AtMostOnce, false, &[], 0, false, None);
            self.codec
                .encode(&Packet::Publish(publish), &mut buf, None)
                .ok()?;
            Some(buf.freeze())
        });
        let Some(bytes) = bytes else { return };
        if self
            .max_packet
            .is_some_and(|max| bytes.len() > max as usize)
        {
            // Larger than the client's maximum packet size: dropped as if delivered.
            return;
        }
        self.out.extend_from_slice(&bytes);
    }

    #[allow(clippy::too_many_arguments)]
    fn build_publish(
        &self,
        msg: &StoredMessage,
        qos: QoS,
        retain: bool,
        sub_ids: &[u32],
        pkid: u16,
        dup: bool,
        remaining_expiry: Option<u32>,
    ) -> Publish {
        let m = &msg.msg;
        let properties = self.v5.then(|| PublishProperties {
            payload_format_indicator: m.props.payload_format_indicator,
            message_expiry_interval: remaining_expiry,
            topic_alias: None,
            response_topic: m.props.response_topic.clone(),
            correlation_data: m.props.correlation_data.clone(),
            user_properties: m.props.user_properties.clone(),
            subscription_identifiers: sub_ids.iter().map(|i| *i as usize).collect(),
            content_type: m.props.content_type.clone(),
        });
        Publish {
            dup,
            qos: qos_out(qos),
            retain,
            topic: bytes::Bytes::copy_from_slice(m.topic.as_bytes()),
            pkid,
            payload: m.payload.clone(),
            properties,
        }
    }

    /// Puts every session subscription into the live index (after CONNECT).
    pub(super) fn resubscribe(&mut self) {
        for s in &self.session.subs {
            let share = s.is_shared().then(|| Arc::<str>::from(s.filter.as_str()));
            self.broker.subscribe(
                &s.filter,
                self.conn,
                Subscriber {
                    outbox: self.outbox.clone(),
                    share,
                },
            );
        }
    }

    /// Queues the retained messages matching a new subscription, ahead of the stream.
    pub(super) fn queue_retained(&mut self, filter: &str, granted: QoS, sub_id: Option<u32>) {
        let retained = match self.broker.log.retained(filter) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(client_id = %self.client_id, error = %e, "could not read retained messages");
                return;
            }
        };
        for m in retained.into_iter().rev() {
            let qos = m.msg.qos.min(granted);
            self.pending.push_front(Pending {
                msg: m,
                qos,
                retain: true,
                sub_ids: sub_id.into_iter().collect(),
                from_retained: true,
                shared: false,
            });
        }
    }

    /// Resends what was in flight when a resumed session last disconnected: PUBLISH with
    /// DUP for unacknowledged messages, PUBREL for QoS 2 messages already received.
    pub(super) fn resend_inflight(&mut self, entries: Vec<Resend>) {
        for (pkid, seq, qos, retain, sub_ids, stage) in entries {
            let msg = match self.broker.log.read(seq, 1) {
                Ok(mut v) if v.first().is_some_and(|m| m.pos.seq == seq) => v.remove(0),
                _ => {
                    if stage == Stage::Released {
                        // The client has the message; finish the exchange anyway.
                        self.send(&Packet::PubRel(PubRel::new(pkid, None)));
                    }
                    continue;
                }
            };
            match stage {
                Stage::Sent => {
                    let remaining = msg.msg.remaining_expiry(now_ms());
                    let p = self.build_publish(&msg, qos, retain, &sub_ids, pkid, true, remaining);
                    self.send(&Packet::Publish(p));
                }
                Stage::Released => self.send(&Packet::PubRel(PubRel::new(pkid, None))),
            }
            self.session.inflight.insert(
                pkid,
                Inflight {
                    msg,
                    qos,
                    retain,
                    sub_ids,
                    stage,
                },
            );
        }
    }
}
