//! Conversions between rumqttc's MQTT 3.1.1 packets and its MQTT 5 packets.
//!
//! The session layer only sees MQTT 5 values. A 3.1.1 packet becomes the MQTT 5 packet with
//! the same meaning and no properties; an MQTT 5 packet going to a 3.1.1 client loses its
//! properties and its reason codes are folded onto the few 3.1.1 return codes.

use bytes::Bytes;
use rumqttc::mqttbytes::{self as b4, v4};
use rumqttc::v5::mqttbytes::{self as b5, v5};

/// Outcome of preparing an MQTT 5 packet for a 3.1.1 peer.
pub(super) enum ToV4 {
    /// The 3.1.1 packet to write.
    Packet(v4::Packet),
    /// MQTT 3.1.1 has no server-to-client DISCONNECT: close the connection instead.
    Close,
}

fn qos_to_v5(q: b4::QoS) -> b5::QoS {
    match q {
        b4::QoS::AtMostOnce => b5::QoS::AtMostOnce,
        b4::QoS::AtLeastOnce => b5::QoS::AtLeastOnce,
        b4::QoS::ExactlyOnce => b5::QoS::ExactlyOnce,
    }
}

fn qos_to_v4(q: b5::QoS) -> b4::QoS {
    match q {
        b5::QoS::AtMostOnce => b4::QoS::AtMostOnce,
        b5::QoS::AtLeastOnce => b4::QoS::AtLeastOnce,
        b5::QoS::ExactlyOnce => b4::QoS::ExactlyOnce,
    }
}

fn utf8(bytes: &Bytes, what: &str) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

/// The MQTT 5 packet with the meaning of a 3.1.1 packet (no properties, success reasons).
pub(super) fn to_v5(p: v4::Packet) -> v5::Packet {
    match p {
        v4::Packet::Connect(c) => v5::Packet::Connect(
            v5::Connect {
                keep_alive: c.keep_alive,
                client_id: c.client_id,
                clean_start: c.clean_session,
                properties: None,
            },
            c.last_will.map(|w| v5::LastWill {
                topic: Bytes::from(w.topic),
                message: w.message,
                qos: qos_to_v5(w.qos),
                retain: w.retain,
                properties: None,
            }),
            c.login.map(|l| v5::Login {
                username: l.username,
                password: l.password,
            }),
        ),
        v4::Packet::ConnAck(a) => v5::Packet::ConnAck(v5::ConnAck {
            session_present: a.session_present,
            code: connack_code_to_v5(a.code),
            properties: None,
        }),
        v4::Packet::Publish(p) => v5::Packet::Publish(v5::Publish {
            dup: p.dup,
            qos: qos_to_v5(p.qos),
            retain: p.retain,
            topic: Bytes::from(p.topic),
            pkid: p.pkid,
            payload: p.payload,
            properties: None,
        }),
        v4::Packet::PubAck(a) => v5::Packet::PubAck(v5::PubAck {
            pkid: a.pkid,
            reason: v5::PubAckReason::Success,
            properties: None,
        }),
        v4::Packet::PubRec(a) => v5::Packet::PubRec(v5::PubRec {
            pkid: a.pkid,
            reason: v5::PubRecReason::Success,
            properties: None,
        }),
        v4::Packet::PubRel(a) => v5::Packet::PubRel(v5::PubRel {
            pkid: a.pkid,
            reason: v5::PubRelReason::Success,
            properties: None,
        }),
        v4::Packet::PubComp(a) => v5::Packet::PubComp(v5::PubComp {
            pkid: a.pkid,
            reason: v5::PubCompReason::Success,
            properties: None,
        }),
        v4::Packet::Subscribe(s) => v5::Packet::Subscribe(v5::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| v5::Filter::new(f.path, qos_to_v5(f.qos)))
                .collect(),
            properties: None,
        }),
        v4::Packet::SubAck(a) => v5::Packet::SubAck(v5::SubAck {
            pkid: a.pkid,
            return_codes: a
                .return_codes
                .into_iter()
                .map(|c| match c {
                    v4::SubscribeReasonCode::Success(q) => {
                        v5::SubscribeReasonCode::Success(qos_to_v5(q))
                    }
                    v4::SubscribeReasonCode::Failure => v5::SubscribeReasonCode::Unspecified,
                })
                .collect(),
            properties: None,
        }),
        v4::Packet::Unsubscribe(u) => v5::Packet::Unsubscribe(v5::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
            properties: None,
        }),
        v4::Packet::UnsubAck(a) => v5::Packet::UnsubAck(v5::UnsubAck {
            pkid: a.pkid,
            reasons: Vec::new(),
            properties: None,
        }),
        v4::Packet::PingReq => v5::Packet::PingReq(v5::PingReq),
        v4::Packet::PingResp => v5::Packet::PingResp(v5::PingResp),
        v4::Packet::Disconnect => v5::Packet::Disconnect(v5::Disconnect::new(
            v5::DisconnectReasonCode::NormalDisconnection,
        )),
    }
}

