//! The verifier over the gateway's Server-Sent Events (`/sse`): a plain HTTP/1.1 GET with
//! the filters in the query (and `since` for `--since`), or on a resume the last `id:` seen
//! as `Last-Event-ID`, as a browser's `EventSource` does. The body (chunked, or read to the
//! end) is split into events per the `text/event-stream` format: `id:` lines move the resume
//! position (heartbeats included), `data:` of the default event type are `msg` objects,
//! `event: reset|dropped|error` carry the WebSocket objects.

use std::collections::VecDeque;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::frames;
use super::transport::{Conn, ConnError, Event, Opened, Settings, Start};

/// Longest header or chunk-size line accepted.
const MAX_LINE: usize = 8 * 1024;
/// Largest single event accepted (a runaway body is an error, not unbounded memory).
const MAX_EVENT: usize = 16 * 1024 * 1024;

/// An open `/sse` response.
pub struct SseConn {
    rd: BufReader<TcpStream>,
    /// Body framing: chunked, or everything until the connection closes.
    chunked: bool,
    /// Chunked body bytes not yet decoded.
    raw: Vec<u8>,
    /// Body bytes not yet split into events.
    buf: Vec<u8>,
    /// Events parsed but not yet returned.
    pending: VecDeque<Event>,
}

fn lost(detail: impl Into<String>) -> ConnError {
    ConnError::retry("closed", detail)
}

/// Percent-encodes a query value (everything but unreserved characters).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn read_line(rd: &mut BufReader<TcpStream>) -> Result<String, ConnError> {
    let mut line = Vec::new();
    let n = (&mut *rd)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| lost(e.to_string()))?;
    if n == 0 {
        return Err(lost("connection closed"));
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

impl SseConn {
    /// Sends the request and reads the response headers; then waits for the `welcome` event
    /// (whose `id:` is where the stream starts).
    pub async fn open(
        host: &str,
        port: u16,
        path: &str,
        settings: &Settings,
        start: Start<'_>,
    ) -> Result<Opened, ConnError> {
        let stream = TcpStream::connect((host, port))
            .await
            .map_err(|e| ConnError::retry("connect", e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let mut query: Vec<String> = settings
            .filters
            .iter()
            .map(|f| format!("filter={}", encode(f)))
            .collect();
        let mut last_id = None;
        match start {
            Start::Fresh => {
                if let Some(since) = &settings.since {
                    query.push(format!("since={}", encode(since)));
                }
            }
            Start::Resume(pos) => last_id = pos,
        }
        let sep = if path.contains('?') { '&' } else { '?' };
        let host_header = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut req = format!(
            "GET {path}{sep}{} HTTP/1.1\r\nHost: {host_header}\r\nAccept: text/event-stream\r\n\
             Cache-Control: no-cache\r\n",
            query.join("&")
        );
        if let Some(id) = last_id {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        req.push_str("\r\n");
        let mut rd = BufReader::new(stream);
        rd.get_mut()
            .write_all(req.as_bytes())
            .await
            .map_err(|e| lost(e.to_string()))?;
        let status_line = read_line(&mut rd).await?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| ConnError::fatal("protocol", format!("not HTTP: {status_line}")))?;
        let mut chunked = false;
        let mut length = None;
        loop {
            let line = read_line(&mut rd).await?;
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                } else if k == "content-length" {
                    length = v.parse::<usize>().ok();
                }
            }
        }
        let mut conn = SseConn {
            rd,
            chunked,
            raw: Vec::new(),
            buf: Vec::new(),
            pending: VecDeque::new(),
        };
        if status != 200 {
            let mut body = vec![0u8; length.unwrap_or(0).min(64 * 1024)];
            let _ = conn.rd.read_exact(&mut body).await;
            let detail = format!("HTTP {status}: {}", String::from_utf8_lossy(&body));
            return Err(if status >= 500 {
                ConnError::retry("refused", detail)
            } else {
                ConnError::fatal("refused", detail)
            });
        }
        // The first block is the welcome; its id is where the stream starts.
        let position = loop {
            match conn.next_block().await? {
                Block::Id(id) => break id,
                Block::Event(e) => conn.pending.push_back(e),
                Block::Nothing => {}
            }
        };
        Ok(Opened {
            conn: Conn::Sse(Box::new(conn)),
            position: Some(position),
            session_lost: false,
        })
    }

    /// The next event; `id:`-only blocks come out as [`Event::Position`].
    pub async fn next(&mut self) -> Result<Event, ConnError> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(e);
            }
            match self.next_block().await? {
                Block::Id(id) => return Ok(Event::Position(id)),
                Block::Event(e) => return Ok(e),
                Block::Nothing => {}
            }
        }
    }

    /// Reads and parses the next block (up to a blank line).
    async fn next_block(&mut self) -> Result<Block, ConnError> {
        loop {
            if let Some((text_end, block_end)) = find_blank(&self.buf) {
                let text = String::from_utf8_lossy(&self.buf[..text_end]).into_owned();
                self.buf.drain(..block_end);
                let (block, msg_position) = parse_block(&text);
                // A message's `id:` is its position, which the message carries too.
                if let (Block::Event(e), Some(id)) = (&block, msg_position) {
                    if !matches!(e, Event::Message { .. }) {
                        self.pending.push_back(Event::Position(id));
                    }
                }
                return Ok(block);
            }
            if self.buf.len() > MAX_EVENT {
                return Err(ConnError::fatal("protocol", "an SSE event over 16 MiB"));
            }
            self.fill().await?;
        }
    }

    /// Reads more body bytes into the buffer. Cancel-safe: the only await is one socket
    /// read, and chunk framing is decoded from bytes already held.
    async fn fill(&mut self) -> Result<(), ConnError> {
        loop {
            if self.chunked && dechunk(&mut self.raw, &mut self.buf)? {
                return Ok(());
            }
            let mut b = [0u8; 16 * 1024];
            let n = self
                .rd
                .read(&mut b)
                .await
                .map_err(|e| lost(e.to_string()))?;
            if n == 0 {
                return Err(lost("the stream ended"));
            }
            if !self.chunked {
                self.buf.extend_from_slice(&b[..n]);
                return Ok(());
            }
            self.raw.extend_from_slice(&b[..n]);
        }
    }
}

