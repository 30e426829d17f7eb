//! The MQTT wire codec of the server side: bytes from a client become rumqttc MQTT 5 packet
//! values, and MQTT 5 packet values become bytes in the client's protocol version.
//!
//! The session layer works only with `rumqttc::v5::mqttbytes::v5::Packet`. For an MQTT 3.1.1
//! connection, decoded packets are converted to their MQTT 5 equivalents (no properties,
//! success reason codes) and outgoing packets are converted back (properties dropped, reason
//! codes folded onto 3.1.1 return codes, DISCONNECT replaced by closing the connection).
//!
//! rumqttc's `mqttbytes` are written for a client facing a trusted broker. Before a frame
//! reaches them it is checked here: fixed-header flags, the size limit (from the fixed header
//! alone, before the body is buffered), the order of CONNECT, then the whole body's structure
//! (`validate`, `props`). rumqttc then only builds the values, inside a panic guard. The
//! rumqttc bugs this works around are listed in `read` (decoding) and `write` (encoding).
//!
//! # Layout
//! - `frame`: fixed header, variable byte integers, a bounds-checked body reader.
//! - `validate`, `props`: structural checks of a packet body and of MQTT 5 properties.
//! - `read`: rumqttc readers behind the panic guard. `write`: rumqttc writers, checked.

mod frame;
mod props;
mod read;
mod validate;
mod write;

#[cfg(test)]
mod roundtrip_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};
use rumqttc::v5::mqttbytes::v5::Packet;

use frame::{check_first_byte, parse_header};

/// Frames up to this size are copied out of the read buffer; bigger ones are split off.
pub const COPY_MAX: usize = 16 * 1024;

/// The MQTT protocol version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5 (protocol level 5).
    V5,
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V311 => "3.1.1",
            Self::V5 => "5",
        })
    }
}

