//! Hostile packets after a successful CONNECT: topic names a PUBLISH must not carry,
//! server-only packets, malformed and truncated packets, a second CONNECT, oversized packets,
//! bad MQTT 5 topic aliases and properties, forbidden subscription filters and stray
//! acknowledgements.

use super::ending::{
    Case, End, V4_CLOSE, after_connect, case, describe, disconnect, hello, publish, uid, violation,
};
use super::{ALIAS_MAX, AT_ONCE, BY_TIMER};
use e2e_tests::raw::{Raw, connect_v4, packet, publish_v5, put_len, subscribe_one};
use std::net::SocketAddr;
use std::time::Duration;

/// PUBLISH topic names that break the specification.
pub fn bad_topic_names(cases: &mut Vec<Case>, addr: SocketAddr) {
    // §1.5.4: U+0000, ill-formed UTF-8 and surrogates make a packet malformed (0x81);
    // §3.3.2.1: no wildcards in a topic name (0x90); §3.3.4: an empty topic name without a
    // topic alias is a protocol error.
    let names: [(&str, &'static [u8], &[u8]); 6] = [
        ("topic with NUL", b"a\0b", &[0x81]),
        ("topic with +", b"a/+/b", &[0x90, 0x82]),
        ("topic with #", b"a/#", &[0x90, 0x82]),
        ("topic of invalid UTF-8", b"a/\xFF\xFE", &[0x81]),
        (
            "topic with an encoded surrogate",
            b"a/\xED\xA0\x80",
            &[0x81],
        ),
        ("empty topic without alias", b"", &[0x82, 0x90]),
    ];
    for (name, topic, codes) in names {
        let label = format!("PUBLISH {name}");
        violation(cases, addr, &label, codes, move |v5| {
            publish(v5, topic, 1, &[], b"x")
        });
    }
    violation(
        cases,
        addr,
        "PUBLISH topic length beyond the packet",
        &[0x81],
        |v5| {
            let body: &[u8] = if v5 {
                &[0x00, 0x40, b'a', 0x00]
            } else {
                &[0x00, 0x40, b'a']
            };
            packet(0x30, body)
        },
    );
}

/// Packets only a server sends, reserved packet types, and AUTH where it has no place.
pub fn wrong_direction(cases: &mut Vec<Case>, addr: SocketAddr) {
    let server_only: [(&str, u8, &[u8], &[u8]); 4] = [
        ("CONNACK", 0x20, &[0, 0], &[0, 0, 0]),
        ("SUBACK", 0x90, &[0, 1, 0], &[0, 1, 0, 0]),
        ("UNSUBACK", 0xB0, &[0, 1], &[0, 1, 0, 0]),
        ("PINGRESP", 0xD0, &[], &[]),
    ];
    for (name, first, v4, v5) in server_only {
        let label = format!("client sends {name}");
        violation(cases, addr, &label, &[0x82], move |is_v5| {
            packet(first, if is_v5 { v5 } else { v4 })
        });
    }
    violation(cases, addr, "reserved packet type 0", &[0x81], |_| {
        packet(0x00, &[])
    });
    let auth = after_connect(
        addr,
        false,
        0,
        packet(0xF0, &[]),
        AT_ONCE,
        V4_CLOSE.to_vec(),
    );
    cases.push(case("AUTH in 3.1.1", auth));
    let auth = packet(0xF0, &[0x18, 0x00]);
    let auth = after_connect(addr, true, 0, auth, AT_ONCE, disconnect(&[0x82]));
    cases.push(case("AUTH without an authentication method (5)", auth));
    violation(cases, addr, "second CONNECT", &[0x82], |v5| {
        hello(v5, &uid("second"), 0)
    });
}

/// Packets that break the format or a packet-level rule, and oversized packets.
pub fn malformed(cases: &mut Vec<Case>, addr: SocketAddr) {
    violation(cases, addr, "PUBLISH QoS 3", &[0x81], |v5| {
        let mut p = publish(v5, b"a/b", 1, &[], b"x");
        p[0] = 0x36;
        p
    });
    violation(cases, addr, "remaining length of 5 bytes", &[0x81], |_| {
        vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00, 0x01, b'a']
    });
    violation(
        cases,
        addr,
        "SUBSCRIBE with fixed-header flags 0",
        &[0x81],
        |v5| {
            let mut p = subscribe_one(v5, 1, b"a/b", 0);
            p[0] = 0x80;
            p
        },
    );
    // MQTT 5 §3.8.3 and §3.10.3: no payload is a protocol error.
    violation(cases, addr, "empty SUBSCRIBE", &[0x82], |v5| {
        packet(0x82, if v5 { &[0, 1, 0] } else { &[0, 1] })
    });
    violation(cases, addr, "empty UNSUBSCRIBE", &[0x82], |v5| {
        packet(0xA2, if v5 { &[0, 1, 0] } else { &[0, 1] })
    });
    violation(
        cases,
        addr,
        "PUBLISH bigger than the maximum packet size",
        &[0x95],
        |v5| publish(v5, b"big/x", 0, &[], &[0u8; 2000]),
    );
    // Nothing follows the header: only refusing from the header alone closes the connection
    // (no keep-alive runs).
    violation(cases, addr, "header announcing 200 MB", &[0x95], |_| {
        let mut p = vec![0x30];
        put_len(&mut p, 200 << 20);
        p.extend_from_slice(b"\x00\x05big/x");
        p
    });
}

