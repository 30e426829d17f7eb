//! Round trips: packets the server sends, read back by rumqttc's client-side readers (MQTT 5)
//! or compared byte for byte with the 3.1.1 wire format; packets the server receives,
//! encoded and decoded again, whole and one byte at a time.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::*;

use super::test_support::{MAX, connect, decode_all, encode, encoder};
use super::{Encoded, MqttCodec, ProtocolVersion};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V311;

fn users() -> Vec<(String, String)> {
    vec![("k".into(), "v".into()), ("k".into(), "w".into())]
}

fn publish(qos: QoS, pkid: u16, properties: Option<PublishProperties>) -> Packet {
    Packet::Publish(Publish {
        dup: qos == QoS::ExactlyOnce,
        qos,
        retain: qos == QoS::AtLeastOnce,
        topic: Bytes::from_static("plant1/line3/temp".as_bytes()),
        pkid,
        payload: Bytes::from_static(b"21.5"),
        properties,
    })
}

fn publish_props(subscription_identifiers: Vec<usize>) -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        topic_alias: None,
        response_topic: Some("replies/1".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01")),
        user_properties: users(),
        subscription_identifiers,
        content_type: Some("text/plain".into()),
    }
}

fn ack_props() -> (Option<String>, Vec<(String, String)>) {
    (Some("not today".into()), users())
}

/// Every packet type the server sends, in MQTT 5 form.
fn server_packets() -> Vec<Packet> {
    let (reason_string, user_properties) = ack_props();
    vec![
        Packet::ConnAck(ConnAck {
            session_present: true,
            code: ConnectReturnCode::Success,
            properties: Some(ConnAckProperties {
                session_expiry_interval: Some(600),
                receive_max: Some(32),
                max_qos: Some(1),
                retain_available: Some(1),
                max_packet_size: Some(65_536),
                assigned_client_identifier: Some("auto-7".into()),
                topic_alias_max: Some(10),
                reason_string: None,
                user_properties: users(),
                wildcard_subscription_available: Some(1),
                subscription_identifiers_available: Some(1),
                shared_subscription_available: Some(0),
                server_keep_alive: Some(45),
                response_information: None,
                server_reference: None,
                authentication_method: None,
                authentication_data: None,
            }),
        }),
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: ConnectReturnCode::NotAuthorized,
            properties: None,
        }),
        publish(QoS::AtMostOnce, 0, None),
        publish(QoS::AtLeastOnce, 7, Some(publish_props(vec![1, 300]))),
        publish(QoS::ExactlyOnce, 65_535, None),
        Packet::PubAck(PubAck::new(7, None)),
        Packet::PubAck(PubAck {
            pkid: 8,
            reason: PubAckReason::NotAuthorized,
            properties: Some(PubAckProperties {
                reason_string: reason_string.clone(),
                user_properties: user_properties.clone(),
            }),
        }),
        Packet::PubRec(PubRec::new(9, None)),
        Packet::PubRec(PubRec {
            pkid: 10,
            reason: PubRecReason::QuotaExceeded,
            properties: None,
        }),
        Packet::PubRel(PubRel::new(11, None)),
        Packet::PubRel(PubRel {
            pkid: 12,
            reason: PubRelReason::PacketIdentifierNotFound,
            properties: Some(PubRelProperties {
                reason_string,
                user_properties,
            }),
        }),
        Packet::PubComp(PubComp::new(13, None)),
        Packet::SubAck(SubAck {
            pkid: 14,
            return_codes: vec![
                SubscribeReasonCode::Success(QoS::AtMostOnce),
                SubscribeReasonCode::Success(QoS::ExactlyOnce),
                SubscribeReasonCode::NotAuthorized,
                SubscribeReasonCode::TopicFilterInvalid,
            ],
            properties: None,
        }),
        Packet::UnsubAck(UnsubAck {
            pkid: 15,
            reasons: vec![
                UnsubAckReason::Success,
                UnsubAckReason::NoSubscriptionExisted,
            ],
            properties: None,
        }),
        Packet::PingResp(PingResp),
        Packet::Disconnect(Disconnect::new(DisconnectReasonCode::NormalDisconnection)),
        Packet::Disconnect(Disconnect::new(DisconnectReasonCode::SessionTakenOver)),
        Packet::Disconnect(Disconnect {
            reason_code: DisconnectReasonCode::ServerShuttingDown,
            properties: Some(DisconnectProperties {
                session_expiry_interval: None,
                reason_string: Some("maintenance".into()),
                user_properties: users(),
                server_reference: Some("other.example:1883".into()),
            }),
        }),
    ]
}

