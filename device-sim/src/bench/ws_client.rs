//! WebSocket subscribers for `bench ws`, one per protocol, all reporting the same thing: each
//! message payload they receive.
//!
//! - [`Protocol::Gateway`]: the gateway's JSON protocol at `/ws` (`subscribe` frame, `msg`
//!   frames with the payload inline as JSON);
//! - [`Protocol::Mqtt`]: MQTT 3.1.1 over WebSocket (subprotocol `mqtt`), as MQTT.js speaks it
//!   to Mosquitto's `protocol websockets` listener: CONNECT, SUBSCRIBE at QoS 0, PUBLISH
//!   packets in binary frames;
//! - [`Protocol::Sse`]: the gateway's `/sse`, a raw HTTP/1.1 request whose chunked response
//!   is decoded into events; each `msg` event's `data` is a payload.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Which subscriber to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// The gateway's JSON protocol (`/ws`).
    Gateway,
    /// MQTT over WebSocket.
    Mqtt,
    /// The gateway's Server-Sent Events (`/sse`).
    Sse,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A connected, subscribed client.
pub enum Sub {
    /// A WebSocket (gateway or MQTT).
    Ws(Box<Ws>, Protocol, Vec<u8>),
    /// An SSE response being read: the socket, bytes not yet de-chunked, and event text not
    /// yet parsed.
    Sse(TcpStream, Vec<u8>, Vec<u8>),
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Connects to `url` and subscribes to `topic`.
pub async fn connect(protocol: Protocol, url: &str, topic: &str, id: &str) -> Result<Sub, String> {
    match protocol {
        Protocol::Sse => {
            let u = url
                .trim_start_matches("http://")
                .trim_start_matches("ws://");
            let (host, _) = u.split_once('/').unwrap_or((u, ""));
            let mut s = TcpStream::connect(host)
                .await
                .map_err(|e| err("connect", e))?;
            let req = format!(
                "GET /sse?filter={} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n",
                topic.replace('/', "%2F")
            );
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| err("request", e))?;
            // Read up to the end of the response header; what follows is body.
            let mut head = Vec::new();
            let body_at = loop {
                let mut b = [0u8; 1024];
                let n = s.read(&mut b).await.map_err(|e| err("response", e))?;
                if n == 0 {
                    return Err("the SSE response ended before its header did".into());
                }
                head.extend_from_slice(&b[..n]);
                if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                if head.len() > 16 * 1024 {
                    return Err("an SSE response header over 16 KiB".into());
                }
            };
            if !head.starts_with(b"HTTP/1.1 200") {
                return Err("SSE request refused".into());
            }
            let header = String::from_utf8_lossy(&head[..body_at]).to_ascii_lowercase();
            if !header.contains("transfer-encoding: chunked") {
                return Err("the SSE response is not chunked, which this client expects".into());
            }
            Ok(Sub::Sse(s, head.split_off(body_at), Vec::new()))
        }
        Protocol::Gateway => {
            let (mut ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .map_err(|e| err("upgrade", e))?;
            let sub = format!(r#"{{"op":"subscribe","id":1,"filter":"{topic}"}}"#);
            ws.send(Message::Text(sub.into()))
                .await
                .map_err(|e| err("subscribe", e))?;
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) if t.as_str().contains(r#""op":"ok""#) => break,
                    Some(Ok(Message::Text(t))) if t.as_str().contains(r#""op":"error""#) => {
                        return Err(format!("subscribe refused: {}", t.as_str()));
                    }
                    Some(Ok(_)) => continue,
                    other => return Err(format!("no answer to subscribe: {other:?}")),
                }
            }
            Ok(Sub::Ws(Box::new(ws), protocol, Vec::new()))
        }
        Protocol::Mqtt => {
            let mut req = url.into_client_request().map_err(|e| err("url", e))?;
            req.headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
            let (mut ws, _) = tokio_tungstenite::connect_async(req)
                .await
                .map_err(|e| err("upgrade", e))?;
            ws.send(Message::Binary(connect_packet(id).into()))
                .await
                .map_err(|e| err("connect", e))?;
            ws.send(Message::Binary(subscribe_packet(topic).into()))
                .await
                .map_err(|e| err("subscribe", e))?;
            let mut buf = Vec::new();
            let mut acked = (false, false);
            while !(acked.0 && acked.1) {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => {
                        buf.extend_from_slice(&b);
                        while let Some((kind, _body, used)) = split_packet(&buf) {
                            match kind >> 4 {
                                2 => acked.0 = true,
                                9 => acked.1 = true,
                                _ => {}
                            }
                            buf.drain(..used);
                        }
                    }
                    Some(Ok(_)) => continue,
                    other => return Err(format!("no CONNACK/SUBACK: {other:?}")),
                }
            }
            Ok(Sub::Ws(Box::new(ws), protocol, buf))
        }
    }
}

