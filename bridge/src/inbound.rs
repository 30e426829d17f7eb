//! Inbound: messages from the remote, renamed by the in rules, stored by the sink, and
//! acknowledged to the remote only once stored, in the order they arrived.
//!
//! QoS 2 messages are stored with a de-duplication key made of the bridge's name, the
//! remote session's nonce and the packet id, so a PUBLISH the remote sends again after a
//! reconnect is stored once; the key is forgotten at PUBREL. The nonce changes whenever the
//! remote starts a new session (a new session reuses packet ids from scratch) and is kept in
//! the sink's session record, together with a digest of the subscribed filters.
//!
//! Loop prevention: an MQTT 5 message carrying this bridge's origin property left through
//! this bridge; an MQTT 3.1.1 message on a remote topic this bridge's out rules publish to
//! is taken for its own echo (the "origin rule on topics"). Both are acknowledged and
//! dropped.

use crate::mapping::{Rule, capture, first_match};
use crate::message::{BridgeMessage, QoS};
use crate::options::Protocol;
use crate::sink::{Accepted, BridgeSink, SinkError};
use crate::status::{Counters, Status};
use crate::wire::Publish;
use crate::wire::encode::Ack;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The user property a bridge adds to what it publishes at an MQTT 5 remote; its value is
/// the bridge's client id at that remote.
pub const ORIGIN_PROPERTY: &str = "bridge-origin";

/// The inbound session record kept by the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionRecord {
    /// Identifies one remote session in de-duplication keys.
    pub nonce: u64,
    /// Digest of the subscribed filters and their QoS.
    pub digest: u64,
}

const RECORD_VERSION: u8 = 1;

impl SessionRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(17);
        v.push(RECORD_VERSION);
        v.extend_from_slice(&self.nonce.to_be_bytes());
        v.extend_from_slice(&self.digest.to_be_bytes());
        v
    }

    pub fn decode(b: &[u8]) -> Option<SessionRecord> {
        match b {
            [RECORD_VERSION, rest @ ..] if rest.len() == 16 => {
                let (n, d) = rest.split_at(8);
                Some(SessionRecord {
                    nonce: u64::from_be_bytes(n.try_into().ok()?),
                    digest: u64::from_be_bytes(d.try_into().ok()?),
                })
            }
            _ => None,
        }
    }
}