/// The 3.1.1 form of an MQTT 5 packet. Errors name what 3.1.1 cannot carry.
pub(super) fn to_v4(p: &v5::Packet) -> Result<ToV4, String> {
    let packet = match p {
        v5::Packet::Connect(c, will, login) => v4::Packet::Connect(v4::Connect {
            protocol: b4::Protocol::V4,
            keep_alive: c.keep_alive,
            client_id: c.client_id.clone(),
            clean_session: c.clean_start,
            last_will: match will {
                Some(w) => Some(v4::LastWill {
                    topic: utf8(&w.topic, "will topic")?,
                    message: w.message.clone(),
                    qos: qos_to_v4(w.qos),
                    retain: w.retain,
                }),
                None => None,
            },
            login: match login {
                Some(l) if l.username.is_empty() && !l.password.is_empty() => {
                    return Err("MQTT 3.1.1 cannot carry a password without a user name".into());
                }
                Some(l) => Some(v4::Login::new(&l.username, &l.password)),
                None => None,
            },
        }),
        v5::Packet::ConnAck(a) => v4::Packet::ConnAck(v4::ConnAck {
            session_present: a.session_present,
            code: connack_code_to_v4(a.code),
        }),
        v5::Packet::Publish(p) => v4::Packet::Publish(v4::Publish {
            dup: p.dup,
            qos: qos_to_v4(p.qos),
            retain: p.retain,
            topic: utf8(&p.topic, "topic name")?,
            pkid: p.pkid,
            payload: p.payload.clone(),
        }),
        v5::Packet::PubAck(a) => v4::Packet::PubAck(v4::PubAck::new(a.pkid)),
        v5::Packet::PubRec(a) => v4::Packet::PubRec(v4::PubRec::new(a.pkid)),
        v5::Packet::PubRel(a) => v4::Packet::PubRel(v4::PubRel::new(a.pkid)),
        v5::Packet::PubComp(a) => v4::Packet::PubComp(v4::PubComp::new(a.pkid)),
        v5::Packet::Subscribe(s) => v4::Packet::Subscribe(v4::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .iter()
                .map(|f| v4::SubscribeFilter::new(f.path.clone(), qos_to_v4(f.qos)))
                .collect(),
        }),
        v5::Packet::SubAck(a) => v4::Packet::SubAck(v4::SubAck::new(
            a.pkid,
            a.return_codes
                .iter()
                .map(|c| match c {
                    v5::SubscribeReasonCode::Success(q) => {
                        v4::SubscribeReasonCode::Success(qos_to_v4(*q))
                    }
                    _ => v4::SubscribeReasonCode::Failure,
                })
                .collect(),
        )),
        v5::Packet::Unsubscribe(u) => v4::Packet::Unsubscribe(v4::Unsubscribe {
            pkid: u.pkid,
            topics: u.filters.clone(),
        }),
        v5::Packet::UnsubAck(a) => v4::Packet::UnsubAck(v4::UnsubAck::new(a.pkid)),
        v5::Packet::PingReq(_) => v4::Packet::PingReq,
        v5::Packet::PingResp(_) => v4::Packet::PingResp,
        v5::Packet::Disconnect(_) => return Ok(ToV4::Close),
        v5::Packet::Auth(_) => return Err("AUTH does not exist in MQTT 3.1.1".into()),
    };
    Ok(ToV4::Packet(packet))
}

/// Folds an MQTT 5 CONNACK reason code onto the six 3.1.1 return codes.
pub(super) fn connack_code_to_v4(code: v5::ConnectReturnCode) -> v4::ConnectReturnCode {
    use v4::ConnectReturnCode as C4;
    use v5::ConnectReturnCode as C5;
    match code {
        C5::Success => C4::Success,
        C5::UnsupportedProtocolVersion | C5::RefusedProtocolVersion => C4::RefusedProtocolVersion,
        C5::ClientIdentifierNotValid | C5::BadClientId => C4::BadClientId,
        C5::BadUserNamePassword => C4::BadUserNamePassword,
        C5::NotAuthorized => C4::NotAuthorized,
        // Server unavailable, busy, banned, and every other failure.
        _ => C4::ServiceUnavailable,
    }
}

/// The MQTT 5 reason code for a 3.1.1 return code.
fn connack_code_to_v5(code: v4::ConnectReturnCode) -> v5::ConnectReturnCode {
    use v4::ConnectReturnCode as C4;
    use v5::ConnectReturnCode as C5;
    match code {
        C4::Success => C5::Success,
        C4::RefusedProtocolVersion => C5::UnsupportedProtocolVersion,
        C4::BadClientId => C5::ClientIdentifierNotValid,
        C4::ServiceUnavailable => C5::ServerUnavailable,
        C4::BadUserNamePassword => C5::BadUserNamePassword,
        C4::NotAuthorized => C5::NotAuthorized,
    }
}

/// rumqttc's MQTT 5 enum also holds the three 3.1.1-only codes, and its MQTT 5 writer panics
/// (`unreachable!`) on them: replace them by their MQTT 5 equivalents.
pub(super) fn connack_code_for_v5(code: v5::ConnectReturnCode) -> v5::ConnectReturnCode {
    use v5::ConnectReturnCode as C5;
    match code {
        C5::RefusedProtocolVersion => C5::UnsupportedProtocolVersion,
        C5::BadClientId => C5::ClientIdentifierNotValid,
        C5::ServiceUnavailable => C5::ServerUnavailable,
        other => other,
    }
}
