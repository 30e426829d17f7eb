//! Decoding rules: CONNECT first, version detection, fixed-header flags, the size limit from
//! the header alone, structural checks, "need more bytes" versus errors, encoding edge cases,
//! and a property test over arbitrary bytes.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::*;

use super::roundtrip_tests::{
    client_packets_v5, client_packets_v311, client_stream, subscribe_pkid,
};
use super::test_support::{MAX, connect, connected, decode_all, decode_one, encode, encoder};
use super::{CodecError, Encoded, MqttCodec, ProtocolVersion};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V311;

fn is_malformed(r: Result<Packet, CodecError>) -> bool {
    matches!(r, Err(CodecError::Malformed(_)))
}

fn is_protocol_error(r: Result<Packet, CodecError>) -> bool {
    matches!(r, Err(CodecError::ProtocolError(_)))
}

#[test]
fn first_packet_must_be_connect_and_only_once() {
    let mut c = MqttCodec::new(MAX);
    let mut buf = BytesMut::from(&[0x30][..]);
    assert_eq!(
        c.decode(&mut buf),
        Err(CodecError::FirstPacketNotConnect("PUBLISH"))
    );
    assert_eq!(c.version(), None);

    let mut c = connected(V5);
    let mut buf = encode(V5, &connect());
    assert!(matches!(
        c.decode(&mut buf),
        Err(CodecError::ProtocolError(_))
    ));
}

#[test]
fn protocol_level_picks_the_version_or_is_refused() {
    let cases: [(&[u8], Result<ProtocolVersion, u8>); 5] = [
        (b"\x00\x04MQTT\x04", Ok(V311)),
        (b"\x00\x04MQTT\x05", Ok(V5)),
        (b"\x00\x06MQIsdp\x03", Err(3)),
        (b"\x00\x04MQTT\x03", Err(3)),
        (b"\x00\x04MQTT\x06", Err(6)),
    ];
    for (start, want) in cases {
        let mut frame = vec![0x10, 0];
        frame.extend_from_slice(start);
        frame.extend_from_slice(b"\x02\x00\x3C"); // clean start, keep alive 60
        if want == Ok(V5) {
            frame.push(0); // no properties
        }
        frame.extend_from_slice(b"\x00\x01c");
        frame[1] = (frame.len() - 2) as u8;
        let mut c = MqttCodec::new(MAX);
        let got = c.decode(&mut BytesMut::from(&frame[..]));
        match want {
            Ok(v) => {
                assert!(matches!(got, Ok(Some(Packet::Connect(..)))), "{got:?}");
                assert_eq!(c.version(), Some(v));
            }
            Err(level) => {
                assert_eq!(got, Err(CodecError::UnsupportedProtocolVersion(level)));
                assert_eq!(got.map(|_| ()).map_err(|e| e.reason_code()), Err(0x84));
                // The codec can now answer in the form the client understands.
                let refuse = Packet::ConnAck(ConnAck {
                    session_present: false,
                    code: ConnectReturnCode::UnsupportedProtocolVersion,
                    properties: None,
                });
                let mut out = BytesMut::new();
                c.encode(&refuse, &mut out, None).expect("encodes");
                let want: &[u8] = if level < 5 {
                    &[0x20, 2, 0, 1]
                } else {
                    &[0x20, 3, 0, 0x84, 0]
                };
                assert_eq!(&out[..], want);
            }
        }
    }
    let bad_name = b"\x10\x0D\x00\x04MQTX\x04\x02\x00\x3C\x00\x01c";
    let r = MqttCodec::new(MAX).decode(&mut BytesMut::from(&bad_name[..]));
    assert!(matches!(r, Err(CodecError::Malformed(_))), "{r:?}");
}

#[test]
fn fixed_header_flags_are_checked_from_the_first_byte() {
    for v in [V311, V5] {
        for t in [3u8, 4, 5, 6, 7, 8, 10, 12, 14, 15] {
            for flags in 0..16u8 {
                let mut c = connected(v);
                let mut buf = BytesMut::from(&[(t << 4) | flags][..]);
                let got = c.decode(&mut buf);
                let ok = match t {
                    3 => (flags >> 1) & 3 != 3 && !((flags >> 1) & 3 == 0 && flags & 8 != 0),
                    6 | 8 | 10 => flags == 0b0010,
                    15 => v == V5 && flags == 0,
                    _ => flags == 0,
                };
                if ok {
                    assert_eq!(got, Ok(None), "type {t} flags {flags:#06b} {v}");
                } else {
                    assert!(
                        matches!(got, Err(CodecError::Malformed(_))),
                        "type {t} flags {flags:#06b} {v}: {got:?}"
                    );
                }
                assert_eq!(buf.len(), 1, "nothing consumed");
            }
        }
    }
}

