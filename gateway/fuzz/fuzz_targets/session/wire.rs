//! The client side of the wire: hand-made client packets (CONNECT, SUBSCRIBE, PUBLISH,
//! acknowledgements) and a strict reader of what the server sends.
//!
//! The reader is independent of the gateway's codec and of rumqttc, so it judges the
//! server's output against the MQTT specifications, not against the code under test. It
//! panics (and so makes libFuzzer report the input) on anything a correct server never sends.

use std::sync::LazyLock;

/// Set `SESSION_TRACE` (to anything) to print every packet each side sends, e.g. when
/// replaying a crash.
static TRACE: LazyLock<bool> = LazyLock::new(|| std::env::var_os("SESSION_TRACE").is_some());

/// Prints bytes a client sent, when tracing.
pub fn trace_sent(who: &str, bytes: &[u8]) {
    if *TRACE {
        eprintln!("{who} -> {bytes:02x?}");
    }
}

/// Splits client bytes into whole packets by their fixed headers; whatever does not parse
/// as one (an invalid length, a cut-off packet) is the last piece.
pub fn split_packets(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    while !bytes.is_empty() {
        let whole = match varint(&bytes[1..]) {
            Ok(Some((len, used))) => (1 + used + len <= bytes.len()).then_some(1 + used + len),
            _ => None,
        };
        let (piece, rest) = bytes.split_at(whole.unwrap_or(bytes.len()));
        pieces.push(piece);
        bytes = rest;
    }
    pieces
}

/// Whether client bytes hold a PUBLISH with the retain flag, i.e. may leave a retained
/// message behind.
pub fn may_retain(bytes: &[u8]) -> bool {
    split_packets(bytes).iter().any(|p| p[0] & 0xF1 == 0x31)
}

/// Appends an MQTT variable byte integer.
pub fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

/// Appends a length-prefixed string or binary field.
pub fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s[..usize::from(len)]);
}

/// A whole packet: first byte, remaining length, body.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    put_varint(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// What a hand-made CONNECT asks for.
pub struct ConnectOpts<'a> {
    /// MQTT 5 (else 3.1.1).
    pub v5: bool,
    /// The client id.
    pub client_id: &'a str,
    /// Clean session (3.1.1) or clean start (5).
    pub clean: bool,
    /// Keep-alive in seconds.
    pub keep_alive: u16,
    /// Whether a will (QoS 1, to `fuzz/will`) is set; MQTT 5 adds a 5 s will delay.
    pub will: bool,
    /// MQTT 5 session expiry in seconds (0: not sent).
    pub expiry: u32,
    /// MQTT 5 receive maximum (how many QoS 1/2 deliveries may be unacknowledged).
    pub receive_max: Option<u16>,
    /// MQTT 5 maximum packet size the client accepts.
    pub max_packet: Option<u32>,
}

/// Encodes a CONNECT.
pub fn connect(o: &ConnectOpts<'_>) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, b"MQTT");
    body.push(if o.v5 { 5 } else { 4 });
    let mut flags = 0u8;
    if o.clean {
        flags |= 0x02;
    }
    if o.will {
        flags |= 0x04 | 0x08; // will, will QoS 1
    }
    body.push(flags);
    body.extend_from_slice(&o.keep_alive.to_be_bytes());
    if o.v5 {
        let mut props = Vec::new();
        if o.expiry > 0 {
            props.push(0x11);
            props.extend_from_slice(&o.expiry.to_be_bytes());
        }
        if let Some(rm) = o.receive_max {
            props.push(0x21);
            props.extend_from_slice(&rm.to_be_bytes());
        }
        if let Some(mp) = o.max_packet {
            props.push(0x27);
            props.extend_from_slice(&mp.to_be_bytes());
        }
        put_varint(&mut body, props.len());
        body.extend_from_slice(&props);
    }
    put_str(&mut body, o.client_id.as_bytes());
    if o.will {
        if o.v5 {
            body.extend_from_slice(&[5, 0x18, 0, 0, 0, 5]); // will delay interval 5 s
        }
        put_str(&mut body, b"fuzz/will");
        put_str(&mut body, b"gone");
    }
    packet(0x10, &body)
}

/// Encodes a SUBSCRIBE of one filter with the given options byte (QoS in the low bits).
pub fn subscribe(v5: bool, pkid: u16, filter: &str, options: u8) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if v5 {
        body.push(0); // no properties
    }
    put_str(&mut body, filter.as_bytes());
    body.push(options);
    packet(0x82, &body)
}