/// Why bytes from a client could not be decoded, or a packet could not be encoded.
///
/// After any decode error the connection must be closed (MQTT 5: after sending DISCONNECT with
/// [`CodecError::reason_code`], or CONNACK with that code if CONNECT was not answered yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The bytes break the packet format (MQTT 5 reason 0x81).
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// The packet is well formed but breaks a protocol rule (MQTT 5 reason 0x82).
    #[error("protocol error: {0}")]
    ProtocolError(String),
    /// The fixed header announces a packet bigger than the server accepts (MQTT 5 reason
    /// 0x95). Raise the MQTT maximum packet size in the configuration if such packets are
    /// legitimate.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge {
        /// Total packet size the fixed header announces, fixed header included.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// CONNECT asks for a protocol level other than 4 (3.1.1) or 5. Answer with CONNACK
    /// return code 1 (3.1.1 form) or reason 0x84 (MQTT 5 form): [`MqttCodec::version`] is
    /// set to the form to answer in.
    #[error("unsupported MQTT protocol level {0}: this server speaks 4 (MQTT 3.1.1) and 5")]
    UnsupportedProtocolVersion(u8),
    /// The connection did not start with CONNECT; close it without answering.
    #[error("the first packet must be CONNECT, got {0}")]
    FirstPacketNotConnect(&'static str),
    /// A packet value cannot be written for this connection; nothing was written.
    #[error("cannot encode {packet}: {reason}")]
    Unencodable {
        /// The packet type.
        packet: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl CodecError {
    /// The MQTT 5 DISCONNECT (or CONNACK) reason code that reports this error to the client.
    pub fn reason_code(&self) -> u8 {
        match self {
            Self::Malformed(_) => 0x81,
            Self::ProtocolError(_) | Self::FirstPacketNotConnect(_) => 0x82,
            Self::PacketTooLarge { .. } => 0x95,
            Self::UnsupportedProtocolVersion(_) => 0x84,
            Self::Unencodable { .. } => 0x83,
        }
    }
}

/// What [`MqttCodec::encode`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoded {
    /// The packet was appended to the buffer: this many bytes.
    Written(usize),
    /// The packet is bigger than the client's Maximum Packet Size and was not written. MQTT 5
    /// says to drop such a PUBLISH as if it had been sent.
    TooLarge {
        /// Encoded size of the packet.
        size: usize,
        /// The client's limit.
        max: u32,
    },
    /// Nothing to write: a DISCONNECT to an MQTT 3.1.1 client, which has no such packet from
    /// a server. Close the connection instead.
    Close,
}

/// Decoder and encoder state of one connection.
#[derive(Debug, Clone)]
pub struct MqttCodec {
    /// `None` until CONNECT is decoded: it picks the version for the rest of the connection.
    version: Option<ProtocolVersion>,
    /// Largest packet accepted from the client, fixed header included; bigger packets are
    /// refused from their fixed header before their body is buffered.
    max_incoming_packet: usize,
}

impl MqttCodec {
    /// A codec for a new connection that accepts packets of at most `max_incoming_packet`
    /// bytes (fixed header included).
    pub fn new(max_incoming_packet: usize) -> Self {
        Self {
            version: None,
            max_incoming_packet,
        }
    }

    /// The connection's protocol version, known once CONNECT is decoded (also after a
    /// malformed CONNECT whose protocol level was readable, and after
    /// [`CodecError::UnsupportedProtocolVersion`], so a CONNACK can be encoded).
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// Panics from rumqttc that the guard turned into errors since the process started
    /// (a metric: anything above zero is a rumqttc bug worth reporting).
    pub fn panics_caught() -> u64 {
        read::panics_caught()
    }

    /// Decodes one packet from the front of `buf`, consuming exactly its bytes.
    ///
    /// A frame of up to [`COPY_MAX`] bytes is copied out, so the packet (a retained or queued
    /// payload, a will) never keeps the connection's read buffer alive and the buffer is reused
    /// in place; a bigger frame is split off without a copy.
    ///
    /// `Ok(None)`: more bytes are needed (nothing is consumed; capacity for the rest of the
    /// packet is reserved). An error is final: close the connection; what `buf` still holds
    /// is unspecified. Errors that the first bytes already show (reserved type, bad flags,
    /// a first packet that is not CONNECT, a packet above the size limit) are returned before
    /// the rest of the packet arrives.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
        let Some(&byte1) = buf.first() else {
            return Ok(None);
        };
        check_first_byte(byte1, self.version)?;
        let Some(header) = parse_header(buf)? else {
            return Ok(None);
        };
        let size = header.frame_len();
        if size > self.max_incoming_packet {
            return Err(CodecError::PacketTooLarge {
                size,
                max: self.max_incoming_packet,
            });
        }
        if buf.len() < size {
            buf.reserve(size - buf.len());
            return Ok(None);
        }
        let frame = if size <= COPY_MAX {
            let frame = Bytes::copy_from_slice(&buf[..size]);
            buf.advance(size);
            frame
        } else {
            buf.split_to(size).freeze()
        };
        let body = &frame[header.header_len..];
        let version = match self.version {
            Some(v) => v,
            None => {
                let v = validate::sniff_version(body).inspect_err(|e| {
                    if let CodecError::UnsupportedProtocolVersion(level) = e {
                        self.version = Some(reply_version(*level));
                    }
                })?;
                self.version = Some(v);
                v
            }
        };
        let summary = validate::check(&header, body, version)?;
        read::read(&header, frame, version, summary).map(Some)
    }

    /// Appends the encoding of `pkt` for this connection's version to `out`.
    ///
    /// `max_outgoing` is the client's Maximum Packet Size (MQTT 5 CONNECT property): a bigger
    /// packet is not written and [`Encoded::TooLarge`] says so. Many packets can be appended
    /// to one buffer and written with one syscall. On error nothing is appended.
    pub fn encode(
        &self,
        pkt: &Packet,
        out: &mut BytesMut,
        max_outgoing: Option<u32>,
    ) -> Result<Encoded, CodecError> {
        let Some(version) = self.version else {
            return Err(CodecError::Unencodable {
                packet: write::packet_name(pkt),
                reason: "the protocol version is not known before CONNECT".into(),
            });
        };
        write::write(version, pkt, out, max_outgoing)
    }

    /// Appends a QoS 0 PUBLISH with no retain flag and no properties, written directly: the
    /// same bytes [`MqttCodec::encode`] produces for it, without building packet values
    /// first (the common live delivery). `None` when the version is not known yet or the
    /// topic or packet is too long for MQTT; nothing is appended then.
    pub fn encode_plain_publish(
        &self,
        topic: &str,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Option<usize> {
        let v5 = match self.version? {
            ProtocolVersion::V5 => true,
            ProtocolVersion::V311 => false,
        };
        let topic_len = u16::try_from(topic.len()).ok()?;
        // Topic length and topic, the properties length (MQTT 5: a single 0), the payload.
        let remaining = 2 + topic.len() + usize::from(v5) + payload.len();
        if remaining > frame::VARINT_MAX {
            return None;
        }
        let start = out.len();
        out.reserve(5 + remaining);
        out.extend_from_slice(&[0x30]);
        frame::put_varint(out, remaining);
        out.extend_from_slice(&topic_len.to_be_bytes());
        out.extend_from_slice(topic.as_bytes());
        if v5 {
            out.extend_from_slice(&[0]);
        }
        out.extend_from_slice(payload);
        Some(out.len() - start)
    }
}

/// The CONNACK form to refuse an unsupported protocol level with: 3.1.1's for older levels
/// (3.1 uses the same CONNACK), MQTT 5's for newer ones.
fn reply_version(level: u8) -> ProtocolVersion {
    if level < 5 {
        ProtocolVersion::V311
    } else {
        ProtocolVersion::V5
    }
}
