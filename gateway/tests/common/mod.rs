//! Helpers for the gateway's integration tests: a config on ephemeral loopback ports and a
//! minimal HTTP/1.1 client over a raw TCP stream.

#![allow(dead_code)]

use gateway::config::Config;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound on any single wait in these tests.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The default config with every listener on `127.0.0.1:0` and data in `dir`.
pub fn test_config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.data.dir = dir.to_path_buf();
    c.mqtt.listen = "127.0.0.1:0".into();
    c.http.listen = "127.0.0.1:0".into();
    c.admin.listen = "127.0.0.1:0".into();
    c
}

/// A parsed HTTP response head and body.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body (read to end of stream; requests send `Connection: close` unless `extra` sets
    /// another `Connection` header).
    pub body: String,
}

impl Response {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `GET path` with `extra` header lines and reads the response. For a `101 Switching
/// Protocols` answer only the head is read (the connection stays open as a WebSocket).
pub async fn get(addr: SocketAddr, path: &str, extra: &[&str]) -> Response {
    let fut = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
        if !extra
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("connection:"))
        {
            req.push_str("Connection: close\r\n");
        }
        for h in extra {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .expect("send request");

        let mut raw = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = stream.read(&mut chunk).await.expect("read response");
            assert!(n > 0, "connection closed before the response head");
            raw.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[head_end + 4..].to_vec();
        let length: Option<usize> = headers
            .iter()
            .find(|(n, _): &&(String, String)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok());
        match length {
            // The connection may stay open (keep-alive): read just the body.
            Some(len) => {
                while body.len() < len {
                    let n = stream.read(&mut chunk).await.expect("read body");
                    assert!(n > 0, "connection closed inside the body");
                    body.extend_from_slice(&chunk[..n]);
                }
            }
            None if status != 101 => {
                stream.read_to_end(&mut body).await.expect("read body");
            }
            None => {}
        }
        Response {
            status,
            headers,
            body: String::from_utf8_lossy(&body).to_string(),
        }
    };
    tokio::time::timeout(PATIENCE, fut)
        .await
        .expect("HTTP request timed out")
}