#[test]
fn reserved_and_client_bound_packet_types_are_refused() {
    for v in [V311, V5] {
        let r = decode_one(v, &[0x00, 0x00]);
        assert!(is_malformed(r), "type 0 {v}");
        for byte1 in [0x20u8, 0x90, 0xB0, 0xD0] {
            let r = decode_one(v, &[byte1, 0x00]);
            assert!(is_protocol_error(r), "{byte1:#x} {v}");
        }
    }
    assert!(is_malformed(decode_one(V311, &[0xF0, 0x00])));
}

#[test]
fn remaining_length_over_four_bytes_is_malformed() {
    let mut c = connected(V5);
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF][..]);
    assert_eq!(
        c.decode(&mut buf),
        Ok(None),
        "a fourth length byte may still end it"
    );
    buf.extend_from_slice(&[0xFF]);
    assert!(matches!(c.decode(&mut buf), Err(CodecError::Malformed(_))));

    let mut c = connected(V5);
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    let size = 268_435_455 + 5;
    assert_eq!(
        c.decode(&mut buf),
        Err(CodecError::PacketTooLarge { size, max: MAX })
    );
}

#[test]
fn oversized_packet_is_refused_from_its_header_alone() {
    let mut c = MqttCodec::new(64);
    // A CONNECT announcing 2,048 bytes; only its fixed header has arrived.
    let mut buf = BytesMut::from(&[0x10, 0x80, 0x10][..]);
    let err = c.decode(&mut buf).expect_err("too large");
    assert_eq!(
        err,
        CodecError::PacketTooLarge {
            size: 2051,
            max: 64
        }
    );
    assert_eq!(err.reason_code(), 0x95);
    assert_eq!(buf.len(), 3);

    // A packet of exactly the limit passes.
    let frame = encode(V5, &connect());
    let mut c = MqttCodec::new(frame.len());
    assert!(matches!(c.decode(&mut frame.clone()), Ok(Some(_))));
    let mut c = MqttCodec::new(frame.len() - 1);
    assert!(matches!(
        c.decode(&mut frame.clone()),
        Err(CodecError::PacketTooLarge { .. })
    ));
}

#[test]
fn incomplete_packets_need_more_bytes_and_consume_nothing() {
    let mut publish = Publish::new("a/b", QoS::AtLeastOnce, "x", None);
    publish.pkid = 1;
    let frame = encode(V5, &Packet::Publish(publish));
    let mut c = connected(V5);
    for cut in 0..frame.len() {
        let mut buf = BytesMut::from(&frame[..cut]);
        assert_eq!(c.decode(&mut buf), Ok(None), "cut at {cut}");
        assert_eq!(buf.len(), cut);
    }
}

#[test]
fn small_packets_do_not_hold_the_read_buffer_and_big_ones_are_not_copied() {
    let small = encode(
        V5,
        &Packet::Publish(Publish::new("a/b", QoS::AtMostOnce, "x", None)),
    );
    let mut c = connected(V5);
    let mut buf = BytesMut::with_capacity(4096);
    for _ in 0..10 {
        buf.extend_from_slice(&small);
    }
    let start = buf.as_ptr();
    let (held, err) = decode_all(&mut c, &mut buf);
    assert_eq!((held.len(), err), (10, None));
    // The packets are still alive, yet the drained buffer takes its room back in place
    // (asking for more than is left after the consumed front).
    assert!(buf.capacity() < 4096 - 16);
    buf.reserve(4096 - 16);
    assert_eq!(buf.as_ptr(), start, "a decoded packet kept the read buffer");

    let payload = vec![7u8; super::COPY_MAX];
    let big = encode(
        V5,
        &Packet::Publish(Publish::new("a/b", QoS::AtMostOnce, payload, None)),
    );
    let mut buf = BytesMut::from(&big[..]);
    let start = buf.as_ptr() as usize;
    let Ok(Some(Packet::Publish(p))) = c.decode(&mut buf) else {
        panic!("big PUBLISH did not decode");
    };
    let at = p.payload.as_ptr() as usize;
    assert!(
        (start..start + big.len()).contains(&at),
        "a big payload was copied"
    );
}

