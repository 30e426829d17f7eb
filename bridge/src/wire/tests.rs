//! Decoding what servers send (built with rumqttc's writers and by hand) and encoding what
//! a client sends (read back with rumqttc's readers).

use super::encode::{self, Ack, ConnectParams, OutPublish};
use super::*;
use rumqttc::mqttbytes::v4 as w4;

fn dec(protocol: Protocol) -> Decoder {
    Decoder {
        protocol,
        max_packet_size: 1024,
    }
}

fn decode_all(protocol: Protocol, bytes: &[u8]) -> Vec<Incoming> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(p) = dec(protocol)
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("{e}"))
    {
        out.push(p);
    }
    assert!(buf.is_empty(), "bytes left over");
    out
}

#[test]
fn short_acknowledgements_of_both_versions() {
    let frames = [
        0x40, 0x02, 0x00, 0x07, // PUBACK 7
        0x40, 0x03, 0x00, 0x08, 0x87, // MQTT 5 PUBACK 8, not authorized, no properties
        0x50, 0x04, 0x00, 0x09, 0x00, 0x00, // PUBREC 9, success, empty properties
        0x62, 0x02, 0x00, 0x0A, // PUBREL 10
        0x70, 0x02, 0x00, 0x0B, // PUBCOMP 11
        0xD0, 0x00, // PINGRESP
    ];
    let got = decode_all(Protocol::V5, &frames);
    assert_eq!(
        got,
        vec![
            Incoming::PubAck { pkid: 7, reason: 0 },
            Incoming::PubAck {
                pkid: 8,
                reason: 0x87
            },
            Incoming::PubRec { pkid: 9, reason: 0 },
            Incoming::PubRel { pkid: 10 },
            Incoming::PubComp { pkid: 11 },
            Incoming::PingResp,
        ]
    );
}

#[test]
fn partial_frames_wait_for_more_bytes() {
    let mut buf = BytesMut::from(&[0x40u8, 0x02, 0x00][..]);
    assert_eq!(dec(Protocol::V311).decode(&mut buf), Ok(None));
    buf.extend_from_slice(&[0x05]);
    assert_eq!(
        dec(Protocol::V311).decode(&mut buf),
        Ok(Some(Incoming::PubAck { pkid: 5, reason: 0 }))
    );
}

#[test]
fn oversized_and_unexpected_packets_are_errors() {
    let mut buf = BytesMut::from(&[0x30u8, 0xFF, 0x7F][..]);
    assert!(matches!(
        dec(Protocol::V5).decode(&mut buf),
        Err(WireError::TooLarge { .. })
    ));
    let mut buf = BytesMut::from(&[0x10u8, 0x00][..]);
    assert_eq!(
        dec(Protocol::V5).decode(&mut buf),
        Err(WireError::Unexpected("CONNECT"))
    );
    let mut buf = BytesMut::from(&[0x40u8, 0x02, 0x00, 0x00][..]);
    assert!(matches!(
        dec(Protocol::V5).decode(&mut buf),
        Err(WireError::Malformed(_))
    ));
    let mut buf = BytesMut::from(&[0x30u8, 0x80, 0x80, 0x80, 0x80, 0x01][..]);
    assert!(dec(Protocol::V5).decode(&mut buf).is_err());
}

#[test]
fn connack_with_properties_and_a_311_refusal() {
    let mut buf = BytesMut::new();
    let props = v5::ConnAckProperties {
        session_expiry_interval: None,
        receive_max: Some(20),
        max_qos: Some(1),
        retain_available: Some(0),
        max_packet_size: None,
        assigned_client_identifier: None,
        topic_alias_max: None,
        reason_string: None,
        user_properties: Vec::new(),
        wildcard_subscription_available: None,
        subscription_identifiers_available: None,
        shared_subscription_available: None,
        server_keep_alive: Some(15),
        response_information: None,
        server_reference: None,
        authentication_method: None,
        authentication_data: None,
    };
    v5::ConnAck {
        session_present: true,
        code: v5::ConnectReturnCode::Success,
        properties: Some(props),
    }
    .write(&mut buf)
    .unwrap_or_else(|e| panic!("{e}"));
    let got = decode_all(Protocol::V5, &buf);
    let Incoming::ConnAck(ack) = &got[0] else {
        panic!("not a CONNACK: {got:?}")
    };
    assert!(ack.session_present);
    assert_eq!(ack.receive_max, Some(20));
    assert_eq!(ack.max_qos, Some(1));
    assert!(!ack.retain_available);
    assert_eq!(ack.server_keep_alive, Some(15));

    // A 3.1.1-only broker answers an MQTT 5 CONNECT with a two-byte CONNACK, code 1.
    let got = decode_all(Protocol::V5, &[0x20, 0x02, 0x00, 0x01]);
    assert_eq!(
        got,
        vec![Incoming::ConnAck(ConnAck {
            code: 1,
            retain_available: true,
            ..ConnAck::default()
        })]
    );
    assert!(reason::connack(Protocol::V5, 1).contains("3.1.1"));
}

