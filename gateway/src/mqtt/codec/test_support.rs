//! Helpers shared by the codec's unit tests.

use bytes::BytesMut;
use rumqttc::v5::mqttbytes::v5::{self, Packet};

use super::{CodecError, Encoded, MqttCodec, ProtocolVersion};

/// Size limit used by the tests' decoders.
pub const MAX: usize = 1 << 20;

/// A codec that already knows its version (to encode with).
pub fn encoder(v: ProtocolVersion) -> MqttCodec {
    let mut c = MqttCodec::new(MAX);
    c.version = Some(v);
    c
}

/// A minimal CONNECT value.
pub fn connect() -> Packet {
    Packet::Connect(
        v5::Connect {
            keep_alive: 30,
            client_id: "dev-1".into(),
            clean_start: true,
            properties: None,
        },
        None,
        None,
    )
}

/// The bytes of `p` for version `v`.
pub fn encode(v: ProtocolVersion, p: &Packet) -> BytesMut {
    let mut out = BytesMut::new();
    let done = encoder(v).encode(p, &mut out, None).expect("encodes");
    assert_eq!(done, Encoded::Written(out.len()), "{p:?}");
    out
}

/// A fresh decoder that has decoded a CONNECT of version `v`.
pub fn connected(v: ProtocolVersion) -> MqttCodec {
    let mut c = MqttCodec::new(MAX);
    let mut buf = encode(v, &connect());
    let p = c.decode(&mut buf).expect("CONNECT decodes");
    assert!(matches!(p, Some(Packet::Connect(..))));
    assert_eq!(c.version(), Some(v));
    c
}

/// Decodes packets from `buf` until more bytes are needed or an error.
pub fn decode_all(c: &mut MqttCodec, buf: &mut BytesMut) -> (Vec<Packet>, Option<CodecError>) {
    let mut packets = Vec::new();
    // Each successful decode consumes at least two bytes, so this loop ends.
    loop {
        match c.decode(buf) {
            Ok(Some(p)) => packets.push(p),
            Ok(None) => return (packets, None),
            Err(e) => return (packets, Some(e)),
        }
    }
}

/// Decodes exactly one packet that fills all of `bytes`, on a connected decoder.
pub fn decode_one(v: ProtocolVersion, bytes: &[u8]) -> Result<Packet, CodecError> {
    let mut c = connected(v);
    let mut buf = BytesMut::from(bytes);
    let p = c.decode(&mut buf)?;
    assert!(buf.is_empty(), "the whole packet is consumed");
    Ok(p.expect("a complete packet"))
}