#[test]
fn fields_running_past_the_frame_are_malformed_not_incomplete() {
    // PUBLISH whose topic length (0x20) exceeds the frame.
    assert!(is_malformed(decode_one(V311, b"\x30\x04\x00\x20ab")));
    // MQTT 5 PUBLISH without its property length.
    assert!(is_malformed(decode_one(V5, b"\x30\x03\x00\x01a")));
    // MQTT 5 SUBSCRIBE whose subscription identifier varint is cut off.
    assert!(is_malformed(decode_one(
        V5,
        b"\x82\x05\x00\x01\x02\x0B\x80"
    )));
}

#[test]
fn body_rules_v311() {
    let r = |b: &[u8]| decode_one(V311, b);
    assert!(
        is_malformed(r(b"\x40\x03\x00\x01\x00")),
        "PUBACK remaining length 3"
    );
    assert!(is_malformed(r(b"\xC0\x01\x00")), "PINGREQ with a body");
    assert!(is_malformed(r(b"\xE0\x01\x00")), "DISCONNECT with a body");
    assert!(
        is_protocol_error(r(b"\x82\x02\x00\x01")),
        "SUBSCRIBE without filters"
    );
    assert!(
        is_malformed(r(b"\x82\x06\x00\x01\x00\x01a\x04")),
        "reserved option bits"
    );
    assert!(is_malformed(r(b"\x82\x06\x00\x01\x00\x01a\x03")), "QoS 3");
    assert!(
        is_protocol_error(r(b"\xA2\x02\x00\x01")),
        "UNSUBSCRIBE without filters"
    );
    assert!(is_protocol_error(r(b"\x40\x02\x00\x00")), "packet id 0");
    assert!(
        is_protocol_error(r(b"\x32\x05\x00\x01a\x00\x00")),
        "PUBLISH QoS 1 packet id 0"
    );
    assert!(is_malformed(r(b"\x30\x03\x00\x01\xFF")), "topic not UTF-8");
    assert!(
        is_malformed(r(b"\x30\x03\x00\x01\x00")),
        "topic with U+0000"
    );
    assert!(matches!(r(b"\x30\x03\x00\x01a"), Ok(Packet::Publish(_))));

    let connect = |flags: u8, tail: &[u8]| {
        let mut f = vec![0x10, 0];
        f.extend_from_slice(b"\x00\x04MQTT\x04");
        f.push(flags);
        f.extend_from_slice(b"\x00\x3C\x00\x01c");
        f.extend_from_slice(tail);
        f[1] = (f.len() - 2) as u8;
        MqttCodec::new(MAX).decode(&mut BytesMut::from(&f[..]))
    };
    assert!(matches!(connect(0x02, b""), Ok(Some(_))));
    let bad = |r: Result<Option<Packet>, CodecError>| matches!(r, Err(CodecError::Malformed(_)));
    assert!(bad(connect(0x03, b"")), "reserved connect flag");
    assert!(
        bad(connect(0x42, b"\x00\x01p")),
        "password without user name"
    );
    assert!(bad(connect(0x12, b"")), "will QoS without will flag");
    assert!(bad(connect(0x22, b"")), "will retain without will flag");
    assert!(bad(connect(0x1E, b"\x00\x01t\x00\x00")), "will QoS 3");
    assert!(bad(connect(0x02, b"\x00")), "trailing byte");
    assert!(
        bad(connect(0xC2, b"\x00\x01u\x00\x01\xFF")),
        "password not UTF-8"
    );
}

