//! Hostile input against one in-process gateway: every class of bad input from the
//! foundation issue's "Bad input" item, each on its own raw TCP connection, all run at once.
//!
//! Classes: garbage and a wrong first packet; bad CONNECT fields (protocol name and level,
//! reserved and will flags) and invalid client ids; odd but valid topics (accepted and
//! delivered) and invalid ones; server-only packets from a client; malformed, truncated and
//! oversized packets; a second CONNECT; bad MQTT 5 topic aliases and properties; a slowloris
//! and a flood. Each must end only its own connection, with the CONNACK return code or MQTT 5
//! DISCONNECT reason code the specification gives. Afterwards, clients connected before the
//! attacks still receive, fresh 3.1.1 and 5 clients still connect, subscribe and get a round
//! trip, and nothing in the process panicked.

use e2e_tests::GatewayHarness;
use e2e_tests::mqtt::{V4, V5, v4_options, v5_options};
use e2e_tests::raw::{
    Raw, connect_v4, connect_v5, connect_with, packet, publish_v4, publish_v5, put_len, put_str,
    subscribe_one,
};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::task::JoinSet;

/// The gateway's maximum packet size for this test: small, so oversized packets are cheap.
const MAX_PACKET: u32 = 1024;
/// The gateway's MQTT 5 topic alias maximum for this test.
const ALIAS_MAX: u16 = 10;
/// Patience for a close that follows the offending bytes at once (no timer involved).
const AT_ONCE: Duration = Duration::from_secs(5);
/// Patience for a close driven by a timer of about a second (connect timeout 1 s, keep-alive
/// 1 s × 1.5).
const BY_TIMER: Duration = Duration::from_secs(8);
/// Bound on a round trip while the gateway is under attack.
const ROUND_TRIP: Duration = Duration::from_secs(10);
/// Bound on the whole set of cases; a case still running then counts as a stall.
const ALL_CASES: Duration = Duration::from_secs(90);

type CaseFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One named case.
struct Case {
    name: String,
    run: CaseFuture,
}

fn case(
    name: impl Into<String>,
    run: impl Future<Output = Result<(), String>> + Send + 'static,
) -> Case {
    Case {
        name: name.into(),
        run: Box::pin(run),
    }
}

