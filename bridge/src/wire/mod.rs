//! The bridge's side of the MQTT wire: frames from the remote become [`Incoming`] values,
//! and the packets a client sends are encoded by [`encode`]. Both MQTT 3.1.1 and 5, with
//! rumqttc's `mqttbytes` codecs underneath.
//!
//! The framing (fixed header, size limit) is done here before rumqttc sees a byte, and the
//! packets whose rumqttc readers mishandle valid short forms are read here directly: the
//! acknowledgements (an MQTT 5 PUBACK may end after its reason code), CONNACK's first two
//! bytes (a 3.1.1-only remote answers an MQTT 5 CONNECT with a 3.1.1 CONNACK) and
//! DISCONNECT. rumqttc readers run behind a panic guard: a remote that sends nonsense gets
//! its connection dropped, never the process.
//!
//! Layout: `mod.rs` decodes; `encode.rs` encodes; `reason.rs` turns codes into text.

pub mod encode;
pub mod reason;
#[cfg(test)]
mod tests;

use crate::message::{Props, QoS};
use crate::options::Protocol;
use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::{self as b4, v4};
use rumqttc::v5::mqttbytes::v5;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Why bytes from the remote could not be decoded. The connection is dropped and retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The remote broke the packet format or the protocol.
    #[error("the remote sent a malformed packet: {0}")]
    Malformed(String),
    /// A packet bigger than `max_packet_size`.
    #[error(
        "the remote sent a packet of {size} bytes, more than max_packet_size ({max}); raise \
         max_packet_size if such messages are expected"
    )]
    TooLarge {
        /// Announced size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A packet a server never sends to a client.
    #[error("the remote sent a {0} packet, which a server never sends")]
    Unexpected(&'static str),
    /// A packet could not be encoded (for instance too large for the remote's limit).
    #[error("cannot encode {packet}: {reason}")]
    Encode {
        /// Which packet.
        packet: &'static str,
        /// Why.
        reason: String,
    },
}

/// CONNACK, reduced to what the bridge uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAck {
    /// The remote kept the bridge's session from before.
    pub session_present: bool,
    /// 0 for success; otherwise the 3.1.1 return code or MQTT 5 reason code.
    pub code: u8,
    /// MQTT 5: how many QoS 1/2 publishes the remote accepts unacknowledged.
    pub receive_max: Option<u16>,
    /// MQTT 5: highest QoS the remote accepts.
    pub max_qos: Option<u8>,
    /// MQTT 5: false when the remote does not support retained messages.
    pub retain_available: bool,
    /// MQTT 5: largest packet the remote accepts.
    pub max_packet_size: Option<u32>,
    /// MQTT 5: the keep-alive the remote wants instead of ours.
    pub server_keep_alive: Option<u16>,
    /// MQTT 5: a reason string the remote gave.
    pub reason_string: Option<String>,
}

/// A PUBLISH from the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Topic name (UTF-8, checked).
    pub topic: String,
    /// Packet id (0 for QoS 0).
    pub pkid: u16,
    /// QoS it was delivered with.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Set when the remote sends it again.
    pub dup: bool,
    /// Payload.
    pub payload: Bytes,
    /// MQTT 5 properties.
    pub props: Props,
}

/// A packet from the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// Answer to CONNECT.
    ConnAck(ConnAck),
    /// A message.
    Publish(Publish),
    /// QoS 1 acknowledgement (reason ≥ 0x80: refused).
    PubAck {
        /// Packet id.
        pkid: u16,
        /// MQTT 5 reason code, 0 when absent.
        reason: u8,
    },
    /// QoS 2, first acknowledgement (reason ≥ 0x80: refused, the exchange ends).
    PubRec {
        /// Packet id.
        pkid: u16,
        /// MQTT 5 reason code, 0 when absent.
        reason: u8,
    },
    /// QoS 2 release of an inbound message.
    PubRel {
        /// Packet id.
        pkid: u16,
    },
    /// QoS 2, final acknowledgement.
    PubComp {
        /// Packet id.
        pkid: u16,
    },
    /// Answer to SUBSCRIBE: the granted QoS per filter, or the failure code.
    SubAck {
        /// Packet id.
        pkid: u16,
        /// Per filter: `Ok(granted)` or `Err(code)`.
        codes: Vec<Result<QoS, u8>>,
    },
    /// Answer to UNSUBSCRIBE.
    UnsubAck,
    /// Answer to PINGREQ.
    PingResp,
    /// MQTT 5: the remote is closing the connection.
    Disconnect {
        /// Reason code.
        reason: u8,
        /// Reason string, if given.
        reason_string: Option<String>,
    },
}