#[test]
fn body_rules_v5() {
    let r = |b: &[u8]| decode_one(V5, b);
    // Property sections must end exactly where they say.
    assert!(
        is_malformed(r(b"\x30\x09\x00\x01a\x01\x02\x00\x00\x00\x05")),
        "overrun"
    );
    assert!(
        is_malformed(r(b"\x30\x05\x00\x01a\x02\x01")),
        "section past frame"
    );
    assert!(
        is_protocol_error(r(b"\x30\x08\x00\x01a\x04\x01\x00\x01\x01")),
        "duplicate"
    );
    assert!(
        is_protocol_error(r(b"\x30\x06\x00\x01a\x02\x0B\x01")),
        "subscription id"
    );
    assert!(
        is_malformed(r(b"\x30\x06\x00\x01a\x02\x11\x00")),
        "CONNECT-only property"
    );
    assert!(
        is_protocol_error(r(b"\x30\x06\x00\x01a\x02\x01\x02")),
        "payload format 2"
    );
    // Topic alias 0 is left to the session, which answers with its own reason code (0x94).
    let alias_zero = r(b"\x30\x07\x00\x01a\x03\x23\x00\x00");
    let Ok(Packet::Publish(p)) = alias_zero else {
        panic!("PUBLISH expected: {alias_zero:?}")
    };
    assert_eq!(p.properties.and_then(|p| p.topic_alias), Some(0));
    let with_users = r(b"\x30\x10\x00\x01a\x0C\x26\x00\x01k\x00\x01v\x26\x00\x00\x00\x00");
    assert!(
        matches!(with_users, Ok(Packet::Publish(_))),
        "user properties repeat"
    );

    assert!(
        is_protocol_error(r(b"\x40\x03\x00\x01\x05")),
        "undefined PUBACK reason"
    );
    assert!(
        is_protocol_error(r(b"\x62\x03\x00\x01\x10")),
        "PUBACK-only reason in PUBREL"
    );
    assert!(
        is_malformed(r(b"\x40\x05\x00\x01\x00\x00\x00")),
        "trailing after properties"
    );
    assert!(
        is_malformed(r(b"\x82\x06\x00\x01\x00\x00\x01a")),
        "filter without options"
    );
    assert!(
        is_malformed(r(b"\x82\x07\x00\x01\x00\x00\x01a\x40")),
        "reserved option bit"
    );
    assert!(
        is_protocol_error(r(b"\x82\x07\x00\x01\x00\x00\x01a\x30")),
        "retain handling 3"
    );
    assert!(
        is_protocol_error(r(b"\x82\x03\x00\x01\x00")),
        "SUBSCRIBE without filters"
    );
    assert!(
        is_protocol_error(r(b"\xA2\x03\x00\x01\x00")),
        "UNSUBSCRIBE without filters"
    );
    assert!(
        is_protocol_error(r(b"\xE0\x01\x03")),
        "undefined DISCONNECT reason"
    );
    let server_ref = r(b"\xE0\x06\x00\x04\x1C\x00\x01x");
    assert!(
        is_protocol_error(server_ref),
        "server reference from a client"
    );
}

#[test]
fn disconnect_v5_short_forms() {
    let normal = Disconnect::new(DisconnectReasonCode::NormalDisconnection);
    assert_eq!(decode_one(V5, b"\xE0\x00"), Ok(Packet::Disconnect(normal)));
    // Reason code without property length (rumqttc alone asks for more bytes here).
    let will = Disconnect::new(DisconnectReasonCode::DisconnectWithWillMessage);
    assert_eq!(
        decode_one(V5, b"\xE0\x01\x04"),
        Ok(Packet::Disconnect(will))
    );
}

#[test]
fn disconnect_v5_encodings_keep_the_reason_code() {
    let normal = Disconnect::new(DisconnectReasonCode::NormalDisconnection);
    assert_eq!(&encode(V5, &Packet::Disconnect(normal))[..], b"\xE0\x00");
    let taken = Disconnect::new(DisconnectReasonCode::SessionTakenOver);
    let mut empty = taken.clone();
    empty.properties = Some(DisconnectProperties {
        session_expiry_interval: None,
        reason_string: None,
        user_properties: Vec::new(),
        server_reference: None,
    });
    for d in [taken, empty] {
        assert_eq!(&encode(V5, &Packet::Disconnect(d))[..], b"\xE0\x02\x8E\x00");
    }
}

#[test]
fn auth_v5_decodes_with_and_without_properties() {
    let Ok(Packet::Auth(empty)) = decode_one(V5, b"\xF0\x00") else {
        panic!("AUTH expected")
    };
    assert_eq!(format!("{:?}", empty.code), "Success");
    assert_eq!(empty.properties, None);

    // Continue authentication: method "SCRAM", data 01 02, reason "go on", a user property.
    let bytes = b"\xF0\x1E\x18\x1C\x15\x00\x05SCRAM\x16\x00\x02\x01\x02\x1F\x00\x05go on\x26\x00\x01k\x00\x01v";
    let Ok(Packet::Auth(auth)) = decode_one(V5, bytes) else {
        panic!("AUTH expected")
    };
    assert_eq!(format!("{:?}", auth.code), "Continue");
    let props = auth.properties.clone().expect("properties");
    assert_eq!(props.method.as_deref(), Some("SCRAM"));
    assert_eq!(props.data.as_deref(), Some(&b"\x01\x02"[..]));
    assert_eq!(props.reason.as_deref(), Some("go on"));
    assert_eq!(
        props.user_properties,
        vec![("k".to_string(), "v".to_string())]
    );

    assert!(
        is_protocol_error(decode_one(V5, b"\xF0\x02\x05\x00")),
        "undefined reason"
    );
    // Encoding AUTH without properties works; with properties it is refused, not corrupted.
    assert_eq!(&encode(V5, &Packet::Auth(empty))[..], b"\xF0\x02\x00\x00");
    let mut out = BytesMut::from(&b"x"[..]);
    let r = encoder(V5).encode(&Packet::Auth(auth.clone()), &mut out, None);
    assert!(
        matches!(r, Err(CodecError::Unencodable { packet: "AUTH", .. })),
        "{r:?}"
    );
    assert_eq!(&out[..], b"x");
    let r = encoder(V311).encode(&Packet::Auth(auth), &mut out, None);
    assert!(matches!(r, Err(CodecError::Unencodable { .. })));
}

