//! The protocol core driven by hand: bytes in, bytes and events out, time passed in.

use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;

use super::super::codec::{self, Out, bytes};
use super::super::{Event, LinkSpec, Publish};
use super::{Core, Refused};
use crate::scenario::{Protocol, Transport};

fn spec(v5: bool, inflight: u16, queue: usize) -> LinkSpec {
    LinkSpec {
        client_id: "dev-1".into(),
        broker: crate::scenario::Broker {
            transport: Transport::Tcp,
            host: "127.0.0.1".into(),
            port: 1883,
            path: String::new(),
        },
        tls: None,
        protocol: if v5 { Protocol::V5 } else { Protocol::V311 },
        credentials: None,
        keep_alive: Duration::from_secs(30),
        clean_session: true,
        session_expiry: None,
        inflight,
        queue,
        will: None,
    }
}

fn msg(qos: u8) -> Publish {
    Publish {
        topic: "t".into(),
        qos,
        retain: false,
        payload: bytes("x"),
        props: None,
    }
}

/// What the broker would read: the names of the packets the core wrote (all marked written).
fn written(core: &mut Core, now: Instant) -> Vec<String> {
    let mut buf = BytesMut::from(core.to_write());
    let n = buf.len();
    assert!(core.wrote(n, now).is_ok());
    let mut names = Vec::new();
    while !buf.is_empty() {
        let kind = buf[0] >> 4;
        names.push(
            match kind {
                1 => "CONNECT",
                3 => "PUBLISH",
                4 => "PUBACK",
                5 => "PUBREC",
                6 => "PUBREL",
                7 => "PUBCOMP",
                8 => "SUBSCRIBE",
                12 => "PINGREQ",
                14 => "DISCONNECT",
                _ => "?",
            }
            .to_owned(),
        );
        // Skip the packet: fixed header byte, remaining length (varint), body.
        let (mut len, mut shift, mut i) = (0usize, 0, 1);
        loop {
            let b = buf[i];
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        let _ = buf.split_to(i + len);
    }
    names
}

/// Hands the core what the broker sent; the kind of the error that ended the connection.
fn feed(core: &mut Core, packets: &[&[u8]], now: Instant) -> Result<(), String> {
    let mut buf = BytesMut::new();
    for p in packets {
        buf.extend_from_slice(p);
    }
    core.receive(&mut buf, now).map_err(|e| e.kind.to_owned())
}

fn events(core: &mut Core) -> Vec<String> {
    std::iter::from_fn(|| core.pop_event())
        .map(|e| match e {
            Event::Received(m) => format!("Received({})", m.topic),
            other => format!("{other:?}"),
        })
        .collect()
}

const CONNACK_OK: &[u8] = &[0x20, 0x02, 0x00, 0x00];

fn connected(v5: bool, inflight: u16, queue: usize, now: Instant) -> Core {
    let mut core = Core::new(&spec(v5, inflight, queue), now).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(written(&mut core, now), ["CONNECT"]);
    let connack: &[u8] = if v5 {
        &[0x20, 0x03, 0x00, 0x00, 0x00]
    } else {
        CONNACK_OK
    };
    assert_eq!(feed(&mut core, &[connack], now), Ok(()));
    assert_eq!(events(&mut core), ["ConnAck"]);
    core
}

#[test]
fn nothing_is_accepted_before_connack_and_a_refusal_is_named() {
    let now = Instant::now();
    let mut core = Core::new(&spec(false, 4, 4), now).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(core.publish(msg(0), now), Err(Refused::QueueFull));
    assert_eq!(
        feed(&mut core, &[&[0x20, 0x02, 0x00, 0x05]], now),
        Err("connection_refused_by_broker".into())
    );
    let mut core = Core::new(&spec(false, 4, 4), now).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        feed(&mut core, &[&[0xD0, 0x00]], now),
        Err("unexpected_packet".into()),
        "PINGRESP before CONNACK"
    );
}

#[test]
fn the_window_holds_publishes_back_in_order_and_the_queue_refuses_beyond() {
    let now = Instant::now();
    let mut core = connected(false, 2, 2, now);
    for _ in 0..2 {
        assert_eq!(core.publish(msg(1), now), Ok(()));
    }
    // The window is full: the next two wait (QoS 0 behind QoS 1), the fifth is refused.
    assert_eq!(core.publish(msg(1), now), Ok(()));
    assert_eq!(core.publish(msg(0), now), Ok(()));
    assert_eq!(core.publish(msg(0), now), Err(Refused::QueueFull));
    assert_eq!(events(&mut core), ["Sent(1)", "Sent(2)"]);
    assert_eq!(written(&mut core, now), ["PUBLISH", "PUBLISH"]);
    // PUBACK 2 frees one slot: the QoS 1 publish goes with id 3, then the QoS 0 one.
    assert_eq!(feed(&mut core, &[&[0x40, 0x02, 0x00, 0x02]], now), Ok(()));
    assert_eq!(
        events(&mut core),
        ["Acked { pkid: 2, ok: true }", "Sent(3)", "Sent(0)"]
    );
    assert_eq!(
        feed(&mut core, &[&[0x40, 0x02, 0x00, 0x02]], now),
        Err("unsolicited_ack".into()),
        "a second PUBACK for a finished id"
    );
}