#[test]
fn publishes_from_the_remote() {
    let mut buf = BytesMut::new();
    let mut p = w4::Publish::new("a/b", b4::QoS::ExactlyOnce, "hi");
    p.pkid = 3;
    p.retain = true;
    p.dup = true;
    p.write(&mut buf).unwrap_or_else(|e| panic!("{e}"));
    let got = decode_all(Protocol::V311, &buf);
    assert_eq!(
        got,
        vec![Incoming::Publish(Publish {
            topic: "a/b".into(),
            pkid: 3,
            qos: QoS::ExactlyOnce,
            retain: true,
            dup: true,
            payload: Bytes::from_static(b"hi"),
            props: Props::default(),
        })]
    );

    let mut buf = BytesMut::new();
    let props = v5::PublishProperties {
        content_type: Some("text/plain".into()),
        user_properties: vec![("k".into(), "v".into())],
        ..Default::default()
    };
    let mut p = v5::Publish::new(
        "x",
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        "p",
        Some(props),
    );
    p.pkid = 9;
    p.write(&mut buf).unwrap_or_else(|e| panic!("{e}"));
    let got = decode_all(Protocol::V5, &buf);
    let Incoming::Publish(p) = &got[0] else {
        panic!("not a PUBLISH: {got:?}")
    };
    assert_eq!(p.props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.props.user_properties, vec![("k".into(), "v".into())]);
}

#[test]
fn disconnect_short_forms() {
    assert_eq!(
        decode_all(Protocol::V5, &[0xE0, 0x00]),
        vec![Incoming::Disconnect {
            reason: 0,
            reason_string: None
        }]
    );
    assert_eq!(
        decode_all(Protocol::V5, &[0xE0, 0x01, 0x8B]),
        vec![Incoming::Disconnect {
            reason: 0x8B,
            reason_string: None
        }]
    );
}

#[test]
fn client_packets_read_back() {
    for protocol in [Protocol::V311, Protocol::V5] {
        let mut buf = BytesMut::from(&b"earlier bytes"[..]);
        encode::connect(
            &ConnectParams {
                protocol,
                client_id: "gw-1",
                keep_alive: 30,
                username: Some("u"),
                password: Some("p"),
                session_expiry: 60,
                receive_maximum: 10,
                max_packet_size: 4096,
            },
            &mut buf,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut frame = buf.split_off(13);
        assert_eq!(
            &buf[..],
            b"earlier bytes",
            "CONNECT must not touch earlier bytes"
        );
        match protocol {
            Protocol::V311 => match w4::Packet::read(&mut frame, 4096) {
                Ok(w4::Packet::Connect(c)) => {
                    assert_eq!(c.client_id, "gw-1");
                    assert!(!c.clean_session);
                    assert_eq!(c.login.map(|l| l.password), Some("p".to_string()));
                }
                other => panic!("{other:?}"),
            },
            Protocol::V5 => match v5::Packet::read(&mut frame, Some(4096)) {
                Ok(v5::Packet::Connect(c, _, login)) => {
                    assert!(!c.clean_start);
                    let p = c.properties.unwrap_or_else(|| panic!("properties"));
                    assert_eq!(p.session_expiry_interval, Some(60));
                    assert_eq!(p.receive_maximum, Some(10));
                    assert_eq!(login.map(|l| l.username), Some("u".to_string()));
                }
                other => panic!("{other:?}"),
            },
        }

        let mut buf = BytesMut::new();
        let props = Props {
            user_properties: vec![("bridge-origin".into(), "gw-1".into())],
            ..Props::default()
        };
        let p = OutPublish {
            topic: "t/1",
            pkid: 5,
            qos: QoS::AtLeastOnce,
            retain: true,
            dup: true,
            payload: Bytes::from_static(b"x"),
            props: &props,
        };
        encode::publish(protocol, &p, &mut buf, None).unwrap_or_else(|e| panic!("{e}"));
        let before = buf.len();
        assert!(encode::publish(protocol, &p, &mut buf, Some(8)).is_err());
        assert_eq!(buf.len(), before, "a refused PUBLISH leaves nothing behind");
        encode::ack(Ack::PubRel, 5, &mut buf);
        match protocol {
            Protocol::V311 => {
                match w4::Packet::read(&mut buf, 4096) {
                    Ok(w4::Packet::Publish(p)) => {
                        assert!(p.dup && p.retain);
                        assert_eq!((p.pkid, p.topic.as_str()), (5, "t/1"));
                    }
                    other => panic!("{other:?}"),
                }
                assert!(matches!(
                    w4::Packet::read(&mut buf, 4096),
                    Ok(w4::Packet::PubRel(r)) if r.pkid == 5
                ));
            }
            Protocol::V5 => {
                match v5::Packet::read(&mut buf, Some(4096)) {
                    Ok(v5::Packet::Publish(p)) => {
                        assert!(p.dup && p.retain);
                        let props = p.properties.unwrap_or_else(|| panic!("properties"));
                        assert_eq!(props.user_properties[0].1, "gw-1");
                    }
                    other => panic!("{other:?}"),
                }
                assert!(matches!(
                    v5::Packet::read(&mut buf, Some(4096)),
                    Ok(v5::Packet::PubRel(r)) if r.pkid == 5
                ));
            }
        }

        let mut buf = BytesMut::new();
        encode::subscribe(
            protocol,
            2,
            &[
                ("a/#".into(), QoS::ExactlyOnce),
                ("$share/g/b".into(), QoS::AtMostOnce),
            ],
            &mut buf,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        if protocol == Protocol::V5 {
            match v5::Packet::read(&mut buf, Some(4096)) {
                Ok(v5::Packet::Subscribe(s)) => {
                    assert!(s.filters[0].nolocal);
                    assert!(!s.filters[1].nolocal, "no-local is not allowed on shared");
                    assert!(s.filters[0].preserve_retain);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
