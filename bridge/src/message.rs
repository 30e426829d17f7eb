//! What crosses a bridge: [`BridgeMessage`], in either direction, with its MQTT properties
//! and the QoS levels the bridge speaks.
//!
//! These types are the bridge's own so that it depends on no gateway crate; the gateway
//! converts its log messages to and from them in its source and sink implementations.

use bytes::Bytes;

/// Quality of service, as MQTT defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    /// Fire and forget.
    AtMostOnce = 0,
    /// Acknowledged; may arrive more than once.
    AtLeastOnce = 1,
    /// Acknowledged in two steps; arrives once.
    ExactlyOnce = 2,
}

impl QoS {
    /// Maps 0, 1, 2 to a level; anything else is `None`.
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    /// The level as a number (0, 1 or 2).
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// MQTT 5 message properties carried across the bridge. Towards a 3.1.1 remote they are
/// dropped (3.1.1 has no properties); from a 3.1.1 remote they are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props {
    /// 0 = unspecified bytes, 1 = UTF-8 text.
    pub payload_format_indicator: Option<u8>,
    /// Seconds of life left. A source gives the time left *now*, so a message that waited in
    /// the log while the remote was down does not live longer at the remote than it should.
    pub message_expiry_interval: Option<u32>,
    /// MIME type of the payload.
    pub content_type: Option<String>,
    /// Request/response: where the answer goes. Passed through unchanged, not remapped.
    pub response_topic: Option<String>,
    /// Request/response: ties an answer to its request.
    pub correlation_data: Option<Bytes>,
    /// Application key/value pairs, order preserved. Outbound, the bridge appends its origin
    /// property here (see the crate docs on loop prevention).
    pub user_properties: Vec<(String, String)>,
}

/// One message crossing the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeMessage {
    /// Topic name: the local channel when read from a source, the local channel to append
    /// to when handed to a sink.
    pub topic: String,
    /// The payload, shared, never copied.
    pub payload: Bytes,
    /// The level the message was published with (source) or received at (sink).
    pub qos: QoS,
    /// The retain flag, after the rule's retain policy (sink) or as published (source).
    pub retain: bool,
    /// MQTT 5 properties.
    pub props: Props,
    /// Who published it. Outbound, a message whose origin is this bridge's own
    /// ([`crate::BridgeOptions::origin`]) came in through this bridge and is never sent back;
    /// inbound, the bridge sets it to its own origin.
    pub origin: Option<String>,
}

/// A message read from a [`crate::BridgeSource`], with its position in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMessage {
    /// Position in the source: strictly increasing, not necessarily dense.
    pub seq: u64,
    /// The message.
    pub msg: BridgeMessage,
}
