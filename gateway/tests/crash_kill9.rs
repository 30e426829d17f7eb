//! Crash test against the built `gateway` binary: a persistent-session subscriber is offline
//! while a client publishes numbered QoS 1 messages; the gateway is killed with SIGKILL in the
//! middle of the stream and restarted on the same data directory. Every message that received
//! a PUBACK must then be delivered to the subscriber, in order.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Starts the binary on ephemeral ports and returns it with its MQTT address, read from the
/// "listening" line it logs.
fn start_gateway(data: &std::path::Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["run", "--data-dir"])
        .arg(data)
        .args([
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gateway binary starts");
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && line.contains("mqtt") && line.contains("listening") {
                if let Some(addr) = line.split_whitespace().find_map(|w| {
                    w.trim_matches(|c: char| !c.is_ascii_digit() && c != '.' && c != ':')
                        .parse::<SocketAddr>()
                        .ok()
                }) {
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("gateway logs its MQTT address");
    (child, addr)
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

fn with_len(first: u8, body: Vec<u8>) -> Vec<u8> {
    let mut out = vec![first];
    let mut n = body.len();
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
    out.extend(body);
    out
}

fn connect_packet(id: &str, clean: bool) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, b"MQTT");
    body.extend_from_slice(&[4, if clean { 0x02 } else { 0x00 }, 0, 60]);
    put_str(&mut body, id.as_bytes());
    with_len(0x10, body)
}

/// Reads whole packets from a socket.
struct Reader {
    buf: Vec<u8>,
}

impl Reader {
    async fn next(&mut self, s: &mut TcpStream, wait: Duration) -> Option<(u8, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.buf.len() >= 2 {
                let mut len = 0usize;
                let mut hdr = None;
                for i in 0..4 {
                    let Some(b) = self.buf.get(1 + i) else { break };
                    len |= usize::from(b & 0x7f) << (7 * i);
                    if b & 0x80 == 0 {
                        hdr = Some(2 + i);
                        break;
                    }
                }
                if let Some(h) = hdr {
                    if self.buf.len() >= h + len {
                        let first = self.buf[0];
                        let body = self.buf[h..h + len].to_vec();
                        self.buf.drain(..h + len);
                        return Some((first, body));
                    }
                }
            }
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }
}

async fn mqtt_connect(addr: SocketAddr, id: &str, clean: bool) -> (TcpStream, Reader, bool) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&connect_packet(id, clean))
        .await
        .expect("send CONNECT");
    let mut r = Reader { buf: Vec::new() };
    let (first, body) = r
        .next(&mut s, Duration::from_secs(10))
        .await
        .expect("CONNACK");
    assert_eq!(first, 0x20);
    assert_eq!(body[1], 0, "accepted");
    (s, r, body[0] & 1 == 1)
}

#[tokio::test]
async fn acknowledged_messages_survive_kill_9() {
    let data = tempfile::tempdir().expect("temp dir");
    let (mut gw, addr) = start_gateway(data.path());

    // Persistent subscriber, then offline.
    let (mut sub, mut sub_r, _) = mqtt_connect(addr, "crash-sub", false).await;
    let mut body = 1u16.to_be_bytes().to_vec();
    put_str(&mut body, b"crash/#");
    body.push(1);
    sub.write_all(&with_len(0x82, body))
        .await
        .expect("SUBSCRIBE");
    let (first, _) = sub_r
        .next(&mut sub, Duration::from_secs(10))
        .await
        .expect("SUBACK");
    assert_eq!(first, 0x90);
    sub.write_all(&[0xE0, 0x00]).await.expect("DISCONNECT");
    drop(sub);

    // Publisher: numbered QoS 1 messages, pipelined 64 at a time; kill -9 once 600 are
    // acknowledged, while more are in flight.
    let (mut publ, mut pub_r, _) = mqtt_connect(addr, "crash-pub", true).await;
    let mut acked: Vec<u32> = Vec::new();
    let mut next: u32 = 0;
    let mut in_flight = 0usize;
    let kill_at = 600;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acked.len() < kill_at && tokio::time::Instant::now() < deadline {
        while in_flight < 64 {
            let pkid = (next % 60000 + 1) as u16;
            let mut body = Vec::new();
            put_str(&mut body, b"crash/seq");
            body.extend_from_slice(&pkid.to_be_bytes());
            body.extend_from_slice(&next.to_be_bytes());
            publ.write_all(&with_len(0x32, body))
                .await
                .expect("PUBLISH");
            next += 1;
            in_flight += 1;
        }
        let (first, body) = pub_r
            .next(&mut publ, Duration::from_secs(10))
            .await
            .expect("PUBACK");
        assert_eq!(first, 0x40);
        let pkid = u16::from_be_bytes([body[0], body[1]]);
        // PUBACKs come in order; recover the number from the packet id.
        let base = acked.len() as u32;
        assert_eq!(
            u32::from(pkid),
            base % 60000 + 1,
            "PUBACKs in publish order"
        );
        acked.push(base);
        in_flight -= 1;
    }
    assert_eq!(acked.len(), kill_at, "publishing went fast enough");
    gw.kill().expect("SIGKILL");
    let _ = gw.wait();
    drop(publ);

    let (mut gw, addr) = start_gateway(data.path());
    let (mut sub, mut sub_r, present) = mqtt_connect(addr, "crash-sub", false).await;
    assert!(present, "the persistent session survived the crash");
    let mut got: Vec<u32> = Vec::new();
    while let Some((first, body)) = sub_r.next(&mut sub, Duration::from_secs(3)).await {
        if first >> 4 != 3 {
            continue;
        }
        let qos = (first >> 1) & 3;
        let tlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
        let mut at = 2 + tlen;
        if qos > 0 {
            let pkid = [body[at], body[at + 1]];
            at += 2;
            sub.write_all(&[0x40, 0x02, pkid[0], pkid[1]])
                .await
                .expect("PUBACK");
        }
        let n = u32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        got.push(n);
    }
    let _ = gw.kill();
    let _ = gw.wait();
    for w in got.windows(2) {
        assert!(
            w[0] < w[1],
            "delivered in order without repeats: {} then {}",
            w[0],
            w[1]
        );
    }
    let missing: Vec<u32> = acked.iter().copied().filter(|n| !got.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but lost: {missing:?} (got {} messages)",
        got.len()
    );
}