/// Reads a server packet the way a client does, with rumqttc's own MQTT 5 reader.
fn client_read(buf: &mut BytesMut) -> Packet {
    if buf.first() == Some(&0xE0) {
        // rumqttc's Packet::read refuses a DISCONNECT of remaining length 0.
        let len = usize::from(buf[1]);
        let frame = buf.split_to(2 + len).freeze();
        let fh = FixedHeader::new(0xE0, 1, len);
        return Packet::Disconnect(Disconnect::read(fh, frame).expect("DISCONNECT reads"));
    }
    Packet::read(buf, None).expect("rumqttc reads what we wrote")
}

#[test]
fn server_packets_v5_read_back_by_rumqttc() {
    for p in server_packets() {
        let mut buf = encode(V5, &p);
        assert_eq!(client_read(&mut buf), p);
        assert!(buf.is_empty(), "exactly one frame for {p:?}");
    }
}

#[test]
fn server_packets_v311_wire_bytes() {
    let expected: Vec<Option<&[u8]>> = vec![
        Some(&[0x20, 2, 1, 0]),
        Some(&[0x20, 2, 0, 5]),
        Some(b"\x30\x17\x00\x11plant1/line3/temp21.5"),
        Some(b"\x33\x19\x00\x11plant1/line3/temp\x00\x0721.5"),
        Some(b"\x3C\x19\x00\x11plant1/line3/temp\xFF\xFF21.5"),
        Some(&[0x40, 2, 0, 7]),
        Some(&[0x40, 2, 0, 8]),
        Some(&[0x50, 2, 0, 9]),
        Some(&[0x50, 2, 0, 10]),
        Some(&[0x62, 2, 0, 11]),
        Some(&[0x62, 2, 0, 12]),
        Some(&[0x70, 2, 0, 13]),
        Some(&[0x90, 6, 0, 14, 0, 2, 0x80, 0x80]),
        Some(&[0xB0, 2, 0, 15]),
        Some(&[0xD0, 0]),
        None,
        None,
        None,
    ];
    let packets = server_packets();
    assert_eq!(packets.len(), expected.len());
    for (p, want) in packets.iter().zip(expected) {
        let mut out = BytesMut::from(&b"earlier"[..]);
        let done = encoder(V311).encode(p, &mut out, None).expect("encodes");
        match want {
            Some(bytes) => {
                assert_eq!(done, Encoded::Written(bytes.len()), "{p:?}");
                assert_eq!(&out[7..], bytes, "{p:?}");
                let mut frame = out.split_off(7);
                v4::Packet::read(&mut frame, MAX).expect("rumqttc reads the 3.1.1 frame");
            }
            None => assert_eq!((done, &out[..]), (Encoded::Close, &b"earlier"[..])),
        }
    }
}

#[test]
fn connack_codes_fold_onto_v311_return_codes() {
    use ConnectReturnCode as C;
    let cases = [
        (C::Success, 0),
        (C::UnsupportedProtocolVersion, 1),
        (C::RefusedProtocolVersion, 1),
        (C::ClientIdentifierNotValid, 2),
        (C::BadClientId, 2),
        (C::ServerUnavailable, 3),
        (C::ServerBusy, 3),
        (C::Banned, 3),
        (C::ServiceUnavailable, 3),
        (C::BadUserNamePassword, 4),
        (C::NotAuthorized, 5),
        (C::UnspecifiedError, 3),
        (C::MalformedPacket, 3),
        (C::QuotaExceeded, 3),
        (C::ConnectionRateExceeded, 3),
    ];
    for (code, v4_code) in cases {
        let p = Packet::ConnAck(ConnAck {
            session_present: false,
            code,
            properties: None,
        });
        assert_eq!(&encode(V311, &p)[..], &[0x20, 2, 0, v4_code], "{code:?}");
        // rumqttc's MQTT 5 writer panics on the three 3.1.1-only codes; ours maps them.
        let mut buf = encode(V5, &p);
        let Packet::ConnAck(back) = client_read(&mut buf) else {
            panic!("CONNACK expected")
        };
        assert!(back.code != C::RefusedProtocolVersion && back.code != C::BadClientId);
    }
}

