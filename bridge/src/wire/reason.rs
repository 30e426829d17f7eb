//! MQTT return and reason codes as text a person can act on, for the bridge's status and
//! logs.

use crate::options::Protocol;
use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode;

/// Why the remote refused the connection (CONNACK code ≠ 0), with what to check.
pub fn connack(protocol: Protocol, code: u8) -> String {
    let text = match (protocol, code) {
        (Protocol::V5, 1) => {
            "the remote does not speak MQTT 5 (it answered with a 3.1.1 refusal); set \
             protocol = \"3.1.1\""
        }
        (_, 1) => "unacceptable protocol version: the remote does not speak MQTT 3.1.1",
        (_, 2) | (_, 0x85) => "client id rejected: check client_id",
        (_, 3) | (_, 0x88) => "the remote's MQTT service is unavailable",
        (_, 4) | (_, 0x86) => "bad user name or password: check username and password",
        (_, 5) | (_, 0x87) => "not authorized: the remote refuses this client",
        (_, 0x80) => "unspecified error",
        (_, 0x81) => "the remote found our CONNECT malformed",
        (_, 0x82) => "protocol error",
        (_, 0x83) => "implementation specific error",
        (_, 0x84) => "unsupported protocol version; try protocol = \"3.1.1\"",
        (_, 0x89) => "the remote is busy",
        (_, 0x8A) => "this client is banned at the remote",
        (_, 0x8C) => "bad authentication method",
        (_, 0x95) => "packet too large",
        (_, 0x97) => "quota exceeded",
        (_, 0x9C) | (_, 0x9D) => "the remote asks to use another server",
        (_, 0x9F) => "connection rate exceeded",
        _ => "refused",
    };
    format!("the remote refused the connection (code {code:#04x}): {text}")
}

/// A refused publish acknowledgement (reason ≥ 0x80).
pub fn puback(code: u8) -> &'static str {
    match code {
        0x80 => "unspecified error",
        0x83 => "implementation specific error",
        0x87 => "not authorized",
        0x90 => "topic name invalid",
        0x91 => "packet identifier in use",
        0x97 => "quota exceeded",
        0x99 => "payload format invalid",
        _ => "refused",
    }
}

/// A DISCONNECT reason code, as text.
pub fn disconnect(code: u8) -> &'static str {
    match code {
        0x00 => "normal disconnection",
        0x80 => "unspecified error",
        0x81 => "malformed packet",
        0x82 => "protocol error",
        0x87 => "not authorized",
        0x89 => "server busy",
        0x8B => "server shutting down",
        0x8D => "keep alive timeout",
        0x8E => "session taken over (another client uses this client id)",
        0x93 => "receive maximum exceeded",
        0x95 => "packet too large",
        0x97 => "quota exceeded",
        0x9C | 0x9D => "use another server",
        _ => "closed by the remote",
    }
}

/// The wire code of a refused MQTT 5 subscription.
pub(crate) fn suback_code(c: SubscribeReasonCode) -> u8 {
    match c {
        SubscribeReasonCode::Success(q) => q as u8,
        SubscribeReasonCode::Failure | SubscribeReasonCode::Unspecified => 0x80,
        SubscribeReasonCode::ImplementationSpecific => 0x83,
        SubscribeReasonCode::NotAuthorized => 0x87,
        SubscribeReasonCode::TopicFilterInvalid => 0x8F,
        SubscribeReasonCode::PkidInUse => 0x91,
        SubscribeReasonCode::QuotaExceeded => 0x97,
        SubscribeReasonCode::SharedSubscriptionsNotSupported => 0x9E,
        SubscribeReasonCode::SubscriptionIdNotSupported => 0xA1,
        SubscribeReasonCode::WildcardSubscriptionsNotSupported => 0xA2,
    }
}

/// A refused subscription code, as text.
pub fn suback(code: u8) -> &'static str {
    match code {
        0x87 => "not authorized",
        0x8F => "topic filter invalid",
        0x97 => "quota exceeded",
        0x9E => "shared subscriptions not supported",
        0xA2 => "wildcard subscriptions not supported",
        _ => "refused",
    }
}
