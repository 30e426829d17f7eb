//! Hostile openings: garbage, a first packet that is not CONNECT, CONNECT with a bad protocol
//! name, level or flags, and invalid client ids. Each is followed by a valid CONNECT that
//! must never be answered.

use super::ending::{Case, End, before_connect, case, uid};
use e2e_tests::raw::{connect_with, publish_v4, put_str, subscribe_one};
use std::net::SocketAddr;

/// 256 bytes from a fixed xorshift sequence.
fn noise() -> Vec<u8> {
    let mut x: u32 = 0x2545_F491;
    (0..256)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Garbage before CONNECT, and a first packet of another type: closed without an answer.
pub fn first_packet(cases: &mut Vec<Case>, addr: SocketAddr) {
    let openings: [(&str, Vec<u8>); 8] = [
        (
            "garbage: an HTTP request",
            b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "garbage: reserved packet type 0",
            vec![0x00, 0x00, 0xDE, 0xAD, 0xBE, 0xEF],
        ),
        (
            "garbage: a TLS ClientHello",
            vec![
                0x16, 0x03, 0x01, 0x00, 0x2F, 0x01, 0x00, 0x00, 0x2B, 0x03, 0x03,
            ],
        ),
        ("garbage: 256 pseudo-random bytes", noise()),
        (
            "first packet PUBLISH",
            publish_v4(b"a/b", 0, false, 0, b"x"),
        ),
        ("first packet PINGREQ", vec![0xC0, 0x00]),
        ("first packet SUBSCRIBE", subscribe_one(false, 1, b"a/#", 0)),
        ("first packet DISCONNECT", vec![0xE0, 0x00]),
    ];
    for (name, bytes) in openings {
        cases.push(case(name, before_connect(addr, bytes, &[End::Silent])));
    }
}

/// CONNECT with a protocol name or level this server does not speak, or with flags the
/// specification forbids.
pub fn connect_fields(cases: &mut Vec<Case>, addr: SocketAddr) {
    // 3.1.1 §3.1.2.1 and MQTT 5 §3.1.2.1: close, or refuse as an unsupported version.
    const BAD_NAME: &[End] = &[End::Silent, End::ConnAck4(1), End::ConnAck5(0x84)];
    for name in [&b"MQTX"[..], b"mqtt", b""] {
        let bytes = connect_with(name, 4, 0x02, 0, uid("bad-name").as_bytes(), &[]);
        let label = format!("protocol name {:?}", String::from_utf8_lossy(name));
        cases.push(case(label, before_connect(addr, bytes, BAD_NAME)));
    }
    // 3.1.1 §3.1.2.2: CONNACK return code 1, then close. Levels above 4 may get the MQTT 5
    // form (reason 0x84) instead.
    const REFUSED: &[End] = &[End::ConnAck4(1)];
    const REFUSED_OR_CLOSED: &[End] = &[End::ConnAck4(1), End::Silent];
    const REFUSED_EITHER_FORM: &[End] = &[End::ConnAck4(1), End::ConnAck5(0x84)];
    let levels: [(&[u8], u8, &'static [End]); 5] = [
        (b"MQTT", 3, REFUSED),
        (b"MQIsdp", 3, REFUSED_OR_CLOSED),
        (b"MQTT", 6, REFUSED_EITHER_FORM),
        (b"MQTT", 0, REFUSED_EITHER_FORM),
        (b"MQTT", 255, REFUSED_EITHER_FORM),
    ];
    for (name, level, allowed) in levels {
        let bytes = connect_with(name, level, 0x02, 0, uid("level").as_bytes(), &[]);
        let label = format!("protocol {} level {level}", String::from_utf8_lossy(name));
        cases.push(case(label, before_connect(addr, bytes, allowed)));
    }
    let mut will = Vec::new();
    put_str(&mut will, b"w/t");
    put_str(&mut will, b"bye");
    let will5 = [&[0u8][..], &will].concat();
    let mut password = Vec::new();
    put_str(&mut password, b"secret");
    // MQTT 5 may answer a malformed CONNECT with CONNACK 0x81 before closing.
    const V5_MALFORMED: &[End] = &[End::Silent, End::ConnAck5(0x81)];
    // (name, protocol level, connect flags, payload after the client id, allowed ends)
    type FlagCase<'a> = (&'a str, u8, u8, &'a [u8], &'static [End]);
    let flags: [FlagCase; 5] = [
        ("reserved flag set (3.1.1)", 4, 0x03, &[], &[End::Silent]),
        ("reserved flag set (5)", 5, 0x03, &[], V5_MALFORMED),
        ("will QoS 3 (3.1.1)", 4, 0x1E, &will, &[End::Silent]),
        ("will QoS 3 (5)", 5, 0x1E, &will5, V5_MALFORMED),
        (
            "password without user name (3.1.1)",
            4,
            0x42,
            &password,
            &[End::Silent, End::ConnAck4(4)],
        ),
    ];
    for (name, level, flags, tail, allowed) in flags {
        let bytes = connect_with(b"MQTT", level, flags, 0, uid("flags").as_bytes(), tail);
        cases.push(case(
            format!("CONNECT {name}"),
            before_connect(addr, bytes, allowed),
        ));
    }
}

/// Client ids that are refused: CONNACK 2 (3.1.1) or 0x85 (5); for bytes the specification
/// calls malformed (§1.5.4) also MQTT 5 0x81, or a plain close.
pub fn client_ids(cases: &mut Vec<Case>, addr: SocketAddr) {
    const V4_REFUSED: &[End] = &[End::ConnAck4(2), End::Silent];
    const V5_REFUSED: &[End] = &[End::ConnAck5(0x85), End::Silent];
    const V5_MALFORMED: &[End] = &[End::ConnAck5(0x85), End::ConnAck5(0x81), End::Silent];
    let ids: [(&str, Vec<u8>, &'static [End]); 8] = [
        ("control characters", b"ctl\x01\x02".to_vec(), V5_MALFORMED),
        ("a line break", b"line\nbreak".to_vec(), V5_MALFORMED),
        ("DEL", b"del\x7f".to_vec(), V5_MALFORMED),
        ("NUL", b"a\0b".to_vec(), V5_MALFORMED),
        ("300 bytes", vec![b'x'; 300], V5_REFUSED),
        ("invalid UTF-8", vec![0xC3, 0x28, 0x41], V5_MALFORMED),
        ("a lone 0xFF byte", vec![0xFF], V5_MALFORMED),
        ("an encoded surrogate", vec![0xED, 0xA0, 0x80], V5_MALFORMED),
    ];
    for (name, id, v5_allowed) in ids {
        let v4 = connect_with(b"MQTT", 4, 0x02, 0, &id, &[]);
        let label = format!("client id with {name} (3.1.1)");
        cases.push(case(label, before_connect(addr, v4, V4_REFUSED)));
        let v5 = connect_with(b"MQTT", 5, 0x02, 0, &id, &[]);
        let label = format!("client id with {name} (5)");
        cases.push(case(label, before_connect(addr, v5, v5_allowed)));
    }
    // 3.1.1 §3.1.3.1: a zero-length id needs clean session; otherwise CONNACK 2.
    let empty_persistent = connect_with(b"MQTT", 4, 0x00, 0, b"", &[]);
    cases.push(case(
        "empty client id without clean session (3.1.1)",
        before_connect(addr, empty_persistent, &[End::ConnAck4(2)]),
    ));
}