#[test]
fn qos2_out_and_in_follow_the_four_packet_exchange() {
    let now = Instant::now();
    let mut core = connected(true, 4, 4, now);
    assert_eq!(core.publish(msg(2), now), Ok(()));
    assert_eq!(written(&mut core, now), ["PUBLISH"]);
    // PUBREC (MQTT 5, reason 0 implied) → PUBREL; PUBCOMP finishes it.
    assert_eq!(feed(&mut core, &[&[0x50, 0x02, 0x00, 0x01]], now), Ok(()));
    assert_eq!(written(&mut core, now), ["PUBREL"]);
    assert_eq!(feed(&mut core, &[&[0x70, 0x02, 0x00, 0x01]], now), Ok(()));
    assert_eq!(
        events(&mut core),
        ["Sent(1)", "Acked { pkid: 1, ok: true }"]
    );
    // A refusing PUBREC (0x87 not authorized) finishes a publish as failed.
    assert_eq!(core.publish(msg(2), now), Ok(()));
    assert_eq!(
        feed(&mut core, &[&[0x50, 0x03, 0x00, 0x02, 0x87]], now),
        Ok(())
    );
    assert_eq!(
        events(&mut core),
        ["Sent(2)", "Acked { pkid: 2, ok: false }"]
    );
    // An incoming QoS 2 message is delivered once, answered with PUBREC, then PUBCOMP.
    let mut publish = BytesMut::new();
    let incoming = Publish {
        topic: "cmd/dev-1".into(),
        ..msg(2)
    };
    assert!(codec::encode(true, Out::Publish(9, &incoming), &mut publish).is_ok());
    let _ = written(&mut core, now);
    assert_eq!(
        feed(&mut core, &[&publish, &[0x62, 0x02, 0x00, 0x09]], now),
        Ok(())
    );
    assert_eq!(events(&mut core), ["Received(cmd/dev-1)"]);
    assert_eq!(written(&mut core, now), ["PUBREC", "PUBCOMP"]);
}

#[test]
fn keep_alive_pings_when_quiet_and_fails_without_an_answer() {
    let t0 = Instant::now();
    let ka = Duration::from_secs(30);
    let mut core = connected(false, 4, 4, t0);
    assert_eq!(core.deadline(), Some(t0 + ka));
    assert!(core.on_timer(t0 + ka).is_ok());
    assert_eq!(written(&mut core, t0 + ka), ["PINGREQ"]);
    // PINGRESP: the next ping is due a keep-alive after the last one.
    assert_eq!(feed(&mut core, &[&[0xD0, 0x00]], t0 + ka), Ok(()));
    assert_eq!(core.deadline(), Some(t0 + 2 * ka));
    assert!(core.on_timer(t0 + 2 * ka).is_ok());
    // No answer for a whole keep-alive, even with publishes going out meanwhile.
    assert_eq!(core.publish(msg(0), t0 + 2 * ka + ka / 2), Ok(()));
    assert_eq!(core.deadline(), Some(t0 + 3 * ka));
    let e = core.on_timer(t0 + 3 * ka).err().map(|e| e.kind);
    assert_eq!(e, Some("no_pingresp"));
}

#[test]
fn disconnect_is_reported_once_written_and_nothing_is_accepted_after() {
    let now = Instant::now();
    let mut core = connected(false, 4, 4, now);
    assert!(core.disconnect(now));
    assert!(!core.disconnect(now));
    assert_eq!(core.publish(msg(0), now), Err(Refused::QueueFull));
    assert_eq!(written(&mut core, now), ["DISCONNECT"]);
    core.flushed();
    assert_eq!(events(&mut core), ["Disconnected"]);
    assert_eq!(core.deadline(), None);
}

#[test]
fn a_burst_leaves_no_large_buffer_behind() {
    let now = Instant::now();
    let mut core = connected(false, 1000, 1000, now);
    let big = Publish {
        payload: bytes(&"x".repeat(1000)),
        ..msg(0)
    };
    for _ in 0..200 {
        assert_eq!(core.publish(big.clone(), now), Ok(()));
    }
    assert!(core.to_write().len() > 64 * 1024);
    while !core.to_write().is_empty() {
        let n = core.to_write().len();
        assert!(core.wrote(n, now).is_ok());
    }
    assert_eq!(events(&mut core).len(), 200);
    assert!(
        core.out.capacity() <= super::KEEP_EMPTY,
        "{}",
        core.out.capacity()
    );
    assert!(core.events.capacity() <= super::KEEP_EVENTS);
    assert_eq!(core.waiting.capacity(), 0);
    let too_big = Publish {
        payload: bytes(&"x".repeat(super::MAX_PACKET)),
        ..msg(0)
    };
    assert_eq!(core.publish(too_big, now), Err(Refused::TooLarge));
}