/// Encodes a PUBLISH (`pkid` is ignored at QoS 0).
pub fn publish(v5: bool, qos: u8, pkid: u16, topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    if v5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1), &body)
}

/// Encodes a PUBACK, PUBREC, PUBREL or PUBCOMP (`first` is its first byte).
pub fn ack(first: u8, pkid: u16) -> [u8; 4] {
    let [hi, lo] = pkid.to_be_bytes();
    [first, 2, hi, lo]
}

/// A normal DISCONNECT (both versions).
pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// PUBLISH, PUBACK, ... as the four high bits of the first byte.
pub mod kind {
    /// CONNACK.
    pub const CONNACK: u8 = 2;
    /// PUBLISH.
    pub const PUBLISH: u8 = 3;
    /// PUBACK.
    pub const PUBACK: u8 = 4;
    /// PUBREC.
    pub const PUBREC: u8 = 5;
    /// PUBREL.
    pub const PUBREL: u8 = 6;
    /// PUBCOMP.
    pub const PUBCOMP: u8 = 7;
    /// SUBACK.
    pub const SUBACK: u8 = 9;
    /// UNSUBACK.
    pub const UNSUBACK: u8 = 11;
    /// PINGRESP.
    pub const PINGRESP: u8 = 13;
    /// DISCONNECT.
    pub const DISCONNECT: u8 = 14;
}

/// One packet the server sent.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The first byte (type and flags).
    pub first: u8,
    /// Everything after the remaining length.
    pub body: Vec<u8>,
}

impl Frame {
    /// The packet type.
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }

    /// The packet identifier at the start of the body (acks, SUBACK, QoS>0 PUBLISH after
    /// the topic is handled by [`Frame::publish`]).
    pub fn pkid(&self) -> u16 {
        match self.body.as_slice() {
            [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
            _ => 0,
        }
    }

    /// Topic, QoS, packet id and payload of a PUBLISH (checked by [`ServerStream`]).
    pub fn publish(&self, v5: bool) -> Option<Delivery<'_>> {
        if self.kind() != kind::PUBLISH {
            return None;
        }
        let qos = (self.first >> 1) & 3;
        let b = &self.body;
        let tlen = usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?]));
        let topic = b.get(2..2 + tlen)?;
        let mut at = 2 + tlen;
        let mut pkid = 0;
        if qos > 0 {
            pkid = u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]);
            at += 2;
        }
        if v5 {
            let (plen, used) = varint(b.get(at..)?).ok()??;
            at += used + plen;
        }
        Some(Delivery {
            topic,
            qos,
            pkid,
            payload: b.get(at..)?,
        })
    }
}

/// A PUBLISH the server sent, borrowed from its [`Frame`].
pub struct Delivery<'a> {
    /// Topic name.
    pub topic: &'a [u8],
    /// QoS.
    pub qos: u8,
    /// Packet id (0 at QoS 0).
    pub pkid: u16,
    /// Payload.
    pub payload: &'a [u8],
}

/// Reads a variable byte integer: `Ok(None)` when more bytes are needed, `Ok(Some((value,
/// bytes used)))`, or an error when it runs past four bytes.
fn varint(b: &[u8]) -> Result<Option<(usize, usize)>, &'static str> {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&byte) = b.get(i) else {
            return Ok(None);
        };
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Err("variable byte integer longer than four bytes")
}

/// The bytes a server sent on one connection, split into packets and checked one by one.
pub struct ServerStream {
    who: &'static str,
    v5: bool,
    max_packet: Option<u32>,
    buf: Vec<u8>,
    packets: usize,
    disconnected: bool,
    /// CONNACK's session-present flag, once the CONNACK has arrived.
    pub session_present: Option<bool>,
}

impl ServerStream {
    /// A reader for the client `who` (in messages), connected with this version and maximum
    /// packet size.
    pub fn new(who: &'static str, v5: bool, max_packet: Option<u32>) -> ServerStream {
        ServerStream {
            who,
            v5,
            max_packet,
            buf: Vec::new(),
            packets: 0,
            disconnected: false,
            session_present: None,
        }
    }