/// A stable digest (FNV-1a) of the in rules' filters and QoS, to notice changes.
pub(crate) fn digest(rules: &[Rule]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for r in rules {
        for b in r.filter.bytes().chain([0, r.qos.as_u8(), 0xFF]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// How one inbound item ended, with the acknowledgement it owes the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Stored.
    Stored,
    /// Already stored before (QoS 2 sent again).
    Duplicate,
    /// The sink refused it for good; acknowledged and dropped.
    Rejected(String),
    /// Its own message coming back; acknowledged and dropped.
    Loop,
    /// No in rule maps it to a valid local topic; acknowledged and dropped.
    Unmapped(String),
    /// A QoS 2 exchange ended (PUBREL handled).
    Released,
}

type Pending =
    Pin<Box<dyn Future<Output = (Result<Outcome, SinkError>, Option<(Ack, u16)>)> + Send>>;

/// Inbound state of one connection.
pub(crate) struct Inbound {
    sink: Arc<dyn BridgeSink>,
    rules: Arc<[Rule]>,
    /// Remote topics this bridge publishes to (3.1.1 origin rule).
    echo_filters: Arc<[String]>,
    protocol: Protocol,
    /// `bridge:<name>`.
    origin: Arc<str>,
    /// Our value of [`ORIGIN_PROPERTY`].
    origin_value: Arc<str>,
    /// Prefix of de-duplication keys: `bridge\0<name>\0<nonce>`.
    key_prefix: Vec<u8>,
    pending: FuturesOrdered<Pending>,
}

/// What the inbound side needs from the bridge, shared across connections.
pub(crate) struct InboundConfig {
    pub sink: Arc<dyn BridgeSink>,
    pub rules: Arc<[Rule]>,
    pub echo_filters: Arc<[String]>,
    pub protocol: Protocol,
    pub name: Arc<str>,
    pub origin: Arc<str>,
    pub origin_value: Arc<str>,
}

impl Inbound {
    pub fn new(c: &InboundConfig, nonce: u64) -> Inbound {
        let mut key_prefix = b"bridge\0".to_vec();
        key_prefix.extend_from_slice(c.name.as_bytes());
        key_prefix.push(0);
        key_prefix.extend_from_slice(&nonce.to_be_bytes());
        Inbound {
            sink: c.sink.clone(),
            rules: c.rules.clone(),
            echo_filters: c.echo_filters.clone(),
            protocol: c.protocol,
            origin: c.origin.clone(),
            origin_value: c.origin_value.clone(),
            key_prefix,
            pending: FuturesOrdered::new(),
        }
    }

    /// Items waiting for the sink.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    fn key(&self, pkid: u16) -> Vec<u8> {
        let mut k = self.key_prefix.clone();
        k.extend_from_slice(&pkid.to_be_bytes());
        k
    }

    fn ready(&mut self, outcome: Outcome, ack: Option<(Ack, u16)>) {
        self.pending
            .push_back(Box::pin(async move { (Ok(outcome), ack) }));
    }

    /// Takes a PUBLISH: submits it to the sink now (keeping arrival order) and queues its
    /// acknowledgement behind the sink's answer.
    pub fn on_publish(&mut self, p: Publish) {
        let ack = match p.qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => Some((Ack::PubAck, p.pkid)),
            QoS::ExactlyOnce => Some((Ack::PubRec, p.pkid)),
        };
        if self.is_echo(&p) {
            self.ready(Outcome::Loop, ack);
            return;
        }
        let Some((rule, topic)) = first_match(&self.rules, &p.topic) else {
            let why = format!(
                "no in rule maps remote topic {:?} to a local topic",
                p.topic
            );
            self.ready(Outcome::Unmapped(why), ack);
            return;
        };
        let msg = BridgeMessage {
            topic,
            payload: p.payload,
            qos: p.qos,
            retain: rule.retain.apply(p.retain),
            props: p.props,
            origin: Some(self.origin.to_string()),
        };
        let dedupe = (p.qos == QoS::ExactlyOnce).then(|| self.key(p.pkid));
        let fut = self.sink.submit(msg, dedupe);
        self.pending.push_back(Box::pin(async move {
            let r = match fut.await {
                Ok(Accepted::New) => Ok(Outcome::Stored),
                Ok(Accepted::Duplicate) => Ok(Outcome::Duplicate),
                Err(SinkError::Rejected(why)) => Ok(Outcome::Rejected(why)),
                Err(e) => Err(e),
            };
            (r, ack)
        }));
    }

    /// Takes a PUBREL: forgets the de-duplication key, then owes a PUBCOMP.
    pub fn on_pubrel(&mut self, pkid: u16) {
        let sink = self.sink.clone();
        let key = self.key(pkid);
        self.pending.push_back(Box::pin(async move {
            let r = sink.forget(key).await.map(|()| Outcome::Released);
            (r, Some((Ack::PubComp, pkid)))
        }));
    }

    /// The next finished item, in arrival order.
    pub async fn next(&mut self) -> Option<(Result<Outcome, SinkError>, Option<(Ack, u16)>)> {
        self.pending.next().await
    }

    fn is_echo(&self, p: &Publish) -> bool {
        match self.protocol {
            Protocol::V5 => p
                .props
                .user_properties
                .iter()
                .any(|(k, v)| k == ORIGIN_PROPERTY && *v == *self.origin_value),
            Protocol::V311 => self
                .echo_filters
                .iter()
                .any(|f| capture(f, &p.topic).is_some()),
        }
    }
}

/// Counts an outcome and logs what deserves it.
pub(crate) fn count(status: &Status, name: &str, outcome: &Outcome) {
    let c = &status.counters;
    match outcome {
        Outcome::Stored => Counters::add(&c.forwarded_in, 1),
        Outcome::Duplicate => Counters::add(&c.duplicates_in, 1),
        Outcome::Loop => {
            Counters::add(&c.loops_prevented, 1);
            tracing::debug!(
                bridge = name,
                "inbound message came back through its own bridge; dropped"
            );
        }
        Outcome::Rejected(why) | Outcome::Unmapped(why) => {
            Counters::add(&c.rejected_in, 1);
            tracing::warn!(bridge = name, reason = %why, "inbound message dropped");
        }
        Outcome::Released => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_record_round_trips_and_rejects_others() {
        let r = SessionRecord {
            nonce: 7,
            digest: u64::MAX,
        };
        assert_eq!(SessionRecord::decode(&r.encode()), Some(r));
        assert_eq!(SessionRecord::decode(&[]), None);
        assert_eq!(SessionRecord::decode(&[2; 17]), None);
    }

    #[test]
    fn digest_changes_with_filters_and_qos() {
        let r = |f: &str, q: QoS| {
            Rule::new(f, None, q, crate::mapping::RetainPolicy::Keep, true)
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let a = digest(&[r("a/#", QoS::AtLeastOnce)]);
        assert_eq!(a, digest(&[r("a/#", QoS::AtLeastOnce)]));
        assert_ne!(a, digest(&[r("a/#", QoS::ExactlyOnce)]));
        assert_ne!(a, digest(&[r("a/+", QoS::AtLeastOnce)]));
        assert_ne!(
            digest(&[r("a", QoS::AtMostOnce), r("b", QoS::AtMostOnce)]),
            digest(&[r("ab", QoS::AtMostOnce)])
        );
    }
}