/// Moves every complete chunk from `raw` to `buf`; true if any was moved.
pub(crate) fn dechunk(raw: &mut Vec<u8>, buf: &mut Vec<u8>) -> Result<bool, ConnError> {
    let mut moved = false;
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            if raw.len() > MAX_LINE {
                return Err(ConnError::fatal("protocol", "a chunk-size line over 8 KiB"));
            }
            return Ok(moved);
        };
        let line = String::from_utf8_lossy(&raw[..eol]).into_owned();
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ConnError::fatal("protocol", format!("bad chunk size `{line}`")))?;
        if size == 0 {
            return Err(lost("the stream ended"));
        }
        if size > MAX_EVENT {
            return Err(ConnError::fatal("protocol", "a chunk over 16 MiB"));
        }
        let start = eol + 2;
        if raw.len() < start + size + 2 {
            return Ok(moved);
        }
        buf.extend_from_slice(&raw[start..start + size]);
        raw.drain(..start + size + 2);
        moved = true;
    }
}

/// One parsed block.
#[derive(Debug, PartialEq, Eq)]
enum Block {
    /// Only an `id:` (welcome handled as this too, heartbeats): the position moved.
    Id(String),
    /// An event for the verifier.
    Event(Event),
    /// Nothing of interest (a comment, `retry:`, an ignored object).
    Nothing,
}

/// Parses one block's text; also returns its `id:` when it had one.
fn parse_block(text: &str) -> (Block, Option<String>) {
    let (mut event, mut id, mut data) = (String::new(), None, Vec::new());
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event = value.to_string(),
            "id" => id = Some(value.to_string()),
            "data" => data.push(value),
            _ => {}
        }
    }
    let data = data.join("\n");
    let parsed = match event.as_str() {
        "" | "message" | "reset" | "dropped" | "error" => frames::parse(&data),
        _ => None,
    };
    let block = match (parsed, &id) {
        (Some(e), _) => Block::Event(e),
        (None, Some(id)) => Block::Id(id.clone()),
        (None, None) => Block::Nothing,
    };
    (block, id)
}

/// Position of the first blank line: (end of the block's text, end including the blank).
fn find_blank(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_of_the_gateway_stream() {
        let welcome = "retry: 2000\nevent: welcome\nid: 7-31\ndata: {\"op\":\"welcome\",\"position\":\"7-31\"}";
        assert_eq!(parse_block(welcome).0, Block::Id("7-31".into()));
        assert_eq!(
            parse_block(": heartbeat\nid: 7-35").0,
            Block::Id("7-35".into())
        );
        let msg = "id: 7-32\ndata: {\"op\":\"msg\",\"pos\":\"7-32\",\"encoding\":\"json\",\"data\":{\"sim\":{\"dev\":\"d\",\"seq\":1,\"ts\":5}}}";
        let (block, id) = parse_block(msg);
        assert!(matches!(
            block,
            Block::Event(Event::Message { stamp: Some(_), .. })
        ));
        assert_eq!(id.as_deref(), Some("7-32"));
        let reset = "event: reset\ndata: {\"op\":\"reset\",\"from\":\"7-1\",\"to\":\"7-9\"}";
        assert!(matches!(
            parse_block(reset).0,
            Block::Event(Event::Reset(_))
        ));
        assert_eq!(parse_block(": just a comment").0, Block::Nothing);
    }

    #[test]
    fn chunks_are_decoded_whatever_the_read_boundaries() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        for split in 1..body.len() {
            let (mut raw, mut buf) = (Vec::new(), Vec::new());
            let mut ended = false;
            for part in [&body[..split], &body[split..]] {
                raw.extend_from_slice(part);
                match dechunk(&mut raw, &mut buf) {
                    Ok(_) => {}
                    Err(e) => {
                        assert_eq!(e.kind, "closed", "split {split}: {e:?}");
                        ended = true;
                    }
                }
            }
            assert!(ended, "split {split}: the last chunk was not seen");
            assert_eq!(buf, b"hello, world", "split {split}");
        }
        let mut bad = b"zz\r\n".to_vec();
        assert!(dechunk(&mut bad, &mut Vec::new()).is_err_and(|e| e.fatal));
    }

    #[test]
    fn framing_helpers() {
        assert_eq!(find_blank(b"a\n\nb"), Some((1, 3)));
        assert_eq!(find_blank(b"a\r\n\r\nb"), Some((1, 5)));
        assert_eq!(find_blank(b"a\nb"), None);
        assert_eq!(encode("sim/+/t #"), "sim%2F%2B%2Ft%20%23");
    }
}