    /// The client's name, for messages.
    pub fn who(&self) -> &'static str {
        self.who
    }

    /// Takes more bytes and returns the packets they complete. Panics on a packet no correct
    /// server sends.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let who = self.who;
        self.buf.extend_from_slice(bytes);
        let mut frames = Vec::new();
        let mut at = 0;
        while let Some(rest) = self.buf.get(at + 1..) {
            let (len, used) = match varint(rest) {
                Ok(Some(v)) => v,
                Ok(None) => break,
                Err(e) => panic!("{who}: server sent a bad remaining length: {e}"),
            };
            let end = at + 1 + used + len;
            if self.buf.len() < end {
                break;
            }
            let frame = Frame {
                first: self.buf[at],
                body: self.buf[at + 1 + used..end].to_vec(),
            };
            if *TRACE {
                eprintln!("{who} <- {frame:02x?}");
            }
            if let Some(max) = self.max_packet {
                assert!(
                    end - at <= max as usize,
                    "{who}: server sent a {} byte packet to a client whose maximum is {max}: {frame:02x?}",
                    end - at
                );
            }
            self.check(&frame);
            frames.push(frame);
            at = end;
        }
        self.buf.drain(..at);
        frames
    }

    /// Panics if the stream stopped inside a packet or never carried a CONNACK.
    pub fn finish(&self) {
        let who = self.who;
        assert!(
            self.buf.is_empty(),
            "{who}: server stream ended inside a packet: {:02x?}",
            self.buf
        );
        assert!(
            self.packets > 0,
            "{who}: server closed without sending CONNACK"
        );
    }

    fn check(&mut self, f: &Frame) {
        let who = self.who;
        let v5 = self.v5;
        let flags = f.first & 0x0F;
        let len = f.body.len();
        assert!(
            !self.disconnected,
            "{who}: server sent a packet after DISCONNECT: {f:02x?}"
        );
        self.packets += 1;
        if self.packets == 1 {
            assert!(
                f.kind() == kind::CONNACK
                    && f.first & 0x0F == 0
                    && len >= 2
                    && f.body[0] <= 1
                    && f.body[1] == 0,
                "{who}: the first packet is not a successful CONNACK: {f:02x?}"
            );
            assert!(
                v5 || len == 2,
                "{who}: 3.1.1 CONNACK with extra bytes: {f:02x?}"
            );
            self.session_present = Some(f.body[0] == 1);
            return;
        }
        match f.kind() {
            kind::PUBLISH => {
                let qos = (flags >> 1) & 3;
                assert!(qos != 3, "{who}: PUBLISH with QoS 3: {f:02x?}");
                assert!(
                    qos > 0 || flags & 0x08 == 0,
                    "{who}: QoS 0 PUBLISH with DUP: {f:02x?}"
                );
                let Some(d) = f.publish(v5) else {
                    panic!("{who}: PUBLISH too short for its own fields: {f:02x?}");
                };
                assert!(
                    !d.topic.is_empty() && std::str::from_utf8(d.topic).is_ok(),
                    "{who}: PUBLISH without a valid topic name (no alias was allowed): {f:02x?}"
                );
                assert!(
                    qos == 0 || d.pkid != 0,
                    "{who}: PUBLISH with packet id 0: {f:02x?}"
                );
            }
            kind::PUBACK | kind::PUBREC | kind::PUBREL | kind::PUBCOMP => {
                let want = if f.kind() == kind::PUBREL { 2 } else { 0 };
                assert!(
                    flags == want,
                    "{who}: acknowledgement with wrong flags: {f:02x?}"
                );
                assert!(
                    len >= 2 && (v5 || len == 2),
                    "{who}: bad ack length: {f:02x?}"
                );
                assert!(
                    f.pkid() != 0,
                    "{who}: acknowledgement of packet id 0: {f:02x?}"
                );
            }
            kind::SUBACK => {
                assert!(flags == 0 && len >= 3, "{who}: bad SUBACK: {f:02x?}");
                assert!(f.pkid() != 0, "{who}: SUBACK for packet id 0: {f:02x?}");
                if !v5 {
                    let ok = f.body[2..].iter().all(|c| matches!(c, 0 | 1 | 2 | 0x80));
                    assert!(
                        ok,
                        "{who}: 3.1.1 SUBACK with a 5-only return code: {f:02x?}"
                    );
                }
            }
            kind::UNSUBACK => {
                assert!(flags == 0 && f.pkid() != 0, "{who}: bad UNSUBACK: {f:02x?}");
                assert!(
                    if v5 { len >= 4 } else { len == 2 },
                    "{who}: bad UNSUBACK: {f:02x?}"
                );
            }
            kind::PINGRESP => assert!(f.first == 0xD0 && len == 0, "{who}: bad PINGRESP: {f:02x?}"),
            kind::DISCONNECT => {
                assert!(v5, "{who}: DISCONNECT sent to a 3.1.1 client: {f:02x?}");
                assert!(flags == 0, "{who}: DISCONNECT with flags: {f:02x?}");
                self.disconnected = true;
            }
            _ => panic!("{who}: server sent a packet a server never sends: {f:02x?}"),
        }
    }
}