/// A client id no other case uses (two connections with one id would take each other over).
fn uid(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("h{}-{tag}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// An acceptable way for the server to end a connection.
#[derive(Debug, Clone, Copy)]
enum End {
    /// Closed without sending anything.
    Silent,
    /// CONNACK in the 3.1.1 form with this return code, then closed.
    ConnAck4(u8),
    /// CONNACK in the MQTT 5 form with this reason code, then closed.
    ConnAck5(u8),
    /// MQTT 5 DISCONNECT with this reason code, then closed.
    Disconnect(u8),
}

impl End {
    fn matches(self, packets: &[(u8, Vec<u8>)]) -> bool {
        match (self, packets) {
            (End::Silent, []) => true,
            (End::ConnAck4(c), [(0x20, b)]) => b[..] == [0, c],
            (End::ConnAck5(c), [(0x20, b)]) => b.len() >= 3 && b[0] == 0 && b[1] == c,
            (End::Disconnect(c), [(0xE0, b)]) => b.first().copied().unwrap_or(0) == c,
            _ => false,
        }
    }
}

/// What the 3.1.1 form of a violation after CONNECT must get: the connection closed.
const V4_CLOSE: &[End] = &[End::Silent];

fn describe(packets: &[(u8, Vec<u8>)]) -> String {
    if packets.is_empty() {
        return "nothing".into();
    }
    let parts: Vec<String> = packets
        .iter()
        .map(|(first, body)| {
            let hex: Vec<String> = body.iter().take(16).map(|b| format!("{b:02x}")).collect();
            format!("packet {first:#04x} [{}]", hex.join(" "))
        })
        .collect();
    parts.join(", ")
}

/// Waits for the server to close `raw` and checks what it sent first against `allowed`.
async fn expect_end(raw: &mut Raw, wait: Duration, allowed: &[End]) -> Result<(), String> {
    let end = raw.ending(wait).await;
    if !end.closed {
        return Err(format!(
            "still open after {wait:?}, having sent {}",
            describe(&end.packets)
        ));
    }
    if allowed.iter().any(|a| a.matches(&end.packets)) {
        Ok(())
    } else {
        Err(format!(
            "sent {} before closing; expected one of {allowed:?}",
            describe(&end.packets)
        ))
    }
}

/// Opens a socket and sends `hostile` as its first bytes, then a valid CONNECT. The server
/// must end the connection as `allowed` says; it never answers the CONNECT that follows
/// (which is what a server that skipped the bad bytes would do).
async fn before_connect(
    addr: SocketAddr,
    hostile: Vec<u8>,
    allowed: &'static [End],
) -> Result<(), String> {
    let mut raw = Raw::open(addr).await;
    let mut bytes = hostile;
    bytes.extend(connect_v4(&uid("after-hostile"), 0));
    raw.send(&bytes).await;
    expect_end(&mut raw, AT_ONCE, allowed).await
}

/// Connects (no keep-alive, so only the offence can end the connection), sends `hostile`,
/// and expects the end `allowed` says within `wait`.
async fn after_connect(
    addr: SocketAddr,
    v5: bool,
    keep_alive: u16,
    hostile: Vec<u8>,
    wait: Duration,
    allowed: Vec<End>,
) -> Result<(), String> {
    let id = uid("attacker");
    let hello = if v5 {
        connect_v5(&id, keep_alive)
    } else {
        connect_v4(&id, keep_alive)
    };
    let mut raw = Raw::handshake(addr, &hello).await?;
    raw.send(&hostile).await;
    expect_end(&mut raw, wait, &allowed).await
}

/// Adds a violation after CONNECT in both versions: 3.1.1 must close, MQTT 5 must send
/// DISCONNECT with one of `codes` and close. `bytes(v5)` builds the offending bytes.
fn violation(
    cases: &mut Vec<Case>,
    addr: SocketAddr,
    name: &str,
    codes: &[u8],
    bytes: impl Fn(bool) -> Vec<u8>,
) {
    cases.push(case(
        format!("{name} (3.1.1)"),
        after_connect(addr, false, 0, bytes(false), AT_ONCE, V4_CLOSE.to_vec()),
    ));
    let allowed = codes.iter().map(|&c| End::Disconnect(c)).collect();
    cases.push(case(
        format!("{name} (5)"),
        after_connect(addr, true, 0, bytes(true), AT_ONCE, allowed),
    ));
}

/// A PUBLISH in either layout, with MQTT 5 properties `props` (ignored for 3.1.1).
fn publish(v5: bool, topic: &[u8], qos: u8, props: &[u8], payload: &[u8]) -> Vec<u8> {
    if v5 {
        publish_v5(topic, qos, 1, props, payload)
    } else {
        publish_v4(topic, qos, false, 1, payload)
    }
}

/// Garbage, a first packet that is not CONNECT, and bad CONNECT headers.
fn first_packet_cases(cases: &mut Vec<Case>, addr: SocketAddr) {
    let mut noise = Vec::new();
    let mut x: u32 = 0x2545_F491;
    for _ in 0..256 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push(x as u8);
    }
    let garbage: [(&str, Vec<u8>); 4] = [
        (
            "HTTP request",
            b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "reserved packet type 0",
            vec![0x00, 0x00, 0xDE, 0xAD, 0xBE, 0xEF],
        ),
        (
            "TLS ClientHello",
            vec![
                0x16, 0x03, 0x01, 0x00, 0x2F, 0x01, 0x00, 0x00, 0x2B, 0x03, 0x03,
            ],
        ),
        ("256 pseudo-random bytes", noise),
    ];
    for (name, bytes) in garbage {
        cases.push(case(
            format!("garbage before CONNECT: {name}"),
            before_connect(addr, bytes, &[End::Silent]),
        ));
    }
    let not_connect: [(&str, Vec<u8>); 4] = [
        ("PUBLISH", publish_v4(b"a/b", 0, false, 0, b"x")),
        ("PINGREQ", vec![0xC0, 0x00]),
        ("SUBSCRIBE", subscribe_one(false, 1, b"a/#", 0)),
        ("DISCONNECT", vec![0xE0, 0x00]),
    ];
    for (name, bytes) in not_connect {
        cases.push(case(
            format!("first packet {name}"),
            before_connect(addr, bytes, &[End::Silent]),
        ));
    }
    const BAD_NAME: &[End] = &[End::Silent, End::ConnAck4(1), End::ConnAck5(0x84)];
    for name in [&b"MQTX"[..], b"mqtt", b""] {
        let bytes = connect_with(name, 4, 0x02, 0, uid("bad-name").as_bytes(), &[]);
        let label = format!("protocol name {:?}", String::from_utf8_lossy(name));
        cases.push(case(label, before_connect(addr, bytes, BAD_NAME)));
    }
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
    let mut will5 = vec![0];
    will5.extend_from_slice(&will);
    let mut password = Vec::new();
    put_str(&mut password, b"secret");
    const V5_MALFORMED: &[End] = &[End::Silent, End::ConnAck5(0x81)];
    let flags: [(&str, Vec<u8>, &'static [End]); 5] = [
        (
            "reserved flag (3.1.1)",
            connect_with(b"MQTT", 4, 0x03, 0, b"rf4", &[]),
            &[End::Silent],
        ),
        (
            "reserved flag (5)",
            connect_with(b"MQTT", 5, 0x03, 0, b"rf5", &[]),
            V5_MALFORMED,
        ),
        (
            "will QoS 3 (3.1.1)",
            connect_with(b"MQTT", 4, 0x1E, 0, b"wq4", &will),
            &[End::Silent],
        ),
        (
            "will QoS 3 (5)",
            connect_with(b"MQTT", 5, 0x1E, 0, b"wq5", &will5),
            V5_MALFORMED,
        ),
        (
            "password without user name (3.1.1)",
            connect_with(b"MQTT", 4, 0x42, 0, b"pw4", &password),
            &[End::Silent, End::ConnAck4(4)],
        ),
    ];
    for (name, bytes, allowed) in flags {
        cases.push(case(
            format!("CONNECT {name}"),
            before_connect(addr, bytes, allowed),
        ));
    }
}

/// Client ids that are refused: CONNACK 2 (3.1.1) or 0x85 (5), or (for bytes the spec calls
/// malformed) MQTT 5 0x81 or a plain close.
fn client_id_cases(cases: &mut Vec<Case>, addr: SocketAddr) {
    const V4_REFUSED: &[End] = &[End::ConnAck4(2), End::Silent];
    const V5_REFUSED: &[End] = &[End::ConnAck5(0x85), End::Silent];
    const V5_MALFORMED: &[End] = &[End::ConnAck5(0x85), End::ConnAck5(0x81), End::Silent];
    let long = vec![b'x'; 300];
    let ids: [(&str, Vec<u8>, &'static [End]); 8] = [
        ("control characters", b"ctl\x01\x02".to_vec(), V5_MALFORMED),
        ("a line break", b"line\nbreak".to_vec(), V5_MALFORMED),
        ("DEL", b"del\x7f".to_vec(), V5_MALFORMED),
        ("NUL", b"a\0b".to_vec(), V5_MALFORMED),
        ("300 bytes", long, V5_REFUSED),
        ("invalid UTF-8", vec![0xC3, 0x28, 0x41], V5_MALFORMED),
        ("a lone 0xFF byte", vec![0xFF], V5_MALFORMED),
        ("an encoded surrogate", vec![0xED, 0xA0, 0x80], V5_MALFORMED),
    ];
    for (name, id, v5_allowed) in ids {
        let v4 = connect_with(b"MQTT", 4, 0x02, 0, &id, &[]);
        cases.push(case(
            format!("client id with {name} (3.1.1)"),
            before_connect(addr, v4, V4_REFUSED),
        ));
        let v5 = connect_with(b"MQTT", 5, 0x02, 0, &id, &[]);
        cases.push(case(
            format!("client id with {name} (5)"),
            before_connect(addr, v5, v5_allowed),
        ));
    }
    let empty_persistent = connect_with(b"MQTT", 4, 0x00, 0, b"", &[]);
    cases.push(case(
        "empty client id without clean session (3.1.1)",
        before_connect(addr, empty_persistent, &[End::ConnAck4(2)]),
    ));
}

/// Topics that are valid however odd they look: each must be acknowledged and delivered to a
/// matching subscription, from 3.1.1 and from MQTT 5 publishers.
async fn odd_topics_are_delivered(addr: SocketAddr) -> Result<(), String> {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{Filter, SubscribeReasonCode};
    let deep: String = std::iter::once("deep")
        .chain(std::iter::repeat_n("l", 199))
        .collect::<Vec<_>>()
        .join("/");
    let topics = ["été/x", "温度/1", "🔥/💧", "a//b", "/", deep.as_str()];
    let filters = ["été/+", "温度/#", "🔥/+", "a/+/b", "/", "deep/#"];
    let (mut sub, _) = V5::connect(v5_options(addr, &uid("odd-sub"))).await;
    let wanted = filters.iter().map(|f| Filter::new(*f, QoS::AtLeastOnce));
    sub.client
        .subscribe_many(wanted)
        .await
        .map_err(|e| e.to_string())?;
    let ack = sub.suback().await;
    if ack
        .return_codes
        .iter()
        .any(|c| *c != SubscribeReasonCode::Success(QoS::AtLeastOnce))
    {
        return Err(format!(
            "subscriptions to odd filters refused: {:?}",
            ack.return_codes
        ));
    }
    for v5 in [false, true] {
        let id = uid("odd-pub");
        let hello = if v5 {
            connect_v5(&id, 0)
        } else {
            connect_v4(&id, 0)
        };
        let mut publ = Raw::handshake(addr, &hello).await?;
        for (i, topic) in topics.iter().enumerate() {
            let pkid = i as u16 + 1;
            let bytes = if v5 {
                publish_v5(topic.as_bytes(), 1, pkid, &[], b"odd")
            } else {
                publish_v4(topic.as_bytes(), 1, false, pkid, b"odd")
            };
            publ.send(&bytes).await;
            match publ.read_packet(AT_ONCE).await {
                Some((0x40, body))
                    if body[..2] == pkid.to_be_bytes() && body.get(2).is_none_or(|c| *c == 0) => {}
                other => {
                    return Err(format!(
                        "PUBLISH to {topic:?} (v5: {v5}) not acknowledged: {other:?}"
                    ));
                }
            }
        }
        for topic in topics {
            let p = sub
                .try_next_publish(ROUND_TRIP)
                .await
                .ok_or(format!("{topic:?} (v5: {v5}) not delivered"))?;
            if p.topic[..] != *topic.as_bytes() {
                return Err(format!(
                    "expected {topic:?}, got {:?}",
                    String::from_utf8_lossy(&p.topic)
                ));
            }
        }
    }
    sub.disconnect().await;
    Ok(())
}

/// A `$` topic published by a client is refused (closed, or an error reason) or at least never
/// reaches a `$SYS/#` subscriber.
async fn sys_publish_is_refused(addr: SocketAddr, v5: bool) -> Result<(), String> {
    let mut watcher = Raw::handshake(addr, &connect_v4(&uid("sys-watch"), 0)).await?;
    watcher.send(&subscribe_one(false, 1, b"$SYS/#", 0)).await;
    match watcher.read_packet(AT_ONCE).await {
        Some((0x90, _)) => {}
        other => return Err(format!("no SUBACK for $SYS/#: {other:?}")),
    }
    let id = uid("sys-pub");
    let hello = if v5 {
        connect_v5(&id, 0)
    } else {
        connect_v4(&id, 0)
    };
    let mut publ = Raw::handshake(addr, &hello).await?;
    publ.send(&publish(v5, b"$SYS/x", 1, &[], b"spoof")).await;
    let end = publ.ending(Duration::from_secs(2)).await;
    let refused = match &end.packets[..] {
        [] => end.closed,
        [(0xE0, b)] => end.closed && v5 && b.first().is_some_and(|c| *c >= 0x80),
        [(0x40, _)] => !end.closed,
        _ => false,
    };
    if !refused {
        return Err(format!(
            "unexpected answer {} (closed: {})",
            describe(&end.packets),
            end.closed
        ));
    }
    match watcher.read_packet(Duration::from_secs(1)).await {
        Some((first, _)) if first >> 4 == 3 => {
            Err("a client's $SYS/x publish was delivered".into())
        }
        _ => Ok(()),
    }
}

/// Topic names a PUBLISH must not carry, server-only packets, malformed packets, a second
/// CONNECT, oversized packets, and (MQTT 5) bad topic aliases and properties.
fn violation_cases(cases: &mut Vec<Case>, addr: SocketAddr) {
    let bad_topics: [(&str, &'static [u8], &[u8]); 6] = [
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
    for (name, topic, codes) in bad_topics {
        violation(cases, addr, &format!("PUBLISH {name}"), codes, move |v5| {
            publish(v5, topic, 1, &[], b"x")
        });
    }
    violation(
        cases,
        addr,
        "PUBLISH topic length beyond the packet",
        &[0x81],
        |v5| {
            let mut body = vec![0x00, 0x40, b'a'];
            if v5 {
                body.push(0);
            }
            packet(0x30, &body)
        },
    );
    let server_only: [(&str, u8, &[u8], &[u8]); 4] = [
        ("CONNACK", 0x20, &[0, 0], &[0, 0, 0]),
        ("SUBACK", 0x90, &[0, 1, 0], &[0, 1, 0, 0]),
        ("UNSUBACK", 0xB0, &[0, 1], &[0, 1, 0, 0]),
        ("PINGRESP", 0xD0, &[], &[]),
    ];
    for (name, first, v4, v5) in server_only {
        violation(
            cases,
            addr,
            &format!("client sends {name}"),
            &[0x82],
            move |is_v5| packet(first, if is_v5 { v5 } else { v4 }),
        );
    }
    violation(cases, addr, "reserved packet type 0", &[0x81], |_| {
        packet(0x00, &[])
    });
    cases.push(case(
        "AUTH in 3.1.1",
        after_connect(
            addr,
            false,
            0,
            packet(0xF0, &[]),
            AT_ONCE,
            V4_CLOSE.to_vec(),
        ),
    ));
    cases.push(case(
        "AUTH without an authentication method (5)",
        after_connect(
            addr,
            true,
            0,
            packet(0xF0, &[0x18, 0x00]),
            AT_ONCE,
            vec![End::Disconnect(0x82)],
        ),
    ));
    violation(cases, addr, "second CONNECT", &[0x82], |v5| {
        let id = uid("second");
        if v5 {
            connect_v5(&id, 0)
        } else {
            connect_v4(&id, 0)
        }
    });
    violation(cases, addr, "PUBLISH QoS 3", &[0x81], |v5| {
        let mut p = publish(v5, b"a/b", 1, &[], b"x");
        p[0] = 0x36;
        p
    });
    violation(cases, addr, "remaining length of 5 bytes", &[0x81], |_| {
        vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00, 0x01, b'a']
    });
    violation(cases, addr, "SUBSCRIBE with flags 0", &[0x81], |v5| {
        let mut p = subscribe_one(v5, 1, b"a/b", 0);
        p[0] = 0x80;
        p
    });
    violation(cases, addr, "empty SUBSCRIBE", &[0x82], |v5| {
        packet(0x82, if v5 { &[0, 1, 0] } else { &[0, 1] })
    });
    violation(
        cases,
        addr,
        "PUBLISH bigger than the maximum packet size",
        &[0x95],
        |v5| publish(v5, b"big/x", 0, &[], &[0u8; 2000]),
    );
    violation(cases, addr, "header announcing 200 MB", &[0x95], |_| {
        let mut p = vec![0x30];
        put_len(&mut p, 200 << 20);
        p.extend_from_slice(b"\x00\x05big/x");
        p
    });
    let v5_only: [(&str, Vec<u8>, &[u8]); 5] = [
        (
            "topic alias 0",
            publish_v5(b"a/b", 1, 1, &[0x23, 0, 0], b"x"),
            &[0x94],
        ),
        (
            "topic alias above the maximum",
            publish_v5(b"a/b", 1, 1, &[0x23, 0, ALIAS_MAX as u8 + 1], b"x"),
            &[0x94],
        ),
        (
            "unknown topic alias",
            publish_v5(b"", 1, 1, &[0x23, 0, 3], b"x"),
            &[0x82, 0x94],
        ),
        (
            "topic alias given twice",
            publish_v5(b"a/b", 1, 1, &[0x23, 0, 1, 0x23, 0, 1], b"x"),
            &[0x82],
        ),
        (
            "property block overrunning the packet",
            {
                // Property length 20, but only two bytes follow.
                packet(
                    0x32,
                    &[0x00, 0x03, b'a', b'/', b'b', 0x00, 0x01, 20, 0x23, 0x00],
                )
            },
            &[0x81],
        ),
    ];
    for (name, bytes, codes) in v5_only {
        let allowed = codes.iter().map(|&c| End::Disconnect(c)).collect();
        cases.push(case(
            format!("PUBLISH with {name} (5)"),
            after_connect(addr, true, 0, bytes, AT_ONCE, allowed),
        ));
    }
    cases.push(case(
        "$SYS/x publish (3.1.1)",
        sys_publish_is_refused(addr, false),
    ));
    cases.push(case(
        "$SYS/x publish (5)",
        sys_publish_is_refused(addr, true),
    ));
}

/// Packets cut short, then silence: the keep-alive (1 s) ends the connection; before CONNECT
/// the connect timeout does.
fn truncated_cases(cases: &mut Vec<Case>, addr: SocketAddr) {
    let truncated: [(&str, fn(bool) -> Vec<u8>); 3] = [
        ("PUBLISH announcing 100 bytes, 12 sent", |v5| {
            let mut p = publish(v5, b"t/x", 0, &[], &[0u8; 90]);
            p.truncate(12);
            p
        }),
        ("remaining length cut short", |_| vec![0x30, 0x80]),
        ("a lone first byte", |_| vec![0x82]),
    ];
    for (name, bytes) in truncated {
        cases.push(case(
            format!("{name} (3.1.1)"),
            after_connect(addr, false, 1, bytes(false), BY_TIMER, V4_CLOSE.to_vec()),
        ));
        cases.push(case(
            format!("{name} (5)"),
            after_connect(
                addr,
                true,
                1,
                bytes(true),
                BY_TIMER,
                vec![End::Silent, End::Disconnect(0x8D)],
            ),
        ));
    }
    cases.push(case("CONNECT cut short", async move {
        let mut raw = Raw::open(addr).await;
        let mut hello = connect_v4(&uid("cut"), 0);
        hello.truncate(8);
        raw.send(&hello).await;
        expect_end(&mut raw, BY_TIMER, &[End::Silent]).await
    }));
}

/// Connects a 3.1.1 subscriber and publisher and checks one QoS 1 message gets through.
async fn round_trip_v4(addr: SocketAddr, tag: &str) -> Result<(), String> {
    use rumqttc::{QoS, SubscribeReasonCode};
    let topic = format!("rt/{tag}");
    let (mut sub, _) = V4::connect(v4_options(addr, &uid(&format!("{tag}-sub")))).await;
    let ack = sub.subscribe(&topic, QoS::AtLeastOnce).await;
    if ack.return_codes != [SubscribeReasonCode::Success(QoS::AtLeastOnce)] {
        return Err(format!(
            "{tag}: subscription refused: {:?}",
            ack.return_codes
        ));
    }
    let (publ, _) = V4::connect(v4_options(addr, &uid(&format!("{tag}-pub")))).await;
    publ.client
        .publish(&topic, QoS::AtLeastOnce, false, tag.as_bytes().to_vec())
        .await
        .map_err(|e| e.to_string())?;
    let p = sub
        .try_next_publish(ROUND_TRIP)
        .await
        .ok_or(format!("{tag}: no round trip within {ROUND_TRIP:?}"))?;
    if p.topic != topic || p.payload[..] != *tag.as_bytes() {
        return Err(format!("{tag}: wrong message {p:?}"));
    }
    sub.disconnect().await;
    publ.disconnect().await;
    Ok(())
}

/// The same with MQTT 5 clients.
async fn round_trip_v5(addr: SocketAddr, tag: &str) -> Result<(), String> {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode;
    let topic = format!("rt/{tag}");
    let (mut sub, _) = V5::connect(v5_options(addr, &uid(&format!("{tag}-sub")))).await;
    sub.client
        .subscribe(&topic, QoS::AtLeastOnce)
        .await
        .map_err(|e| e.to_string())?;
    let ack = sub.suback().await;
    if ack.return_codes != [SubscribeReasonCode::Success(QoS::AtLeastOnce)] {
        return Err(format!(
            "{tag}: subscription refused: {:?}",
            ack.return_codes
        ));
    }
    let (publ, _) = V5::connect(v5_options(addr, &uid(&format!("{tag}-pub")))).await;
    publ.client
        .publish(&topic, QoS::AtLeastOnce, false, tag.as_bytes().to_vec())
        .await
        .map_err(|e| e.to_string())?;
    let p = sub
        .try_next_publish(ROUND_TRIP)
        .await
        .ok_or(format!("{tag}: no round trip within {ROUND_TRIP:?}"))?;
    if p.topic[..] != *topic.as_bytes() || p.payload[..] != *tag.as_bytes() {
        return Err(format!("{tag}: wrong message {p:?}"));
    }
    sub.disconnect().await;
    publ.disconnect().await;
    Ok(())
}

/// Sends a valid CONNECT one byte every 250 ms: the connect timeout (1 s) counts from the
/// socket's opening, not from the last byte, so the server closes before CONNECT completes.
async fn drip_connect(addr: SocketAddr) -> Result<(), String> {
    let mut raw = Raw::open(addr).await;
    let hello = connect_v4(&uid("drip"), 0);
    for byte in &hello {
        raw.send(std::slice::from_ref(byte)).await;
        if raw.closed_within(Duration::from_millis(250)).await {
            return Ok(());
        }
    }
    let end = raw.ending(AT_ONCE).await;
    Err(format!(
        "a CONNECT dripped over {} ms was served: {}",
        hello.len() * 250,
        describe(&end.packets)
    ))
}

/// 50 sockets that send nothing and a few that drip a CONNECT, while clients keep working.
async fn slowloris(addr: SocketAddr) -> Result<(), String> {
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(Raw::open(addr).await);
    }
    let drips: Vec<_> = (0..3).map(|_| tokio::spawn(drip_connect(addr))).collect();
    round_trip_v4(addr, "during-slowloris").await?;
    for (i, raw) in idle.iter_mut().enumerate() {
        expect_end(raw, BY_TIMER, &[End::Silent])
            .await
            .map_err(|e| format!("idle socket {i}: {e}"))?;
    }
    for d in drips {
        d.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// One client sends 5,000 QoS 0 publishes as fast as it can while a subscriber to them never
/// reads; meanwhile another client's round trip completes, and afterwards the flooder's
/// PINGREQ is answered (its connection was served, not dropped).
async fn flood(addr: SocketAddr) -> Result<(), String> {
    let mut lazy = Raw::handshake(addr, &connect_v4(&uid("flood-lazy"), 0)).await?;
    lazy.send(&subscribe_one(false, 1, b"flood/#", 0)).await;
    match lazy.read_packet(AT_ONCE).await {
        Some((0x90, _)) => {}
        other => return Err(format!("no SUBACK for the lazy subscriber: {other:?}")),
    }
    let mut flooder = Raw::handshake(addr, &connect_v4(&uid("flooder"), 0)).await?;
    let one = publish_v4(b"flood/x", 0, false, 0, &[b'f'; 100]);
    let burst: Vec<u8> = one.iter().copied().cycle().take(one.len() * 5000).collect();
    flooder.send(&burst[..one.len() * 1000]).await;
    let rest = burst[one.len() * 1000..].to_vec();
    let flooding = tokio::spawn(async move {
        flooder.send(&rest).await;
        flooder
    });
    round_trip_v4(addr, "during-flood").await?;
    let mut flooder = flooding.await.map_err(|e| e.to_string())?;
    flooder.send(&[0xC0, 0x00]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match flooder.read_packet(left).await {
            Some((0xD0, _)) => break,
            Some(_) => continue,
            None => return Err("the flooder's PINGREQ was not answered within 30 s".into()),
        }
    }
    drop(lazy);
    Ok(())
}

/// Every panic in the process (gateway tasks included), as "location: message".
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let at = info.location().map(|l| l.to_string()).unwrap_or_default();
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        if let Ok(mut all) = PANICS.lock() {
            all.push(format!("{at}: {msg}"));
        }
        default(info);
    }));
}

fn all_cases(addr: SocketAddr) -> Vec<Case> {
    let mut cases = Vec::new();
    first_packet_cases(&mut cases, addr);
    client_id_cases(&mut cases, addr);
    cases.push(case(
        "odd topics are delivered",
        odd_topics_are_delivered(addr),
    ));
    violation_cases(&mut cases, addr);
    truncated_cases(&mut cases, addr);
    cases.push(case("slowloris", slowloris(addr)));
    cases.push(case("flood", flood(addr)));
    cases
}

/// Runs every case at once; returns the failures, naming the case.
async fn run_all(cases: Vec<Case>) -> Vec<String> {
    let mut set = JoinSet::new();
    let mut names = HashMap::new();
    for c in cases {
        let handle = set.spawn(c.run);
        names.insert(handle.id(), c.name);
    }
    let mut failures = Vec::new();
    let deadline = tokio::time::Instant::now() + ALL_CASES;
    loop {
        match tokio::time::timeout_at(deadline, set.join_next_with_id()).await {
            Ok(None) => break,
            Ok(Some(Ok((id, Ok(()))))) => {
                names.remove(&id);
            }
            Ok(Some(Ok((id, Err(e))))) => {
                failures.push(format!("{}: {e}", names.remove(&id).unwrap_or_default()))
            }
            Ok(Some(Err(e))) => failures.push(format!(
                "{}: {e}",
                names.remove(&e.id()).unwrap_or_default()
            )),
            Err(_) => {
                set.abort_all();
                failures.extend(
                    names
                        .values()
                        .map(|n| format!("{n}: did not finish within {ALL_CASES:?}")),
                );
                break;
            }
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gateway_survives_every_class_of_hostile_input() {
    use rumqttc::QoS;
    record_panics();
    let gw = GatewayHarness::new()
        .with_config(|c| {
            c.mqtt.max_packet_size = MAX_PACKET;
            c.mqtt.connect_timeout = Duration::from_secs(1);
            c.mqtt.topic_alias_maximum = ALIAS_MAX;
            // Deep topics are valid MQTT; the default limit (128 levels) would refuse the
            // 200-level case.
            c.mqtt.max_topic_levels = 256;
        })
        .start()
        .await;
    let addr = gw.mqtt_addr();

    // Clients connected before the attacks, holding a subscription throughout.
    let (mut keep4, _) = V4::connect(v4_options(addr, "keeper-v4")).await;
    keep4.subscribe("keep/#", QoS::AtLeastOnce).await;
    let (mut keep5, _) = V5::connect(v5_options(addr, "keeper-v5")).await;
    keep5
        .client
        .subscribe("keep/#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await
        .expect("queued");
    keep5.suback().await;

    let cases = all_cases(addr);
    let total = cases.len();
    let mut failures = run_all(cases).await;

    // (b) The clients connected before the attacks still receive.
    let (publ, _) = V4::connect(v4_options(addr, "after-attacks")).await;
    publ.client
        .publish("keep/after", QoS::AtLeastOnce, false, "still here")
        .await
        .expect("queued");
    match keep4.try_next_publish(ROUND_TRIP).await {
        Some(p) if p.topic == "keep/after" && p.payload[..] == b"still here"[..] => {}
        other => failures.push(format!(
            "3.1.1 client connected before the attacks: got {other:?}"
        )),
    }
    match keep5.try_next_publish(ROUND_TRIP).await {
        Some(p) if p.topic[..] == b"keep/after"[..] && p.payload[..] == b"still here"[..] => {}
        other => failures.push(format!(
            "MQTT 5 client connected before the attacks: got {other:?}"
        )),
    }
    // (a) Fresh clients connect, subscribe and get a round trip.
    if let Err(e) = round_trip_v4(addr, "fresh-v4").await {
        failures.push(e);
    }
    if let Err(e) = round_trip_v5(addr, "fresh-v5").await {
        failures.push(e);
    }
    // Nothing panicked, apart from what the codec's guard caught inside rumqttc.
    let panics = PANICS.lock().map(|p| p.clone()).unwrap_or_default();
    let caught = gateway::mqtt::codec::MqttCodec::panics_caught();
    for p in panics.iter().filter(|p| !p.contains("rumqttc")) {
        failures.push(format!("panic in the process: {p}"));
    }
    if caught > 0 {
        eprintln!("note: the codec guard caught {caught} panic(s) inside rumqttc");
    }
    publ.disconnect().await;
    keep4.disconnect().await;
    keep5.disconnect().await;
    gw.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
