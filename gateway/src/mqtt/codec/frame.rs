//! Framing primitives: the fixed header (packet type, flags, remaining length) and a bounds
//! checked [`Reader`] over a packet body.
//!
//! Everything here works on borrowed bytes and never panics: running out of bytes inside a
//! complete frame is a malformed packet, never "need more bytes".

use super::{CodecError, ProtocolVersion};
use bytes::{BufMut, BytesMut};

/// Packet type numbers (high nibble of the first byte).
pub(super) mod kind {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const UNSUBACK: u8 = 11;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
    pub const AUTH: u8 = 15;
}

/// The name of packet type `t`, for error messages.
pub(super) fn packet_name(t: u8) -> &'static str {
    const NAMES: [&str; 16] = [
        "reserved type 0",
        "CONNECT",
        "CONNACK",
        "PUBLISH",
        "PUBACK",
        "PUBREC",
        "PUBREL",
        "PUBCOMP",
        "SUBSCRIBE",
        "SUBACK",
        "UNSUBSCRIBE",
        "UNSUBACK",
        "PINGREQ",
        "PINGRESP",
        "DISCONNECT",
        "AUTH",
    ];
    NAMES[usize::from(t & 0x0F)]
}

/// A parsed fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    /// The first byte as received (type and flags).
    pub byte1: u8,
    /// Bytes taken by the fixed header: 1 + the remaining length's 1..=4 bytes.
    pub header_len: usize,
    /// The remaining length: bytes after the fixed header.
    pub remaining: usize,
}

impl Header {
    /// Packet type (high nibble).
    pub fn kind(&self) -> u8 {
        self.byte1 >> 4
    }

    /// Fixed header, variable header and payload together.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.remaining
    }

    /// The packet's name, for messages.
    pub fn name(&self) -> &'static str {
        packet_name(self.kind())
    }
}

/// Checks what the first byte alone tells: reserved packet types, the flags each type must
/// carry, CONNECT coming first and only once, and packets a server never receives.
pub(super) fn check_first_byte(
    byte1: u8,
    version: Option<ProtocolVersion>,
) -> Result<(), CodecError> {
    let t = byte1 >> 4;
    let flags = byte1 & 0x0F;
    let name = packet_name(t);
    if t == 0 || (t == kind::AUTH && version == Some(ProtocolVersion::V311)) {
        return Err(CodecError::Malformed(format!(
            "{name} is a reserved packet type"
        )));
    }
    match t {
        kind::PUBLISH => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(CodecError::Malformed("PUBLISH with QoS 3".into()));
            }
            if qos == 0 && flags & 0b1000 != 0 {
                return Err(CodecError::Malformed(
                    "PUBLISH with QoS 0 and DUP set".into(),
                ));
            }
        }
        kind::PUBREL | kind::SUBSCRIBE | kind::UNSUBSCRIBE if flags != 0b0010 => {
            return Err(CodecError::Malformed(format!(
                "{name} fixed header flags must be 0b0010, got {flags:#06b}"
            )));
        }
        kind::PUBREL | kind::SUBSCRIBE | kind::UNSUBSCRIBE => {}
        _ if flags != 0 => {
            return Err(CodecError::Malformed(format!(
                "{name} fixed header flags must be 0, got {flags:#06b}"
            )));
        }
        _ => {}
    }
    match (version, t) {
        (None, kind::CONNECT) => Ok(()),
        (None, _) => Err(CodecError::FirstPacketNotConnect(name)),
        (Some(_), kind::CONNECT) => Err(CodecError::ProtocolError(
            "a second CONNECT on the same connection".into(),
        )),
        (Some(_), kind::CONNACK | kind::SUBACK | kind::UNSUBACK | kind::PINGRESP) => Err(
            CodecError::ProtocolError(format!("a client must not send {name} to a server")),
        ),
        _ => Ok(()),
    }
}

/// Parses the fixed header at the front of `buf`.
///
/// `Ok(None)` means the remaining length is not complete yet. A fifth length byte is
/// malformed, whatever follows.
pub(super) fn parse_header(buf: &[u8]) -> Result<Option<Header>, CodecError> {
    let Some((&byte1, rest)) = buf.split_first() else {
        return Ok(None);
    };
    match read_varint(rest) {
        VarInt::Value { value, len } => Ok(Some(Header {
            byte1,
            header_len: 1 + len,
            remaining: value,
        })),
        VarInt::Incomplete => Ok(None),
        VarInt::TooLong => Err(CodecError::Malformed(format!(
            "{}: remaining length longer than 4 bytes",
            packet_name(byte1 >> 4)
        ))),
    }
}