#[test]
fn encode_limits_and_failures_leave_the_buffer_unchanged() {
    let big = Packet::Publish(Publish::new("t", QoS::AtMostOnce, vec![7u8; 100], None));
    for v in [V311, V5] {
        let mut out = BytesMut::from(&b"head"[..]);
        let r = encoder(v).encode(&big, &mut out, Some(50));
        let size = if v == V5 { 106 } else { 105 };
        assert_eq!(r, Ok(Encoded::TooLarge { size, max: 50 }));
        let just_over = encoder(v).encode(&big, &mut out, Some(size as u32 - 1));
        assert_eq!(
            just_over,
            Ok(Encoded::TooLarge {
                size,
                max: size as u32 - 1
            })
        );
        assert_eq!(
            encoder(v).encode(&big, &mut out, Some(size as u32)),
            Ok(Encoded::Written(size))
        );
        assert_eq!(out.len(), 4 + size);

        let mut out = BytesMut::from(&b"head"[..]);
        let long = Packet::Publish(Publish::new("t".repeat(70_000), QoS::AtMostOnce, "", None));
        let r = encoder(v).encode(&long, &mut out, None);
        assert!(matches!(r, Err(CodecError::Unencodable { .. })), "{r:?}");
        let zero_id = Packet::Publish(Publish::new("t", QoS::AtLeastOnce, "", None));
        let r = encoder(v).encode(&zero_id, &mut out, None);
        assert!(matches!(r, Err(CodecError::Unencodable { .. })), "{r:?}");
        assert_eq!(&out[..], b"head");
    }
    let r = MqttCodec::new(MAX).encode(&big, &mut BytesMut::new(), None);
    assert!(
        matches!(r, Err(CodecError::Unencodable { .. })),
        "no version yet"
    );
    let binary_topic = Packet::Publish(Publish {
        topic: Bytes::from_static(b"\xFF"),
        ..Publish::default()
    });
    let r = encoder(V311).encode(&binary_topic, &mut BytesMut::new(), None);
    assert!(
        matches!(r, Err(CodecError::Unencodable { .. })),
        "3.1.1 topics are strings"
    );
}

#[test]
fn reason_codes() {
    let cases = [
        (CodecError::Malformed(String::new()), 0x81),
        (CodecError::ProtocolError(String::new()), 0x82),
        (CodecError::FirstPacketNotConnect("PUBLISH"), 0x82),
        (CodecError::PacketTooLarge { size: 2, max: 1 }, 0x95),
        (CodecError::UnsupportedProtocolVersion(3), 0x84),
    ];
    for (e, code) in cases {
        assert_eq!(e.reason_code(), code, "{e}");
    }
}

/// A valid stream of every packet type a client sends, for version `v`.
fn valid_stream(v: ProtocolVersion) -> Vec<u8> {
    let packets = match v {
        V5 => client_packets_v5(),
        V311 => subscribe_pkid(client_packets_v311()),
    };
    client_stream(v, &packets).to_vec()
}

