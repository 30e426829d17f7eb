//! The packets of a simulated device in MQTT 3.1.1 and 5, encoded and decoded with rumqttc's
//! `mqttbytes`, seen through one version-neutral vocabulary: [`In`] for what the broker sends,
//! [`Out`] for what the device sends. The [`core`](super::core) speaks only this vocabulary.

use bytes::BytesMut;
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

use super::{Incoming, LinkError, LinkSpec, Publish};

/// Largest packet a device accepts from the broker, and largest publish it sends.
pub const MAX_PACKET: usize = 1024 * 1024;

/// A packet from the broker.
#[derive(Debug)]
pub enum In {
    /// CONNACK; `refused` names the reason when the broker refused the connection.
    ConnAck {
        /// The refusal, e.g. `NotAuthorized`.
        refused: Option<String>,
        /// MQTT 5: how many QoS 1/2 publishes the broker takes in flight.
        receive_max: Option<u16>,
    },
    /// A message for one of the device's subscriptions.
    Publish {
        /// Packet id (0 for QoS 0).
        pkid: u16,
        /// QoS.
        qos: u8,
        /// The message.
        msg: Incoming,
    },
    /// PUBACK; `ok` is false for an MQTT 5 refusal.
    PubAck {
        /// Packet id.
        pkid: u16,
        /// Whether the broker accepted the publish.
        ok: bool,
    },
    /// PUBREC; `ok` is false for an MQTT 5 refusal.
    PubRec {
        /// Packet id.
        pkid: u16,
        /// Whether the broker accepted the publish.
        ok: bool,
    },
    /// PUBREL of a QoS 2 message the broker sent.
    PubRel(u16),
    /// PUBCOMP.
    PubComp(u16),
    /// SUBACK and how many of its filters were refused.
    SubAck {
        /// Packet id.
        pkid: u16,
        /// Refused filters.
        refused: usize,
    },
    /// PINGRESP.
    PingResp,
    /// MQTT 5 DISCONNECT from the broker, with its reason.
    Disconnect(String),
    /// A packet a broker must not send to a client (CONNECT, SUBSCRIBE, AUTH, ...).
    Unexpected(&'static str),
}

/// A packet to the broker.
#[derive(Debug, Clone, Copy)]
pub enum Out<'a> {
    /// CONNECT with the spec's client id, keep-alive, session, credentials and will.
    Connect(&'a LinkSpec),
    /// PUBLISH with a packet id (0 for QoS 0).
    Publish(u16, &'a Publish),
    /// PUBACK of a QoS 1 message received.
    PubAck(u16),
    /// PUBREC of a QoS 2 message received.
    PubRec(u16),
    /// PUBREL of a QoS 2 publish the broker acknowledged.
    PubRel(u16),
    /// PUBCOMP of a QoS 2 message received.
    PubComp(u16),
    /// SUBSCRIBE to one filter.
    Subscribe {
        /// Packet id.
        pkid: u16,
        /// Topic filter.
        filter: &'a str,
        /// Maximum QoS.
        qos: u8,
    },
    /// PINGREQ.
    PingReq,
    /// DISCONNECT (normal; the broker does not publish the will).
    Disconnect,
}

/// Appends `packet` to `buf`.
pub fn encode(v5: bool, packet: Out<'_>, buf: &mut BytesMut) -> Result<(), LinkError> {
    let written = if v5 {
        encode_v5(packet)
            .write(buf, None)
            .map_err(|e| e.to_string())
    } else {
        encode_v4(packet)
            .write(buf, usize::MAX)
            .map_err(|e| e.to_string())
    };
    written.map(|_| ()).map_err(|detail| LinkError {
        kind: "encode_error",
        detail,
    })
}

/// The encoded size of a publish, near enough to refuse one that is too large before it is
/// queued.
pub fn publish_size(p: &Publish) -> usize {
    let props = p.props.as_ref().map_or(0, |props| {
        props
            .user_properties
            .iter()
            .map(|(k, v)| 5 + k.len() + v.len())
            .sum::<usize>()
            + props.correlation.as_ref().map_or(0, |c| 3 + c.len())
    });
    16 + p.topic.len() + p.payload.len() + props
}

/// Takes the next whole packet off the front of `buf`; `None` when more bytes are needed.
pub fn decode(v5: bool, buf: &mut BytesMut) -> Result<Option<In>, LinkError> {
    if v5 {
        // rumqttc refuses a DISCONNECT without a body, which MQTT 5 allows (reason 0).
        if buf.starts_with(&[0xE0, 0x00]) {
            let _ = buf.split_to(2);
            return Ok(Some(In::Disconnect("NormalDisconnection".into())));
        }
        match v5::Packet::read(buf, Some(MAX_PACKET as u32)) {
            Ok(p) => Ok(Some(decode_v5(p))),
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(malformed(e.to_string())),
        }
    } else {
        match v4::Packet::read(buf, MAX_PACKET) {
            Ok(p) => Ok(Some(decode_v4(p))),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(malformed(e.to_string())),
        }
    }
}

fn malformed(detail: String) -> LinkError {
    LinkError {
        kind: "malformed_packet",
        detail: format!("malformed packet from the broker: {detail}"),
    }
}

fn qos4(q: u8) -> rumqttc::QoS {
    match q {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

fn qos5(q: u8) -> rumqttc::v5::mqttbytes::QoS {
    use rumqttc::v5::mqttbytes::QoS;
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn encode_v4(packet: Out<'_>) -> v4::Packet {
    match packet {
        Out::Connect(spec) => {
            let mut c = v4::Connect::new(spec.client_id.as_str());
            c.keep_alive = u16::try_from(spec.keep_alive.as_secs()).unwrap_or(u16::MAX);
            // An empty client id is only allowed with a clean session.
            c.clean_session = spec.clean_session || spec.client_id.is_empty();
            if let Some((user, pass)) = &spec.credentials {
                c.set_login(user.as_str(), pass.as_str());
            }
            c.last_will = spec.will.as_ref().map(|w| {
                v4::LastWill::new(
                    w.topic.as_str(),
                    w.payload.as_bytes(),
                    qos4(w.qos),
                    w.retain,
                )
            });
            v4::Packet::Connect(c)
        }
        Out::Publish(pkid, p) => v4::Packet::Publish(v4::Publish {
            dup: false,
            qos: qos4(p.qos),
            retain: p.retain,
            topic: p.topic.clone(),
            pkid,
            payload: p.payload.clone(),
        }),
        Out::PubAck(pkid) => v4::Packet::PubAck(v4::PubAck::new(pkid)),
        Out::PubRec(pkid) => v4::Packet::PubRec(v4::PubRec::new(pkid)),
        Out::PubRel(pkid) => v4::Packet::PubRel(v4::PubRel::new(pkid)),
        Out::PubComp(pkid) => v4::Packet::PubComp(v4::PubComp::new(pkid)),
        Out::Subscribe { pkid, filter, qos } => {
            let mut s = v4::Subscribe::new(filter, qos4(qos));
            s.pkid = pkid;
            v4::Packet::Subscribe(s)
        }
        Out::PingReq => v4::Packet::PingReq,
        Out::Disconnect => v4::Packet::Disconnect,
    }
}

fn encode_v5(packet: Out<'_>) -> v5::Packet {
    match packet {
        Out::Connect(spec) => {
            let mut props = v5::ConnectProperties::new();
            props.session_expiry_interval = spec
                .session_expiry
                .map(|e| u32::try_from(e.as_secs()).unwrap_or(u32::MAX));
            props.max_packet_size = Some(MAX_PACKET as u32);
            let c = v5::Connect {
                keep_alive: u16::try_from(spec.keep_alive.as_secs()).unwrap_or(u16::MAX),
                client_id: spec.client_id.clone(),
                clean_start: spec.clean_session,
                properties: Some(props),
            };
            let will = spec.will.as_ref().map(|w| {
                v5::LastWill::new(
                    w.topic.as_str(),
                    w.payload.as_bytes(),
                    qos5(w.qos),
                    w.retain,
                    None,
                )
            });
            let login = spec
                .credentials
                .as_ref()
                .map(|(u, p)| v5::Login::new(u.as_str(), p.as_str()));
            v5::Packet::Connect(c, will, login)
        }
        Out::Publish(pkid, p) => {
            let props = p.props.as_ref().map(|props| v5::PublishProperties {
                user_properties: props.user_properties.clone(),
                correlation_data: props.correlation.clone(),
                ..Default::default()
            });
            let mut publish =
                v5::Publish::new(p.topic.as_str(), qos5(p.qos), p.payload.clone(), props);
            publish.pkid = pkid;
            publish.retain = p.retain;
            v5::Packet::Publish(publish)
        }
        Out::PubAck(pkid) => v5::Packet::PubAck(v5::PubAck::new(pkid, None)),
        Out::PubRec(pkid) => v5::Packet::PubRec(v5::PubRec::new(pkid, None)),
        Out::PubRel(pkid) => v5::Packet::PubRel(v5::PubRel::new(pkid, None)),
        Out::PubComp(pkid) => v5::Packet::PubComp(v5::PubComp::new(pkid, None)),
        Out::Subscribe { pkid, filter, qos } => {
            let mut s = v5::Subscribe::new(v5::Filter::new(filter, qos5(qos)), None);
            s.pkid = pkid;
            v5::Packet::Subscribe(s)
        }
        Out::PingReq => v5::Packet::PingReq(v5::PingReq),
        Out::Disconnect => v5::Packet::Disconnect(v5::Disconnect::new(
            v5::DisconnectReasonCode::NormalDisconnection,
        )),
    }
}

fn decode_v4(p: v4::Packet) -> In {
    use v4::Packet as P;
    match p {
        P::ConnAck(a) => In::ConnAck {
            refused: (a.code != v4::ConnectReturnCode::Success).then(|| format!("{:?}", a.code)),
            receive_max: None,
        },
        P::Publish(p) => In::Publish {
            pkid: p.pkid,
            qos: p.qos as u8,
            msg: Incoming {
                topic: p.topic,
                payload: p.payload,
                response_topic: None,
                correlation: None,
            },
        },
        P::PubAck(a) => In::PubAck {
            pkid: a.pkid,
            ok: true,
        },
        P::PubRec(r) => In::PubRec {
            pkid: r.pkid,
            ok: true,
        },
        P::PubRel(r) => In::PubRel(r.pkid),
        P::PubComp(c) => In::PubComp(c.pkid),
        P::SubAck(s) => In::SubAck {
            pkid: s.pkid,
            refused: s
                .return_codes
                .iter()
                .filter(|c| matches!(c, v4::SubscribeReasonCode::Failure))
                .count(),
        },
        P::PingResp => In::PingResp,
        P::Connect(_) => In::Unexpected("CONNECT"),
        P::Subscribe(_) => In::Unexpected("SUBSCRIBE"),
        P::Unsubscribe(_) => In::Unexpected("UNSUBSCRIBE"),
        P::UnsubAck(_) => In::Unexpected("UNSUBACK"),
        P::PingReq => In::Unexpected("PINGREQ"),
        P::Disconnect => In::Unexpected("DISCONNECT"),
    }
}

fn decode_v5(p: v5::Packet) -> In {
    use v5::Packet as P;
    match p {
        P::ConnAck(a) => In::ConnAck {
            refused: (a.code != v5::ConnectReturnCode::Success).then(|| format!("{:?}", a.code)),
            receive_max: a.properties.and_then(|p| p.receive_max),
        },
        P::Publish(p) => {
            let (response_topic, correlation) = match p.properties {
                Some(props) => (props.response_topic, props.correlation_data),
                None => (None, None),
            };
            In::Publish {
                pkid: p.pkid,
                qos: p.qos as u8,
                msg: Incoming {
                    topic: String::from_utf8_lossy(&p.topic).into_owned(),
                    payload: p.payload,
                    response_topic,
                    correlation,
                },
            }
        }
        P::PubAck(a) => In::PubAck {
            pkid: a.pkid,
            ok: matches!(
                a.reason,
                v5::PubAckReason::Success | v5::PubAckReason::NoMatchingSubscribers
            ),
        },
        P::PubRec(r) => In::PubRec {
            pkid: r.pkid,
            ok: matches!(
                r.reason,
                v5::PubRecReason::Success | v5::PubRecReason::NoMatchingSubscribers
            ),
        },
        P::PubRel(r) => In::PubRel(r.pkid),
        P::PubComp(c) => In::PubComp(c.pkid),
        P::SubAck(s) => In::SubAck {
            pkid: s.pkid,
            refused: s
                .return_codes
                .iter()
                .filter(|c| !matches!(c, v5::SubscribeReasonCode::Success(_)))
                .count(),
        },
        P::PingResp(_) => In::PingResp,
        P::Disconnect(d) => In::Disconnect(format!("{:?}", d.reason_code)),
        P::Auth(_) => In::Unexpected("AUTH"),
        P::Connect(..) => In::Unexpected("CONNECT"),
        P::Subscribe(_) => In::Unexpected("SUBSCRIBE"),
        P::Unsubscribe(_) => In::Unexpected("UNSUBSCRIBE"),
        P::UnsubAck(_) => In::Unexpected("UNSUBACK"),
        P::PingReq(_) => In::Unexpected("PINGREQ"),
    }
}

/// Bytes of a payload, for tests.
#[cfg(test)]
pub fn bytes(s: &str) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(qos: u8) -> Publish {
        Publish {
            topic: "t/1".into(),
            qos,
            retain: true,
            payload: bytes("hi"),
            props: None,
        }
    }

    #[test]
    fn publishes_round_trip_in_both_versions() {
        for v5 in [false, true] {
            let mut buf = BytesMut::new();
            let p = publish(1);
            let encoded = encode(v5, Out::Publish(7, &p), &mut buf);
            assert!(encoded.is_ok(), "{encoded:?}");
            assert!(buf.len() <= publish_size(&p), "{} > estimate", buf.len());
            match decode(v5, &mut buf) {
                Ok(Some(In::Publish { pkid, qos, msg })) => {
                    assert_eq!((pkid, qos, msg.topic.as_str()), (7, 1, "t/1"));
                    assert_eq!(msg.payload, bytes("hi"));
                }
                other => panic!("v5 {v5}: {other:?}"),
            }
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn partial_packets_wait_for_more_bytes() {
        let mut buf = BytesMut::from(&[0x20u8, 0x02, 0x00][..]);
        assert!(matches!(decode(false, &mut buf), Ok(None)));
        buf.extend_from_slice(&[0x05]);
        match decode(false, &mut buf) {
            Ok(Some(In::ConnAck {
                refused: Some(r), ..
            })) => assert_eq!(r, "NotAuthorized"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bodyless_mqtt5_disconnect_is_a_disconnect_and_garbage_is_malformed() {
        let mut buf = BytesMut::from(&[0xE0u8, 0x00][..]);
        assert!(matches!(
            decode(true, &mut buf),
            Ok(Some(In::Disconnect(_)))
        ));
        let mut buf = BytesMut::from(&[0xffu8; 8][..]);
        assert!(matches!(decode(false, &mut buf), Err(e) if e.kind == "malformed_packet"));
    }
}