/// Outcome of reading a variable byte integer.
pub(super) enum VarInt {
    /// The value and how many bytes encode it.
    Value { value: usize, len: usize },
    /// The bytes end before the last byte of the integer.
    Incomplete,
    /// The first four bytes all have the continuation bit.
    TooLong,
}

/// Reads an MQTT variable byte integer (1 to 4 bytes, 7 bits each, low group first).
pub(super) fn read_varint(bytes: &[u8]) -> VarInt {
    let mut value = 0usize;
    for (i, &b) in bytes.iter().take(4).enumerate() {
        value |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return VarInt::Value { value, len: i + 1 };
        }
    }
    if bytes.len() >= 4 {
        VarInt::TooLong
    } else {
        VarInt::Incomplete
    }
}

/// Appends `value` as a variable byte integer (`value` must fit in four bytes, at most
/// [`VARINT_MAX`]).
pub(super) fn put_varint(out: &mut BytesMut, mut value: usize) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if value == 0 {
            break;
        }
    }
}

/// Largest value a variable byte integer holds (four bytes): the longest remaining length.
pub(super) const VARINT_MAX: usize = 268_435_455;

/// Bytes a variable byte integer holding `value` takes.
pub(super) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// A bounds-checked cursor over one packet body. Every read that runs past the end is a
/// malformed packet named after `packet`.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    packet: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`, the body of a `packet`.
    pub fn new(bytes: &'a [u8], packet: &'static str) -> Self {
        Self { bytes, packet }
    }

    /// A malformed-packet error for this packet.
    pub fn malformed(&self, what: &str) -> CodecError {
        CodecError::Malformed(format!("{}: {what}", self.packet))
    }

    /// A protocol error for this packet.
    pub fn protocol(&self, what: &str) -> CodecError {
        CodecError::ProtocolError(format!("{}: {what}", self.packet))
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// Fails unless every byte was read.
    pub fn expect_end(&self) -> Result<(), CodecError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.malformed(&format!("{} unexpected bytes at the end", self.bytes.len())))
        }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], CodecError> {
        if n > self.bytes.len() {
            return Err(self.malformed(&format!("{what} runs past the end of the packet")));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    /// One byte.
    pub fn u8(&mut self, what: &str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?[0])
    }

    /// A big-endian two byte integer.
    pub fn u16(&mut self, what: &str) -> Result<u16, CodecError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian four byte integer.
    pub fn u32(&mut self, what: &str) -> Result<u32, CodecError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A variable byte integer.
    pub fn varint(&mut self, what: &str) -> Result<usize, CodecError> {
        match read_varint(self.bytes) {
            VarInt::Value { value, len } => {
                self.bytes = &self.bytes[len..];
                Ok(value)
            }
            VarInt::Incomplete => Err(self.malformed(&format!("{what} runs past the end"))),
            VarInt::TooLong => Err(self.malformed(&format!("{what} is longer than 4 bytes"))),
        }
    }

    /// Binary data: a two byte length and that many bytes.
    pub fn binary(&mut self, what: &str) -> Result<&'a [u8], CodecError> {
        let len = self.u16(what)?;
        self.take(usize::from(len), what)
    }

    /// A UTF-8 string: two byte length, well-formed UTF-8 without U+0000 (MQTT 1.5.4).
    pub fn string(&mut self, what: &str) -> Result<&'a str, CodecError> {
        let raw = self.binary(what)?;
        let s = std::str::from_utf8(raw)
            .map_err(|_| self.malformed(&format!("{what} is not valid UTF-8")))?;
        if s.contains('\0') {
            return Err(self.malformed(&format!("{what} contains U+0000")));
        }
        Ok(s)
    }

    /// A non-zero packet identifier.
    pub fn packet_id(&mut self) -> Result<u16, CodecError> {
        let id = self.u16("packet identifier")?;
        if id == 0 {
            return Err(self.protocol("packet identifier 0"));
        }
        Ok(id)
    }
}
