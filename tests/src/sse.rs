//! A raw Server-Sent Events reader: HTTP/1.1 over a plain TCP socket, chunked transfer
//! decoding and the `text/event-stream` line format, written out so tests see exactly what
//! the gateway sends (headers, comments, `id:` lines) without a client library in between.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long one expected event may take.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// One dispatched event (or an `id:`-only block, which sets the last event id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` (empty for the default `message` type).
    pub event: String,
    /// `id:` if the block had one.
    pub id: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: String,
    /// Comment lines (without the leading `:`).
    pub comments: Vec<String>,
}

impl SseEvent {
    /// The data as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).expect("event data is JSON")
    }
}

/// An open `/sse` response.
pub struct SseReader {
    rd: BufReader<TcpStream>,
    /// Status code of the response.
    pub status: u16,
    /// Response headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body bytes not yet parsed into lines.
    buf: Vec<u8>,
    /// The last `id:` seen, as a browser tracks it.
    pub last_event_id: Option<String>,
    /// For error responses: the whole (non-streamed) body.
    pub body: String,
}

impl SseReader {
    /// Sends `GET {path_and_query}` with an optional `Last-Event-ID` and reads the headers.
    pub async fn open(http: SocketAddr, path_and_query: &str, last_id: Option<&str>) -> SseReader {
        let mut s = TcpStream::connect(http).await.expect("connect");
        let mut req = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {http}\r\nAccept: text/event-stream\r\n"
        );
        if let Some(id) = last_id {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.expect("send request");
        let mut rd = BufReader::new(s);
        let mut status_line = String::new();
        tokio::time::timeout(PATIENCE, rd.read_line(&mut status_line))
            .await
            .expect("response in time")
            .expect("read");
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status code");
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            rd.read_line(&mut line).await.expect("header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let mut r = SseReader {
            rd,
            status,
            headers,
            buf: Vec::new(),
            last_event_id: None,
            body: String::new(),
        };
        if status != 200 {
            if let Some(len) = r
                .header("content-length")
                .and_then(|l| l.parse::<usize>().ok())
            {
                let mut b = vec![0; len];
                r.rd.read_exact(&mut b).await.expect("error body");
                r.body = String::from_utf8_lossy(&b).into_owned();
            }
        }
        r
    }

    /// A response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Reads one more chunk of the chunked body into the buffer; false at the end.
    async fn fill(&mut self) -> bool {
        let mut size_line = String::new();
        if self.rd.read_line(&mut size_line).await.unwrap_or(0) == 0 {
            return false;
        }
        let Ok(size) = usize::from_str_radix(size_line.trim(), 16) else {
            return false;
        };
        if size == 0 {
            return false;
        }
        let mut chunk = vec![0; size + 2];
        if self.rd.read_exact(&mut chunk).await.is_err() {
            return false;
        }
        chunk.truncate(size);
        self.buf.extend_from_slice(&chunk);
        true
    }

    /// The next block (terminated by a blank line) within `wait`; `None` on timeout or end.
    pub async fn try_next_block(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = find_blank(&self.buf) {
                let block: Vec<u8> = self.buf.drain(..end.1).collect();
                let text = String::from_utf8_lossy(&block[..end.0]).into_owned();
                let mut ev = SseEvent::default();
                let mut data: Vec<String> = Vec::new();
                for line in text.split('\n') {
                    if let Some(c) = line.strip_prefix(':') {
                        ev.comments.push(c.trim().to_owned());
                    } else if let Some((k, v)) = line.split_once(':') {
                        let v = v.strip_prefix(' ').unwrap_or(v);
                        match k {
                            "event" => ev.event = v.to_owned(),
                            "id" => ev.id = Some(v.to_owned()),
                            "data" => data.push(v.to_owned()),
                            _ => {}
                        }
                    }
                }
                ev.data = data.join("\n");
                if ev.id.is_some() {
                    self.last_event_id = ev.id.clone();
                }
                return Some(ev);
            }
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Ok(true) => {}
                _ => return None,
            }
        }
    }

    /// The next event with data (skipping heartbeats and `id:`-only blocks); panics after
    /// [`PATIENCE`].
    pub async fn next_event(&mut self) -> SseEvent {
        loop {
            let b = self
                .try_next_block(PATIENCE)
                .await
                .expect("an SSE event in time");
            if !b.data.is_empty() {
                return b;
            }
        }
    }
}

/// Position of the first blank line: (end of the block's text, end including the blank).
fn find_blank(buf: &[u8]) -> Option<(usize, usize)> {
    buf.windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2))
}