/// MQTT 5 only: topic aliases (§3.3.4: 0 or above the maximum is 0x94) and properties.
pub fn v5_properties(cases: &mut Vec<Case>, addr: SocketAddr) {
    let above = (ALIAS_MAX + 1).to_be_bytes();
    let publishes: [(&str, Vec<u8>, &[u8]); 5] = [
        (
            "topic alias 0",
            publish_v5(b"a/b", 1, 1, &[0x23, 0, 0], b"x"),
            &[0x94],
        ),
        (
            "topic alias above the maximum",
            publish_v5(b"a/b", 1, 1, &[0x23, above[0], above[1]], b"x"),
            &[0x94],
        ),
        (
            "an unknown topic alias",
            publish_v5(b"", 1, 1, &[0x23, 0, 3], b"x"),
            &[0x82, 0x94],
        ),
        (
            "the topic alias given twice",
            publish_v5(b"a/b", 1, 1, &[0x23, 0, 1, 0x23, 0, 1], b"x"),
            &[0x82],
        ),
        (
            "a property block overrunning the packet",
            // Property length 20, but only two bytes follow.
            packet(
                0x32,
                &[0x00, 0x03, b'a', b'/', b'b', 0x00, 0x01, 20, 0x23, 0x00],
            ),
            &[0x81],
        ),
    ];
    for (name, bytes, codes) in publishes {
        let run = after_connect(addr, true, 0, bytes, AT_ONCE, disconnect(codes));
        cases.push(case(format!("PUBLISH with {name} (5)"), run));
    }
}