/// Every packet type the server receives (AUTH has its own tests), in MQTT 5 form.
pub(super) fn client_packets_v5() -> Vec<Packet> {
    let (reason_string, user_properties) = ack_props();
    let mut topic_alias = publish_props(Vec::new());
    topic_alias.topic_alias = Some(3);
    vec![
        Packet::Connect(
            Connect {
                keep_alive: 0,
                client_id: "sensor-42".into(),
                clean_start: false,
                properties: Some(ConnectProperties {
                    session_expiry_interval: Some(u32::MAX),
                    receive_maximum: Some(20),
                    max_packet_size: Some(1024),
                    topic_alias_max: Some(5),
                    request_response_info: Some(1),
                    request_problem_info: Some(0),
                    user_properties: users(),
                    authentication_method: Some("SCRAM-SHA-1".into()),
                    authentication_data: Some(Bytes::from_static(b"\x01\x02")),
                }),
            },
            Some(LastWill {
                topic: Bytes::from_static(b"status/sensor-42"),
                message: Bytes::from_static(b"offline"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Some(LastWillProperties {
                    delay_interval: Some(5),
                    payload_format_indicator: Some(1),
                    message_expiry_interval: Some(60),
                    content_type: Some("text/plain".into()),
                    response_topic: Some("r".into()),
                    correlation_data: Some(Bytes::from_static(b"c")),
                    user_properties: users(),
                }),
            }),
            Some(Login::new("user", "secret")),
        ),
        publish(QoS::AtMostOnce, 0, None),
        publish(QoS::AtLeastOnce, 1, Some(topic_alias)),
        publish(QoS::ExactlyOnce, 2, Some(publish_props(Vec::new()))),
        Packet::PubAck(PubAck::new(3, None)),
        Packet::PubAck(PubAck {
            pkid: 4,
            reason: PubAckReason::NoMatchingSubscribers,
            properties: Some(PubAckProperties {
                reason_string: reason_string.clone(),
                user_properties: user_properties.clone(),
            }),
        }),
        Packet::PubRec(PubRec::new(5, None)),
        Packet::PubRec(PubRec {
            pkid: 6,
            reason: PubRecReason::UnspecifiedError,
            properties: Some(PubRecProperties {
                reason_string: reason_string.clone(),
                user_properties: user_properties.clone(),
            }),
        }),
        Packet::PubRel(PubRel::new(7, None)),
        Packet::PubComp(PubComp::new(8, None)),
        Packet::PubComp(PubComp {
            pkid: 9,
            reason: PubCompReason::PacketIdentifierNotFound,
            properties: Some(PubCompProperties {
                reason_string,
                user_properties,
            }),
        }),
        Packet::Subscribe(Subscribe {
            pkid: 10,
            filters: vec![
                Filter::new("plant1/+/temp", QoS::AtLeastOnce),
                Filter {
                    path: "$share/g/cmd/#".into(),
                    qos: QoS::ExactlyOnce,
                    nolocal: false,
                    preserve_retain: true,
                    retain_forward_rule: RetainForwardRule::Never,
                },
                Filter {
                    path: "été/x".into(),
                    qos: QoS::AtMostOnce,
                    nolocal: true,
                    preserve_retain: false,
                    retain_forward_rule: RetainForwardRule::OnNewSubscribe,
                },
            ],
            properties: Some(SubscribeProperties {
                id: Some(268_435_455),
                user_properties: users(),
            }),
        }),
        Packet::Unsubscribe(Unsubscribe {
            pkid: 11,
            filters: vec!["plant1/+/temp".into(), "a".into()],
            properties: Some(UnsubscribeProperties {
                user_properties: users(),
            }),
        }),
        Packet::PingReq(PingReq),
        Packet::Disconnect(Disconnect::new(DisconnectReasonCode::NormalDisconnection)),
        Packet::Disconnect(Disconnect::new(
            DisconnectReasonCode::DisconnectWithWillMessage,
        )),
        Packet::Disconnect(Disconnect {
            reason_code: DisconnectReasonCode::NormalDisconnection,
            properties: Some(DisconnectProperties {
                session_expiry_interval: Some(0),
                reason_string: Some("bye".into()),
                user_properties: users(),
                server_reference: None,
            }),
        }),
    ]
}

/// The same, as a 3.1.1 client can express them (no properties, no reason codes).
pub(super) fn client_packets_v311() -> Vec<Packet> {
    vec![
        Packet::Connect(
            Connect {
                keep_alive: 60,
                client_id: "sensor-42".into(),
                clean_start: false,
                properties: None,
            },
            Some(LastWill::new(
                "status/sensor-42",
                "offline",
                QoS::ExactlyOnce,
                false,
                None,
            )),
            Some(Login::new("user", "secret")),
        ),
        publish(QoS::AtMostOnce, 0, None),
        publish(QoS::AtLeastOnce, 1, None),
        publish(QoS::ExactlyOnce, 2, None),
        Packet::PubAck(PubAck::new(3, None)),
        Packet::PubRec(PubRec::new(4, None)),
        Packet::PubRel(PubRel::new(5, None)),
        Packet::PubComp(PubComp::new(6, None)),
        Packet::Subscribe(Subscribe::new_many(
            [
                Filter::new("plant1/+/temp", QoS::AtLeastOnce),
                Filter::new("#", QoS::ExactlyOnce),
            ],
            None,
        )),
        Packet::Unsubscribe(Unsubscribe {
            pkid: 8,
            filters: vec!["plant1/+/temp".into()],
            properties: None,
        }),
        Packet::PingReq(PingReq),
        Packet::Disconnect(Disconnect::new(DisconnectReasonCode::NormalDisconnection)),
    ]
}

/// All of `packets` as one byte stream from a client of version `v`.
pub(super) fn client_stream(v: ProtocolVersion, packets: &[Packet]) -> BytesMut {
    let enc = encoder(v);
    let mut out = BytesMut::new();
    for p in packets {
        match enc.encode(p, &mut out, None).expect("encodes") {
            Encoded::Written(_) => {}
            // A 3.1.1 client's DISCONNECT: the server never writes one, so add it by hand.
            Encoded::Close => out.extend_from_slice(&[0xE0, 0x00]),
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

pub(super) fn subscribe_pkid(mut packets: Vec<Packet>) -> Vec<Packet> {
    // Subscribe::new_many leaves the packet id at 0, which a client must not send.
    for p in &mut packets {
        if let Packet::Subscribe(s) = p {
            if s.pkid == 0 {
                s.pkid = 7;
            }
        }
    }
    packets
}

#[test]
fn client_packets_round_trip_whole_and_byte_by_byte() {
    for (v, packets) in [
        (V5, client_packets_v5()),
        (V311, subscribe_pkid(client_packets_v311())),
    ] {
        let stream = client_stream(v, &packets);

        let mut whole = stream.clone();
        let mut codec = MqttCodec::new(MAX);
        let (decoded, err) = decode_all(&mut codec, &mut whole);
        assert_eq!(err, None, "{v}");
        assert_eq!(decoded, packets, "{v}");
        assert!(whole.is_empty());
        assert_eq!(codec.version(), Some(v));

        let mut codec = MqttCodec::new(MAX);
        let mut buf = BytesMut::new();
        let mut trickled = Vec::new();
        for &b in stream.iter() {
            buf.extend_from_slice(&[b]);
            let (mut got, err) = decode_all(&mut codec, &mut buf);
            assert_eq!(err, None, "{v}");
            assert!(got.len() <= 1, "one byte completes at most one packet");
            trickled.append(&mut got);
        }
        assert_eq!(trickled, packets, "{v}");
        assert!(buf.is_empty());
    }
}

#[test]
fn v311_connect_from_hand_written_bytes() {
    let bytes: &[u8] = b"\x10\x27\x00\x04MQTT\x04\xCE\x00\x0a\x00\x04test\x00\x02/a\x00\x07offline\x00\x04rumq\x00\x02mq";
    let mut codec = MqttCodec::new(MAX);
    let mut buf = BytesMut::from(bytes);
    let p = codec.decode(&mut buf).expect("valid").expect("complete");
    assert_eq!(
        p,
        Packet::Connect(
            Connect {
                keep_alive: 10,
                client_id: "test".into(),
                clean_start: true,
                properties: None,
            },
            Some(LastWill::new(
                "/a",
                "offline",
                QoS::AtLeastOnce,
                false,
                None
            )),
            Some(Login::new("rumq", "mq")),
        )
    );
    assert_eq!(codec.version(), Some(V311));
}

#[test]
fn many_packets_append_to_one_buffer_including_connect() {
    // rumqttc's CONNECT writers patch the flags at an offset from the buffer start.
    let enc = encoder(V5);
    let mut out = BytesMut::from(&b"\xD0\x00"[..]);
    let mut c = connect();
    if let Packet::Connect(_, _, login) = &mut c {
        *login = Some(Login::new("u", "p"));
    }
    for p in [&c, &publish(QoS::AtLeastOnce, 1, None), &c] {
        enc.encode(p, &mut out, None).expect("encodes");
    }
    assert_eq!(&out[..2], b"\xD0\x00", "the earlier packet is untouched");
    let mut rest = out.split_off(2);
    let mut codec = MqttCodec::new(MAX);
    assert_eq!(codec.decode(&mut rest).expect("valid"), Some(c.clone()));
    assert_eq!(
        codec.decode(&mut rest).expect("valid"),
        Some(publish(QoS::AtLeastOnce, 1, None))
    );
    // The second CONNECT is intact too (and a protocol error on the same connection).
    let mut fresh = MqttCodec::new(MAX);
    assert_eq!(fresh.decode(&mut rest).expect("valid"), Some(c));
    assert!(rest.is_empty());
}