/// Decodes frames from the remote for one protocol version.
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    /// Protocol version of the connection.
    pub protocol: Protocol,
    /// Largest packet accepted.
    pub max_packet_size: usize,
}

/// A fixed header: first byte, header length, remaining length.
struct Header {
    byte1: u8,
    header_len: usize,
    remaining: usize,
}

impl Decoder {
    /// Takes one packet off the front of `buf`: `Ok(None)` when more bytes are needed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Incoming>, WireError> {
        let Some(h) = header(buf)? else {
            return Ok(None);
        };
        let size = h.header_len + h.remaining;
        if size > self.max_packet_size {
            return Err(WireError::TooLarge {
                size,
                max: self.max_packet_size,
            });
        }
        if buf.len() < size {
            buf.reserve(size - buf.len());
            return Ok(None);
        }
        let frame = buf.split_to(size).freeze();
        let protocol = self.protocol;
        match catch_unwind(AssertUnwindSafe(|| read(protocol, &h, frame))) {
            Ok(r) => r.map(Some),
            Err(_) => Err(WireError::Malformed(
                "the decoder failed on this packet".into(),
            )),
        }
    }
}

/// Reads a fixed header, or `None` when it is not complete yet.
fn header(buf: &[u8]) -> Result<Option<Header>, WireError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some(Header {
                byte1,
                header_len: 2 + i,
                remaining,
            }));
        }
    }
    Err(WireError::Malformed(
        "remaining length longer than four bytes".into(),
    ))
}

fn read(protocol: Protocol, h: &Header, frame: Bytes) -> Result<Incoming, WireError> {
    let body = frame.slice(h.header_len..);
    let m = |e: &dyn std::fmt::Display| WireError::Malformed(e.to_string());
    Ok(match h.byte1 >> 4 {
        2 => Incoming::ConnAck(connack(protocol, h, frame)?),
        3 => Incoming::Publish(publish(protocol, h, frame)?),
        4 => {
            let (pkid, reason) = ack(&body)?;
            Incoming::PubAck { pkid, reason }
        }
        5 => {
            let (pkid, reason) = ack(&body)?;
            Incoming::PubRec { pkid, reason }
        }
        6 => Incoming::PubRel {
            pkid: ack(&body)?.0,
        },
        7 => Incoming::PubComp {
            pkid: ack(&body)?.0,
        },
        9 => match protocol {
            Protocol::V311 => {
                let fh = b4::FixedHeader::new(h.byte1, h.header_len - 1, h.remaining);
                let s = v4::SubAck::read(fh, frame).map_err(|e| m(&e))?;
                let codes = s
                    .return_codes
                    .iter()
                    .map(|c| match c {
                        v4::SubscribeReasonCode::Success(q) => Ok(qos_in4(*q)),
                        v4::SubscribeReasonCode::Failure => Err(0x80),
                    })
                    .collect();
                Incoming::SubAck {
                    pkid: s.pkid,
                    codes,
                }
            }
            Protocol::V5 => {
                let fh = v5::FixedHeader::new(h.byte1, h.header_len - 1, h.remaining);
                let s = v5::SubAck::read(fh, frame).map_err(|e| m(&e))?;
                let codes = s
                    .return_codes
                    .iter()
                    .map(|c| match c {
                        v5::SubscribeReasonCode::Success(q) => Ok(qos_in5(*q)),
                        other => Err(reason::suback_code(*other)),
                    })
                    .collect();
                Incoming::SubAck {
                    pkid: s.pkid,
                    codes,
                }
            }
        },
        11 => Incoming::UnsubAck,
        13 => Incoming::PingResp,
        14 if protocol == Protocol::V5 => disconnect(h, &body),
        1 => return Err(WireError::Unexpected("CONNECT")),
        8 => return Err(WireError::Unexpected("SUBSCRIBE")),
        10 => return Err(WireError::Unexpected("UNSUBSCRIBE")),
        12 => return Err(WireError::Unexpected("PINGREQ")),
        14 => return Err(WireError::Unexpected("DISCONNECT (MQTT 3.1.1)")),
        _ => return Err(WireError::Unexpected("AUTH or reserved")),
    })
}

/// An acknowledgement: packet id, then (MQTT 5) an optional reason code and properties,
/// which are not needed.
fn ack(body: &[u8]) -> Result<(u16, u8), WireError> {
    match body {
        [a, b, rest @ ..] => {
            let pkid = u16::from_be_bytes([*a, *b]);
            if pkid == 0 {
                return Err(WireError::Malformed(
                    "acknowledgement of packet id 0".into(),
                ));
            }
            Ok((pkid, rest.first().copied().unwrap_or(0)))
        }
        _ => Err(WireError::Malformed(
            "acknowledgement shorter than its packet id".into(),
        )),
    }
}

