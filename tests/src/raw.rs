//! Hand-built MQTT packets over a plain TCP socket, for what well-behaved client libraries
//! will not send: retries with chosen packet ids, silence, garbage.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Appends an MQTT variable-length integer.
pub fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

/// Appends a length-prefixed string.
pub fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A packet from its first byte and body.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    put_len(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// A 3.1.1 CONNECT with clean session.
pub fn connect_v4(client_id: &str, keep_alive: u16) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, b"MQTT");
    body.push(4);
    body.push(0x02);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    put_str(&mut body, client_id.as_bytes());
    packet(0x10, &body)
}

/// A PUBLISH (3.1.1 layout).
pub fn publish_v4(topic: &[u8], qos: u8, dup: bool, pkid: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, topic);
    if qos > 0 {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1) | if dup { 0x08 } else { 0 }, &body)
}

/// A raw connection.
pub struct Raw {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects the socket (no MQTT yet).
    pub async fn open(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects and completes a 3.1.1 handshake.
    pub async fn connect(addr: SocketAddr, client_id: &str, keep_alive: u16) -> Raw {
        let mut r = Raw::open(addr).await;
        r.send(&connect_v4(client_id, keep_alive)).await;
        let (first, body) = r
            .read_packet(Duration::from_secs(5))
            .await
            .expect("CONNACK");
        assert_eq!(first, 0x20, "CONNACK expected");
        assert_eq!(body, vec![0, 0], "connection accepted");
        r
    }

    /// Writes bytes (errors ignored: the server may already have closed).
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Reads one packet: (first byte, body). `None` on close or timeout.
    pub async fn read_packet(&mut self, wait: Duration) -> Option<(u8, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some((hdr, len)) = frame(&self.buf) {
                if self.buf.len() >= hdr + len {
                    let first = self.buf[0];
                    let body = self.buf[hdr..hdr + len].to_vec();
                    self.buf.drain(..hdr + len);
                    return Some((first, body));
                }
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Waits until the server closes the connection; true if it did within `wait`. Packets
    /// arriving meanwhile are discarded.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        let mut chunk = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

fn frame(buf: &[u8]) -> Option<(usize, usize)> {
    let mut len = 0usize;
    for i in 0..4 {
        let b = *buf.get(1 + i)?;
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((2 + i, len));
        }
    }
    None
}

/// A CONNECT with every header field chosen by the caller: protocol name and level, connect
/// flags, keep-alive, raw client id bytes, and `tail` (will fields, user name, password)
/// appended as given. Level 5 gets an empty property block after the keep-alive.
pub fn connect_with(
    name: &[u8],
    level: u8,
    flags: u8,
    keep_alive: u16,
    client_id: &[u8],
    tail: &[u8],
) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, name);
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if level == 5 {
        body.push(0);
    }
    put_str(&mut body, client_id);
    body.extend_from_slice(tail);
    packet(0x10, &body)
}

/// An MQTT 5 CONNECT with clean start and no properties.
pub fn connect_v5(client_id: &str, keep_alive: u16) -> Vec<u8> {
    connect_with(b"MQTT", 5, 0x02, keep_alive, client_id.as_bytes(), &[])
}

/// An MQTT 5 PUBLISH whose property block is `props` as given (without its length).
pub fn publish_v5(topic: &[u8], qos: u8, pkid: u16, props: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, topic);
    if qos > 0 {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    put_len(&mut body, props.len());
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1), &body)
}

/// A SUBSCRIBE for one filter: the 3.1.1 layout, or MQTT 5 with an empty property block.
pub fn subscribe_one(v5: bool, pkid: u16, filter: &[u8], qos: u8) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    put_str(&mut body, filter);
    body.push(qos);
    packet(0x82, &body)
}

/// What a connection did until it was closed or the wait ran out.
#[derive(Debug, Default)]
pub struct Ending {
    /// Every complete packet received: (first byte, body).
    pub packets: Vec<(u8, Vec<u8>)>,
    /// True if the server closed the connection within the wait.
    pub closed: bool,
}

impl Raw {
    /// Connects the socket, sends `connect` (either version) and checks that CONNACK accepts.
    pub async fn handshake(addr: SocketAddr, connect: &[u8]) -> Result<Raw, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("tcp connect: {e}"))?;
        let mut r = Raw {
            stream,
            buf: Vec::new(),
        };
        r.send(connect).await;
        match r.read_packet(Duration::from_secs(10)).await {
            Some((0x20, body)) if body.get(1) == Some(&0) => Ok(r),
            other => Err(format!("CONNECT not accepted: {other:?}")),
        }
    }

    /// Collects packets until the server closes the connection or `wait` runs out.
    pub async fn ending(&mut self, wait: Duration) -> Ending {
        let deadline = tokio::time::Instant::now() + wait;
        let mut end = Ending::default();
        loop {
            if let Some((hdr, len)) = frame(&self.buf) {
                if self.buf.len() >= hdr + len {
                    let first = self.buf[0];
                    end.packets.push((first, self.buf[hdr..hdr + len].to_vec()));
                    self.buf.drain(..hdr + len);
                    continue;
                }
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    end.closed = true;
                    return end;
                }
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return end,
            }
        }
    }
}
