//! How a hostile case is written and judged: a named future, unique client ids, and the ways
//! a server may end a connection (silently, CONNACK with a code, MQTT 5 DISCONNECT with a
//! reason), checked on a raw socket.

use super::AT_ONCE;
use e2e_tests::raw::{Raw, connect_v4, connect_v5, publish_v4, publish_v5};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// One named case: `Ok` or a description of what went wrong.
pub struct Case {
    pub name: String,
    pub run: Pin<Box<dyn Future<Output = Result<(), String>> + Send>>,
}

pub fn case(
    name: impl Into<String>,
    run: impl Future<Output = Result<(), String>> + Send + 'static,
) -> Case {
    Case {
        name: name.into(),
        run: Box::pin(run),
    }
}

/// A client id no other case uses (two connections with one id would take each other over).
pub fn uid(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("h{}-{tag}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A clean-start CONNECT in either version.
pub fn hello(v5: bool, id: &str, keep_alive: u16) -> Vec<u8> {
    if v5 {
        connect_v5(id, keep_alive)
    } else {
        connect_v4(id, keep_alive)
    }
}

/// A PUBLISH in either layout (packet id 1), with MQTT 5 properties `props` (ignored for
/// 3.1.1).
pub fn publish(v5: bool, topic: &[u8], qos: u8, props: &[u8], payload: &[u8]) -> Vec<u8> {
    if v5 {
        publish_v5(topic, qos, 1, props, payload)
    } else {
        publish_v4(topic, qos, false, 1, payload)
    }
}

/// An acceptable way for the server to end a connection.
#[derive(Debug, Clone, Copy)]
pub enum End {
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
pub const V4_CLOSE: &[End] = &[End::Silent];

/// MQTT 5 DISCONNECT with any of `codes`.
pub fn disconnect(codes: &[u8]) -> Vec<End> {
    codes.iter().map(|&c| End::Disconnect(c)).collect()
}

/// Packets for a failure message: type byte and the first bytes of the body.
pub fn describe(packets: &[(u8, Vec<u8>)]) -> String {
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
pub async fn expect_end(raw: &mut Raw, wait: Duration, allowed: &[End]) -> Result<(), String> {
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
/// must end the connection as `allowed` says and never answer the CONNECT that follows (which
/// a server that skipped the bad bytes, or kept going after refusing them, would do).
pub async fn before_connect(
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

/// Connects, sends `hostile`, and expects the end `allowed` says within `wait`. With
/// `keep_alive` 0 no timer runs, so only the offence can end the connection.
pub async fn after_connect(
    addr: SocketAddr,
    v5: bool,
    keep_alive: u16,
    hostile: Vec<u8>,
    wait: Duration,
    allowed: Vec<End>,
) -> Result<(), String> {
    let mut raw = Raw::handshake(addr, &hello(v5, &uid("attacker"), keep_alive)).await?;
    raw.send(&hostile).await;
    expect_end(&mut raw, wait, &allowed).await
}

/// Adds a violation after CONNECT in both versions: 3.1.1 must close, MQTT 5 must send
/// DISCONNECT with one of `codes` and close. `bytes(v5)` builds the offending bytes.
pub fn violation(
    cases: &mut Vec<Case>,
    addr: SocketAddr,
    name: &str,
    codes: &[u8],
    bytes: impl Fn(bool) -> Vec<u8>,
) {
    let v4 = after_connect(addr, false, 0, bytes(false), AT_ONCE, V4_CLOSE.to_vec());
    cases.push(case(format!("{name} (3.1.1)"), v4));
    let v5 = after_connect(addr, true, 0, bytes(true), AT_ONCE, disconnect(codes));
    cases.push(case(format!("{name} (5)"), v5));
}
