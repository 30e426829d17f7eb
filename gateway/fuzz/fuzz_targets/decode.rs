//! Fuzzes the MQTT server codec (`gateway::mqtt::codec::MqttCodec::decode`).
//!
//! Run from `gateway/fuzz` (see README.md): `cargo +nightly fuzz run decode -s none`.
//!
//! The first input byte picks a prefix (nothing, an MQTT 3.1.1 CONNECT or an MQTT 5 CONNECT,
//! so most inputs get past the handshake) and a chunk size; the rest is the byte stream.
//! Checked for every input:
//! - no panic anywhere, including panics the codec's own guard would catch (the hook below
//!   aborts on any panic, so libFuzzer reports it);
//! - decoding the stream whole and in chunks gives the same packets and the same error;
//! - every decoded packet, encoded again, decodes to the same value.
#![no_main]

use std::sync::Once;

use bytes::BytesMut;
use gateway::mqtt::codec::{CodecError, Encoded, MqttCodec, ProtocolVersion};
use libfuzzer_sys::fuzz_target;
use rumqttc::v5::mqttbytes::v5::Packet;

/// Largest packet the fuzzed decoder accepts.
const MAX: usize = 64 * 1024;

const CONNECT_V311: &[u8] = b"\x10\x0D\x00\x04MQTT\x04\x02\x00\x3C\x00\x01c";
const CONNECT_V5: &[u8] = b"\x10\x0E\x00\x04MQTT\x05\x02\x00\x3C\x00\x00\x01c";

static HOOK: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("{info}");
            std::process::abort();
        }));
    });
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut input = match mode % 3 {
        1 => CONNECT_V311.to_vec(),
        2 => CONNECT_V5.to_vec(),
        _ => Vec::new(),
    };
    input.extend_from_slice(rest);
    let chunk = usize::from(mode / 3) % 17 + 1;

    let (whole, version) = feed(&input, input.len().max(1));
    let (trickled, _) = feed(&input, chunk);
    assert_eq!(whole, trickled, "whole and chunked decoding differ");
    if let Some(v) = version {
        reencode(v, &whole.0);
    }
});

/// Decodes `input` arriving in pieces of `chunk` bytes.
fn feed(
    input: &[u8],
    chunk: usize,
) -> ((Vec<Packet>, Option<CodecError>), Option<ProtocolVersion>) {
    let mut codec = MqttCodec::new(MAX);
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(Some(p)) => {
                    assert!(buf.len() < before, "a packet consumed no bytes");
                    packets.push(p);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "need-more consumed bytes");
                    break;
                }
                Err(e) => return ((packets, Some(e)), codec.version()),
            }
        }
    }
    ((packets, None), codec.version())
}

/// Encodes the decoded packets again and checks a fresh decoder reads the same values.
fn reencode(v: ProtocolVersion, packets: &[Packet]) {
    if !matches!(packets.first(), Some(Packet::Connect(..))) {
        return;
    }
    let mut enc = MqttCodec::new(MAX);
    let hello = match v {
        ProtocolVersion::V311 => CONNECT_V311,
        ProtocolVersion::V5 => CONNECT_V5,
    };
    if !matches!(enc.decode(&mut BytesMut::from(hello)), Ok(Some(_))) {
        return;
    }
    let mut stream = BytesMut::new();
    let mut sent = Vec::new();
    for p in packets {
        match enc.encode(p, &mut stream, None) {
            Ok(Encoded::Written(_)) => {}
            // 3.1.1 DISCONNECT: the server never writes one; a client sends E0 00.
            Ok(Encoded::Close) => stream.extend_from_slice(&[0xE0, 0x00]),
            // Values the encoder refuses (3.1.1 password without user name, AUTH properties).
            Ok(Encoded::TooLarge { .. }) | Err(_) => break,
        }
        sent.push(p.clone());
    }
    let mut dec = MqttCodec::new(MAX);
    let mut again = Vec::new();
    loop {
        match dec.decode(&mut stream) {
            Ok(Some(p)) => again.push(p),
            Ok(None) => break,
            Err(e) => panic!("re-encoded packets do not decode: {e}; sent {sent:?}"),
        }
    }
    assert!(stream.is_empty(), "re-encoded stream left bytes");
    assert_eq!(again, sent, "re-encoded packets decode differently");
}