/// Packets cut short, then silence: the keep-alive (1 s) ends the connection; before CONNECT
/// the connect timeout does.
pub fn truncated(cases: &mut Vec<Case>, addr: SocketAddr) {
    type Cut = (&'static str, fn(bool) -> Vec<u8>);
    let cut: [Cut; 3] = [
        ("PUBLISH announcing 100 bytes, 12 sent", |v5| {
            let mut p = publish(v5, b"t/x", 0, &[], &[0u8; 90]);
            p.truncate(12);
            p
        }),
        ("remaining length cut short", |_| vec![0x30, 0x80]),
        ("a lone first byte", |_| vec![0x82]),
    ];
    for (name, bytes) in cut {
        let v4 = after_connect(addr, false, 1, bytes(false), BY_TIMER, V4_CLOSE.to_vec());
        cases.push(case(format!("{name} (3.1.1)"), v4));
        let allowed = vec![End::Silent, End::Disconnect(0x8D)];
        let v5 = after_connect(addr, true, 1, bytes(true), BY_TIMER, allowed);
        cases.push(case(format!("{name} (5)"), v5));
    }
    cases.push(case("CONNECT cut short", async move {
        let mut raw = Raw::open(addr).await;
        let mut bytes = connect_v4(&uid("cut"), 0);
        bytes.truncate(8);
        raw.send(&bytes).await;
        super::ending::expect_end(&mut raw, BY_TIMER, &[End::Silent]).await
    }));
}

/// The reason code of the only filter in a SUBACK body.
fn suback_code(v5: bool, body: &[u8]) -> Option<u8> {
    let props = if v5 {
        1 + usize::from(*body.get(2)?)
    } else {
        0
    };
    body.get(2 + props).copied()
}

/// Sends `bytes` and a PINGREQ; the server either keeps serving (it answers the PINGREQ, and
/// what else it sends is judged by `ok`; the order is free, as PINGRESP is not ordered with
/// acknowledgements) or closes (MQTT 5 with an error DISCONNECT).
async fn refused_or_closed(
    addr: SocketAddr,
    v5: bool,
    bytes: Vec<u8>,
    ok: impl Fn(&[(u8, Vec<u8>)]) -> bool,
) -> Result<(), String> {
    let mut raw = Raw::handshake(addr, &hello(v5, &uid("refused"), 0)).await?;
    raw.send(&[bytes, vec![0xC0, 0x00]].concat()).await;
    let end = raw.ending(Duration::from_secs(2)).await;
    let (pongs, answer): (Vec<_>, Vec<_>) = end.packets.iter().cloned().partition(|p| p.0 == 0xD0);
    let fine = match (end.closed, &end.packets[..]) {
        (true, []) => true,
        (true, [(0xE0, b)]) => v5 && b.first().is_some_and(|c| *c >= 0x80),
        (false, _) => pongs.len() == 1 && ok(&answer),
        _ => false,
    };
    if fine {
        Ok(())
    } else {
        Err(format!(
            "sent {} (closed: {})",
            describe(&end.packets),
            end.closed
        ))
    }
}

/// Subscription filters MQTT forbids: refused in SUBACK (0x80 or above) or the connection
/// closed; either way the server goes on serving others.
pub fn bad_filters(cases: &mut Vec<Case>, addr: SocketAddr) {
    let both: [&'static [u8]; 4] = [b"a/#/b", b"a+/b", b"a/b#", b""];
    let shared: [&'static [u8]; 3] = [b"$share/g", b"$share//a", b"$share/g+/a"];
    let with_version = both.iter().flat_map(|f| [(false, *f), (true, *f)]);
    for (v5, filter) in with_version.chain(shared.iter().map(|f| (true, *f))) {
        let name = format!(
            "SUBSCRIBE to {:?} ({})",
            String::from_utf8_lossy(filter),
            if v5 { "5" } else { "3.1.1" }
        );
        let run = refused_or_closed(
            addr,
            v5,
            subscribe_one(v5, 1, filter, 1),
            move |answer| matches!(answer, [(0x90, b)] if suback_code(v5, b).is_some_and(|c| c >= 0x80)),
        );
        cases.push(case(name, run));
    }
    // §1.5.4: malformed strings close the connection whatever the packet.
    violation(
        cases,
        addr,
        "SUBSCRIBE to a filter of invalid UTF-8",
        &[0x81],
        |v5| subscribe_one(v5, 1, b"a/\xFF", 1),
    );
    violation(
        cases,
        addr,
        "SUBSCRIBE to a filter with NUL",
        &[0x81],
        |v5| subscribe_one(v5, 1, b"a/\0/b", 1),
    );
}

/// Acknowledgements for packets the server never sent: ignored or refused, never a crash.
/// A PUBREL for an unknown id is answered with PUBCOMP (MQTT 5: reason 0 or 0x92).
pub fn stray_acks(cases: &mut Vec<Case>, addr: SocketAddr) {
    for v5 in [false, true] {
        let version = if v5 { "5" } else { "3.1.1" };
        for (name, first) in [("PUBACK", 0x40u8), ("PUBREC", 0x50), ("PUBCOMP", 0x70)] {
            let run = refused_or_closed(addr, v5, packet(first, &[0, 9]), |_| true);
            cases.push(case(format!("{name} for an unknown id ({version})"), run));
        }
        let run = refused_or_closed(
            addr,
            v5,
            packet(0x62, &[0, 9]),
            move |answer| match answer {
                [(0x70, b)] => {
                    b.get(..2) == Some(&[0, 9][..])
                        && b.get(2).is_none_or(|c| v5 && [0, 0x92].contains(c))
                }
                _ => false,
            },
        );
        cases.push(case(format!("PUBREL for an unknown id ({version})"), run));
    }
}
