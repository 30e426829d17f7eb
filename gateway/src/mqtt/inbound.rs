//! Packets from the client: PUBLISH at each QoS (acknowledged only once the log has the
//! message), PUBREL, the acknowledgements of our deliveries, SUBSCRIBE, UNSUBSCRIBE, PINGREQ
//! and DISCONNECT. Anything else is a protocol error.

use super::connection::{AckKind, Connection};
use super::session::{Stage, Subscription};
use super::{Close, qos_in};
use crate::broker::Subscriber;
use crate::core::message::now_ms;
use crate::core::topic::{TopicLimits, validate_filter, validate_topic_name};
use crate::core::{Message, MessageProps, QoS};
use crate::log::{Answer, Backlog, DedupeKey, LogError};
use bytes::BytesMut;
use rumqttc::v5::mqttbytes::v5::{
    DisconnectReasonCode as R, Packet, PubAck, PubAckReason, PubComp, PubCompReason, PubRec,
    PubRecReason, PubRel, PubRelReason, Publish, RetainForwardRule, SubAck, Subscribe,
    SubscribeReasonCode, UnsubAck, UnsubAckReason, Unsubscribe,
};
use std::sync::Arc;
use tokio::io::AsyncWrite;

impl<W: AsyncWrite + Unpin> Connection<W> {
    fn limits(&self) -> TopicLimits {
        TopicLimits {
            max_len: self.broker.settings.max_topic_length,
            max_levels: self.broker.settings.max_topic_levels,
        }
    }

    /// Decodes and handles every complete packet in `buf`.
    pub(super) fn on_bytes(&mut self, buf: &mut BytesMut) -> Result<(), Close> {
        // Publishes that came in one read share a receive time (one clock read per read).
        self.read_at_ms = now_ms();
        while let Some(pkt) = self.codec.decode(buf).map_err(Close::Codec)? {
            self.on_packet(pkt)?;
        }
        Ok(())
    }