fn connack(protocol: Protocol, h: &Header, frame: Bytes) -> Result<ConnAck, WireError> {
    let body = &frame[h.header_len..];
    let (flags, code) = match body {
        [f, c, ..] => (*f, *c),
        _ => {
            return Err(WireError::Malformed(
                "CONNACK shorter than two bytes".into(),
            ));
        }
    };
    let mut ack = ConnAck {
        session_present: flags & 1 == 1,
        code,
        retain_available: true,
        ..ConnAck::default()
    };
    // A 3.1.1 CONNACK (two bytes) answers an MQTT 5 CONNECT from a 3.1.1-only remote; its
    // code alone says why.
    if protocol == Protocol::V5 && body.len() > 2 {
        let fh = v5::FixedHeader::new(h.byte1, h.header_len - 1, h.remaining);
        match v5::ConnAck::read(fh, frame.clone()) {
            Ok(c) => {
                if let Some(p) = c.properties {
                    ack.receive_max = p.receive_max;
                    ack.max_qos = p.max_qos;
                    ack.retain_available = p.retain_available != Some(0);
                    ack.max_packet_size = p.max_packet_size;
                    ack.server_keep_alive = p.server_keep_alive;
                    ack.reason_string = p.reason_string;
                }
            }
            // An unknown reason code still refuses the connection; keep the code.
            Err(_) if code != 0 => {}
            Err(e) => return Err(WireError::Malformed(format!("CONNACK: {e}"))),
        }
    }
    Ok(ack)
}

fn publish(protocol: Protocol, h: &Header, frame: Bytes) -> Result<Publish, WireError> {
    let m = |e: &dyn std::fmt::Display| WireError::Malformed(format!("PUBLISH: {e}"));
    match protocol {
        Protocol::V311 => {
            let fh = b4::FixedHeader::new(h.byte1, h.header_len - 1, h.remaining);
            let p = v4::Publish::read(fh, frame).map_err(|e| m(&e))?;
            Ok(Publish {
                topic: p.topic,
                pkid: p.pkid,
                qos: qos_in4(p.qos),
                retain: p.retain,
                dup: p.dup,
                payload: p.payload,
                props: Props::default(),
            })
        }
        Protocol::V5 => {
            let fh = v5::FixedHeader::new(h.byte1, h.header_len - 1, h.remaining);
            let p = v5::Publish::read(fh, frame).map_err(|e| m(&e))?;
            let topic = String::from_utf8(p.topic.to_vec())
                .map_err(|_| WireError::Malformed("PUBLISH topic is not UTF-8".into()))?;
            let props = p
                .properties
                .map(|p| Props {
                    payload_format_indicator: p.payload_format_indicator,
                    message_expiry_interval: p.message_expiry_interval,
                    content_type: p.content_type,
                    response_topic: p.response_topic,
                    correlation_data: p.correlation_data,
                    user_properties: p.user_properties,
                })
                .unwrap_or_default();
            Ok(Publish {
                topic,
                pkid: p.pkid,
                qos: qos_in5(p.qos),
                retain: p.retain,
                dup: p.dup,
                payload: p.payload,
                props,
            })
        }
    }
}

fn disconnect(h: &Header, body: &[u8]) -> Incoming {
    let reason = body.first().copied().unwrap_or(0);
    let mut reason_string = None;
    if h.remaining > 2 {
        let fh = v5::FixedHeader::new(h.byte1, h.header_len - 1, h.remaining);
        let mut frame = BytesMut::with_capacity(h.header_len + body.len());
        frame.extend_from_slice(&[h.byte1]);
        put_varint(&mut frame, h.remaining);
        frame.extend_from_slice(body);
        if let Ok(d) = v5::Disconnect::read(fh, frame.freeze()) {
            reason_string = d.properties.and_then(|p| p.reason_string);
        }
    }
    Incoming::Disconnect {
        reason,
        reason_string,
    }
}

/// Appends `value` as an MQTT variable byte integer.
pub(crate) fn put_varint(out: &mut BytesMut, mut value: usize) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.extend_from_slice(&[byte]);
        if value == 0 {
            break;
        }
    }
}

pub(crate) fn qos_in4(q: b4::QoS) -> QoS {
    match q {
        b4::QoS::AtMostOnce => QoS::AtMostOnce,
        b4::QoS::AtLeastOnce => QoS::AtLeastOnce,
        b4::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

pub(crate) fn qos_in5(q: rumqttc::v5::mqttbytes::QoS) -> QoS {
    use rumqttc::v5::mqttbytes::QoS as Q;
    match q {
        Q::AtMostOnce => QoS::AtMostOnce,
        Q::AtLeastOnce => QoS::AtLeastOnce,
        Q::ExactlyOnce => QoS::ExactlyOnce,
    }
}