/// Encodes decoded `packets` again (as the client would have sent them) and checks that a
/// fresh decoder gets the same values back. Stops at a packet the encoder refuses (3.1.1
/// cannot carry a password without a user name; AUTH properties).
fn reencodes_to_the_same(v: ProtocolVersion, packets: &[Packet]) -> Result<(), TestCaseError> {
    let enc = encoder(v);
    let mut stream = BytesMut::new();
    let mut sent = Vec::new();
    for p in packets {
        match enc.encode(p, &mut stream, None) {
            Ok(Encoded::Written(_)) => {}
            Ok(Encoded::Close) => stream.extend_from_slice(&[0xE0, 0x00]),
            Ok(Encoded::TooLarge { .. }) | Err(CodecError::Unencodable { .. }) => break,
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        }
        sent.push(p.clone());
    }
    let (again, err) = decode_all(&mut MqttCodec::new(MAX), &mut stream);
    prop_assert_eq!(err, None);
    prop_assert_eq!(again, sent);
    Ok(())
}

/// Feeds `input` in chunks of `chunk` bytes; returns the packets and the error, if any.
fn feed(input: &[u8], chunk: usize) -> (Vec<Packet>, Option<CodecError>) {
    let mut c = MqttCodec::new(4096);
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        let before = buf.len();
        let (mut got, err) = decode_all(&mut c, &mut buf);
        assert!(buf.len() <= before, "never grows the input");
        packets.append(&mut got);
        if err.is_some() {
            return (packets, err);
        }
    }
    (packets, None)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(
        start in 0..3u8,
        body in proptest::collection::vec(any::<u8>(), 0..300),
        chunk in 1..40usize,
    ) {
        let panics = MqttCodec::panics_caught();
        let mut input = match start {
            0 => Vec::new(),
            1 => encode(V311, &connect()).to_vec(),
            _ => encode(V5, &connect()).to_vec(),
        };
        input.extend_from_slice(&body);
        let whole = feed(&input, input.len());
        let trickled = feed(&input, chunk);
        prop_assert_eq!(&whole, &trickled);
        prop_assert_eq!(MqttCodec::panics_caught(), panics);
        let v = if start == 1 { V311 } else { V5 };
        if start > 0 {
            reencodes_to_the_same(v, &whole.0)?;
        }
    }

    #[test]
    fn mutated_valid_streams_never_panic(
        v5 in any::<bool>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0..3u8), 1..6),
        chunk in 1..64usize,
    ) {
        let panics = MqttCodec::panics_caught();
        let v = if v5 { V5 } else { V311 };
        let mut input = valid_stream(v);
        for (pos, byte, op) in edits {
            let i = pos % (input.len() + 1);
            match op {
                0 if i < input.len() => input[i] = byte,
                1 => input.insert(i, byte),
                _ if i < input.len() => {
                    input.remove(i);
                }
                _ => {}
            }
        }
        let whole = feed(&input, input.len());
        let trickled = feed(&input, chunk);
        prop_assert_eq!(&whole, &trickled);
        prop_assert_eq!(MqttCodec::panics_caught(), panics);
        // A mutated CONNECT may switch the version; the decoder knows which one it read.
        if let Some(Packet::Connect(..)) = whole.0.first() {
            let mut c = MqttCodec::new(4096);
            let _ = c.decode(&mut BytesMut::from(&input[..]));
            if let Some(v) = c.version() {
                reencodes_to_the_same(v, &whole.0)?;
            }
        }
    }
}

#[test]
fn plain_publishes_are_written_as_the_general_encoder_writes_them() {
    // Remaining lengths of one to four bytes, empty and non-ASCII topics, both versions.
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for (topic, size) in [
            ("a/b", 0),
            ("a/b", 100),
            ("", 10),
            ("t/é/∑", 125),
            ("x", 200),
            ("long/topic", 20_000),
            ("big", 2_100_000),
        ] {
            let payload = Bytes::from(vec![0x5a; size]);
            let general = encode(
                v,
                &Packet::Publish(Publish::new(topic, QoS::AtMostOnce, payload.clone(), None)),
            );
            let mut plain = BytesMut::from(&b"kept"[..]);
            let n = encoder(v).encode_plain_publish(topic, &payload, &mut plain);
            assert_eq!(n, Some(general.len()), "{v:?} {topic} {size}");
            assert_eq!(&plain[..4], b"kept");
            assert_eq!(&plain[4..], &general[..], "{v:?} {topic} {size}");
        }
    }
    // A topic too long for its 16-bit length prefix, or no version yet: nothing written.
    let mut out = BytesMut::new();
    let long = "t".repeat(70_000);
    assert_eq!(
        encoder(ProtocolVersion::V5).encode_plain_publish(&long, b"x", &mut out),
        None
    );
    assert_eq!(
        MqttCodec::new(MAX).encode_plain_publish("a", b"x", &mut out),
        None
    );
    assert!(out.is_empty());
}