impl Sub {
    /// Waits for the next message payloads (several may come in one frame); `None` when the
    /// connection ended.
    pub async fn next_payloads(&mut self, out: &mut Vec<Vec<u8>>) -> Option<()> {
        match self {
            Sub::Sse(s, raw, text) => loop {
                // An error is the last chunk or broken framing: use what came before it.
                let ended = crate::verify::sse::dechunk(raw, text).is_err();
                let mut got = false;
                // Events end with a blank line (the gateway writes `\n` line ends); one pass
                // over what arrived, then one drain.
                let mut start = 0;
                while let Some(end) = text[start..].windows(2).position(|w| w == b"\n\n") {
                    for line in text[start..start + end].split(|b| *b == b'\n') {
                        let data = line.strip_prefix(b"data: ").unwrap_or_default();
                        if let Some(d) = std::str::from_utf8(data).ok().and_then(gateway_data) {
                            out.push(d.as_bytes().to_vec());
                            got = true;
                        }
                    }
                    start += end + 2;
                }
                text.drain(..start);
                if got {
                    return Some(());
                }
                if ended {
                    return None;
                }
                let mut b = [0u8; 16 * 1024];
                match s.read(&mut b).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => raw.extend_from_slice(&b[..n]),
                }
            },
            Sub::Ws(ws, protocol, buf) => loop {
                match ws.next().await? {
                    Ok(Message::Text(t)) if *protocol == Protocol::Gateway => {
                        if let Some(data) = gateway_data(t.as_str()) {
                            out.push(data.as_bytes().to_vec());
                            return Some(());
                        }
                    }
                    Ok(Message::Binary(b)) if *protocol == Protocol::Mqtt => {
                        buf.extend_from_slice(&b);
                        let mut got = false;
                        while let Some((kind, body, used)) = split_packet(buf) {
                            if kind >> 4 == 3 && body.len() >= 2 {
                                let tlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
                                let skip = 2 + tlen + if (kind >> 1) & 3 > 0 { 2 } else { 0 };
                                if body.len() >= skip {
                                    out.push(body[skip..].to_vec());
                                    got = true;
                                }
                            }
                            buf.drain(..used);
                        }
                        if got {
                            return Some(());
                        }
                    }
                    Ok(Message::Close(_)) | Err(_) => return None,
                    Ok(_) => {}
                }
            },
        }
    }
}

/// The `data` of a gateway `msg` frame, as raw JSON text.
fn gateway_data(frame: &str) -> Option<&str> {
    if !frame.starts_with(r#"{"op":"msg""#) {
        return None;
    }
    let i = frame.find(r#""data":"#)? + 7;
    let rest = &frame[i..];
    // The payload is a JSON object (the benchmark publishes one); find its end.
    let mut depth = 0i32;
    for (j, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&rest[..=j]);
                }
            }
            _ => {}
        }
    }
    None
}

/// One complete MQTT packet at the start of `buf`: (first byte, body, bytes used).
fn split_packet(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    let first = *buf.first()?;
    let mut len = 0usize;
    let mut mult = 1usize;
    let mut i = 1;
    loop {
        let b = *buf.get(i)?;
        len += usize::from(b & 0x7f) * mult;
        mult *= 128;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        if i > 4 {
            return None;
        }
    }
    let end = i + len;
    (buf.len() >= end).then(|| (first, &buf[i..end], end))
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
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

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn connect_packet(id: &str) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, "MQTT");
    body.extend_from_slice(&[4, 0x02, 0, 60]);
    put_str(&mut body, id);
    let mut p = vec![0x10];
    put_len(&mut p, body.len());
    p.extend(body);
    p
}

fn subscribe_packet(topic: &str) -> Vec<u8> {
    let mut body = vec![0, 1];
    put_str(&mut body, topic);
    body.push(0);
    let mut p = vec![0x82];
    put_len(&mut p, body.len());
    p.extend(body);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gateway_data_and_mqtt_packets() {
        let f = r#"{"op":"msg","channel":"t","pos":"1-2","ts":3,"qos":1,"retain":false,"encoding":"json","data":{"s":1,"t":2,"p":"xx"}}"#;
        assert_eq!(gateway_data(f), Some(r#"{"s":1,"t":2,"p":"xx"}"#));
        assert_eq!(gateway_data(r#"{"op":"ok","id":1}"#), None);
        let p = subscribe_packet("a/b");
        let (kind, body, used) = split_packet(&p).expect("a packet");
        assert_eq!((kind, body.len() + 2, used), (0x82, p.len(), p.len()));
        assert!(split_packet(&p[..3]).is_none());
    }
}

#[cfg(test)]
mod sse_tests {
    use super::*;

    /// A chunked SSE response whose chunk boundaries fall inside events, served by a local
    /// listener: every `msg` payload comes out once, in order, and the end is noticed.
    #[tokio::test]
    async fn sse_payloads_survive_chunk_boundaries() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        let body = "event: welcome\ndata: {\"op\":\"welcome\"}\n\n\
                    id: 1-1\ndata: {\"op\":\"msg\",\"pos\":\"1-1\",\"data\":{\"n\":1}}\n\n\
                    : heartbeat\n\n\
                    id: 1-2\ndata: {\"op\":\"msg\",\"pos\":\"1-2\",\"data\":{\"n\":2}}\n\n";
        let server = tokio::spawn(async move {
            let (mut s, _) = listener
                .accept()
                .await
                .unwrap_or_else(|e| panic!("accept: {e}"));
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).await;
            let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                            transfer-encoding: chunked\r\n\r\n"
                .to_vec();
            for piece in body.as_bytes().chunks(7) {
                out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                out.extend_from_slice(piece);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            let _ = s.write_all(&out).await;
        });
        let url = format!("http://{addr}");
        let mut sub = connect(Protocol::Sse, &url, "t", "c")
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let mut got = Vec::new();
        while got.len() < 2 {
            if sub.next_payloads(&mut got).await.is_none() {
                break;
            }
        }
        assert_eq!(got, vec![b"{\"n\":1}".to_vec(), b"{\"n\":2}".to_vec()]);
        assert!(
            sub.next_payloads(&mut got).await.is_none(),
            "the end is noticed"
        );
        let _ = server.await;
    }
}