    fn on_packet(&mut self, pkt: Packet) -> Result<(), Close> {
        match pkt {
            Packet::Publish(p) => self.on_publish(p),
            Packet::PubAck(a) => {
                if self
                    .session
                    .inflight
                    .get(&a.pkid)
                    .is_some_and(|f| f.qos == QoS::AtLeastOnce)
                {
                    self.session.inflight.remove(&a.pkid);
                    self.session.dirty = true;
                }
                Ok(())
            }
            Packet::PubRec(r) => {
                let known = self
                    .session
                    .inflight
                    .get_mut(&r.pkid)
                    .filter(|f| f.qos == QoS::ExactlyOnce);
                match known {
                    Some(f) => {
                        if is_failure(r.reason) {
                            // MQTT 5: a failed PUBREC ends the exchange.
                            self.session.inflight.remove(&r.pkid);
                        } else {
                            f.stage = Stage::Released;
                            self.send(&Packet::PubRel(PubRel::new(r.pkid, None)));
                        }
                        self.session.dirty = true;
                    }
                    None => {
                        let mut rel = PubRel::new(r.pkid, None);
                        rel.reason = PubRelReason::PacketIdentifierNotFound;
                        self.send(&Packet::PubRel(rel));
                    }
                }
                Ok(())
            }
            Packet::PubComp(c) => {
                if self
                    .session
                    .inflight
                    .get(&c.pkid)
                    .is_some_and(|f| f.stage == Stage::Released)
                {
                    self.session.inflight.remove(&c.pkid);
                    self.session.dirty = true;
                }
                Ok(())
            }
            Packet::PubRel(r) => {
                self.on_pubrel(r.pkid);
                Ok(())
            }
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(u);
                Ok(())
            }
            Packet::PingReq(_) => {
                self.send(&Packet::PingResp(rumqttc::v5::mqttbytes::v5::PingResp));
                Ok(())
            }
            Packet::Disconnect(d) => {
                if let Some(exp) = d
                    .properties
                    .as_ref()
                    .and_then(|p| p.session_expiry_interval)
                {
                    if self.session.expiry == 0 && exp > 0 {
                        return Err(Close::Protocol(
                            R::ProtocolError,
                            "DISCONNECT set a session expiry after CONNECT had none",
                        ));
                    }
                    let cap = self.broker.settings.max_session_expiry;
                    self.session.expiry = if cap > 0 { exp.min(cap) } else { exp };
                }
                Err(Close::ClientDisconnect {
                    with_will: d.reason_code == R::DisconnectWithWillMessage,
                })
            }
            Packet::Connect(..) => Err(Close::Protocol(R::ProtocolError, "second CONNECT")),
            Packet::Auth(_) => Err(Close::Protocol(
                R::ProtocolError,
                "AUTH without an authentication method",
            )),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp(_) => {
                Err(Close::Protocol(
                    R::ProtocolError,
                    "client sent a server-only packet",
                ))
            }
        }
    }

    fn on_publish(&mut self, p: Publish) -> Result<(), Close> {
        let props = p.properties.unwrap_or_default();
        let topic = std::str::from_utf8(&p.topic)
            .map_err(|_| Close::Protocol(R::MalformedPacket, "topic is not UTF-8"))?
            .to_owned();
        let topic = match props.topic_alias {
            Some(alias) => {
                if alias == 0 || alias > self.broker.settings.topic_alias_maximum {
                    return Err(Close::Protocol(
                        R::TopicAliasInvalid,
                        "topic alias out of range",
                    ));
                }
                if topic.is_empty() {
                    self.aliases
                        .get(&alias)
                        .cloned()
                        .ok_or(Close::Protocol(R::ProtocolError, "unknown topic alias"))?
                } else {
                    self.aliases.insert(alias, topic.clone());
                    topic
                }
            }
            None => topic,
        };
        if validate_topic_name(&topic, &self.limits()).is_err() || topic.starts_with('$') {
            return Err(Close::Protocol(
                R::TopicNameInvalid,
                "invalid topic name in PUBLISH",
            ));
        }
        if !props.subscription_identifiers.is_empty() {
            return Err(Close::Protocol(
                R::ProtocolError,
                "PUBLISH from a client carried a subscription identifier",
            ));
        }
        let qos = qos_in(p.qos);
        if qos.is_reliable()
            && self.v5
            && self.inbound_unacked >= usize::from(self.broker.settings.receive_maximum)
        {
            return Err(Close::Protocol(
                R::ReceiveMaximumExceeded,
                "more unacknowledged QoS 1/2 publishes than receive maximum",
            ));
        }
        let msg = Message {
            topic,
            payload: p.payload,
            qos,
            retain: p.retain,
            props: MessageProps {
                payload_format_indicator: props.payload_format_indicator,
                message_expiry_interval: props.message_expiry_interval,
                content_type: props.content_type,
                response_topic: props.response_topic,
                correlation_data: props.correlation_data,
                user_properties: props.user_properties,
            },
            ts_ms: self.read_at_ms,
            origin: Some(self.origin.clone()),
        };
        let (kind, dedupe) = match qos {
            QoS::AtMostOnce => (AckKind::None, None),
            QoS::AtLeastOnce => (AckKind::PubAck(p.pkid), None),
            QoS::ExactlyOnce => {
                if !self.inbound_qos2.insert(p.pkid) {
                    // A retry of an exchange still open: the log answers Duplicate.
                    self.inbound_unacked = self.inbound_unacked.saturating_sub(1);
                }
                (AckKind::PubRec(p.pkid), Some(self.qos2_key(p.pkid)))
            }
        };
        if qos.is_reliable() {
            self.inbound_unacked += 1;
        }
        if matches!(kind, AckKind::None) {
            // Nothing to acknowledge: counted, not answered (no wake-up per message).
            let backlog = self
                .backlog
                .get_or_insert_with(|| Backlog::new(super::connection::MAX_PENDING_APPENDS));
            let guard = backlog.add();
            self.broker.log.submit_counted(msg, guard);
            return Ok(());
        }
        let ticket = self.answers.ticket(kind.tag());
        self.awaiting += 1;
        self.broker.log.submit_queued(msg, dedupe, ticket);
        Ok(())
    }

    fn qos2_key(&self, pkid: u16) -> DedupeKey {
        let mut k = Vec::with_capacity(self.client_id.len() + 16);
        k.extend_from_slice(b"mqtt\0");
        k.extend_from_slice(self.client_id.as_bytes());
        k.push(0);
        k.extend_from_slice(&self.session.nonce.to_be_bytes());
        k.extend_from_slice(&pkid.to_be_bytes());
        DedupeKey(k)
    }

    fn on_pubrel(&mut self, pkid: u16) {
        let key = self.qos2_key(pkid);
        let ticket = self.answers.ticket(AckKind::PubComp(pkid).tag());
        self.awaiting += 1;
        self.broker.log.forget_dedupe_queued(key, ticket);
    }

    /// Log operations finished (a group commit finishes thousands at once, and they come in
    /// one receive): send the acknowledgement each was waiting for, in order.
    pub(super) fn on_answers(&mut self, answers: &mut Vec<Answer>) -> Result<(), Close> {
        self.awaiting = self.awaiting.saturating_sub(answers.len());
        for a in answers.drain(..) {
            self.on_ack(AckKind::from_tag(a.tag), a.result)?;
        }
        Ok(())
    }

    /// A log operation finished: send the acknowledgement it was waiting for.
    pub(super) fn on_ack(&mut self, kind: AckKind, res: Result<(), LogError>) -> Result<(), Close> {
        if let Err(e) = &res {
            tracing::warn!(client_id = %self.client_id, error = %e, "log did not accept a publish");
            if !self.v5 && !matches!(kind, AckKind::None) {
                // 3.1.1 has no negative acknowledgement: close so the client retries.
                return Err(Close::Protocol(R::UnspecifiedError, "log failure"));
            }
        }
        match kind {
            AckKind::None => {}
            AckKind::PubAck(pkid) => {
                self.inbound_unacked = self.inbound_unacked.saturating_sub(1);
                let mut ack = PubAck::new(pkid, None);
                if res.is_err() {
                    ack.reason = PubAckReason::UnspecifiedError;
                }
                self.send(&Packet::PubAck(ack));
            }
            AckKind::PubRec(pkid) => {
                let mut rec = PubRec::new(pkid, None);
                if res.is_err() {
                    rec.reason = PubRecReason::UnspecifiedError;
                    self.inbound_qos2.remove(&pkid);
                    self.inbound_unacked = self.inbound_unacked.saturating_sub(1);
                }
                self.send(&Packet::PubRec(rec));
            }
            AckKind::PubComp(pkid) => {
                let mut comp = PubComp::new(pkid, None);
                if self.inbound_qos2.remove(&pkid) {
                    self.inbound_unacked = self.inbound_unacked.saturating_sub(1);
                } else if self.v5 && res.is_err() {
                    comp.reason = PubCompReason::PacketIdentifierNotFound;
                }
                self.send(&Packet::PubComp(comp));
            }
        }
        Ok(())
    }

    fn on_subscribe(&mut self, s: Subscribe) -> Result<(), Close> {
        let sub_id = match s.properties.as_ref().and_then(|p| p.id) {
            Some(0) => {
                return Err(Close::Protocol(
                    R::ProtocolError,
                    "subscription identifier 0",
                ));
            }
            Some(id) => Some(u32::try_from(id).map_err(|_| {
                Close::Protocol(R::ProtocolError, "subscription identifier too large")
            })?),
            None => None,
        };
        let limits = self.limits();
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut retained = Vec::new();
        for f in s.filters {
            let Ok(parsed) = validate_filter(&f.path, &limits) else {
                codes.push(SubscribeReasonCode::TopicFilterInvalid);
                continue;
            };
            let shared = super::session::shared_parts(&f.path).is_some();
            let _ = parsed;
            if shared && f.nolocal {
                return Err(Close::Protocol(
                    R::ProtocolError,
                    "no-local on a shared subscription",
                ));
            }
            let exists = self.session.subs.iter().any(|x| x.filter == f.path);
            if !exists
                && self.session.subs.len() >= self.broker.settings.max_subscriptions_per_client
            {
                codes.push(SubscribeReasonCode::QuotaExceeded);
                continue;
            }
            let granted = qos_in(f.qos);
            let sub = Subscription {
                filter: f.path.clone(),
                qos: granted,
                no_local: f.nolocal,
                retain_as_published: f.preserve_retain,
                id: sub_id,
                since_seq: self.broker.log.released(),
            };
            let existed = self.session.add_subscription(sub);
            let share = shared.then(|| Arc::<str>::from(f.path.as_str()));
            self.broker.subscribe(
                &f.path,
                self.conn,
                Subscriber {
                    outbox: self.outbox.clone(),
                    share,
                },
            );
            let send_retained = !shared
                && match f.retain_forward_rule {
                    RetainForwardRule::OnEverySubscribe => true,
                    RetainForwardRule::OnNewSubscribe => !existed,
                    RetainForwardRule::Never => false,
                };
            if send_retained {
                retained.push((f.path, granted));
            }
            codes.push(SubscribeReasonCode::Success(f.qos));
        }
        self.send(&Packet::SubAck(SubAck {
            pkid: s.pkid,
            return_codes: codes,
            properties: None,
        }));
        // Queued in reverse so the first filter's retained messages go out first.
        for (filter, granted) in retained.into_iter().rev() {
            self.queue_retained(&filter, granted, sub_id);
        }
        if self.session.is_persistent() {
            self.save_now();
        }
        Ok(())
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe) {
        let reasons = u
            .filters
            .iter()
            .map(|f| {
                let had = self.session.remove_subscription(f);
                self.broker.unsubscribe(f, self.conn);
                if had {
                    UnsubAckReason::Success
                } else {
                    UnsubAckReason::NoSubscriptionExisted
                }
            })
            .collect();
        self.send(&Packet::UnsubAck(UnsubAck {
            pkid: u.pkid,
            reasons,
            properties: None,
        }));
        if self.session.is_persistent() {
            self.save_now();
        }
    }
}

fn is_failure(reason: PubRecReason) -> bool {
    !matches!(
        reason,
        PubRecReason::Success | PubRecReason::NoMatchingSubscribers
    )
}
