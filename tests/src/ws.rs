//! A client of the gateway's JSON WebSocket protocol (`/ws`) over tokio-tungstenite, for
//! protocol tests: send ops as JSON, read frames as JSON, with patience on every wait.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long one expected frame may take.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// One `/ws` connection.
pub struct WsClient {
    /// The socket, for tests that send raw frames.
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The `welcome` frame.
    pub welcome: Value,
    next_id: u64,
}

impl WsClient {
    /// Connects to `/ws?{query}` and reads the welcome.
    pub async fn connect(http: SocketAddr, query: &str) -> WsClient {
        let url = format!("ws://{http}/ws?{query}");
        let (socket, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
            .await
            .expect("connects in time")
            .expect("WebSocket upgrade");
        let mut c = WsClient {
            socket,
            welcome: Value::Null,
            next_id: 0,
        };
        c.welcome = c.next().await;
        assert_eq!(c.welcome["op"], "welcome", "first frame is welcome");
        c
    }

    /// Sends a JSON value as a text frame.
    pub async fn send(&mut self, v: Value) {
        self.socket
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, t: &str) {
        self.socket
            .send(Message::Text(t.to_owned().into()))
            .await
            .expect("send");
    }

    /// The next JSON frame; panics after [`PATIENCE`] or if the connection ends.
    pub async fn next(&mut self) -> Value {
        self.try_next(PATIENCE).await.expect("a frame in time")
    }

    /// The next JSON frame within `wait`, or `None`.
    pub async fn try_next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let f = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()?;
            match f {
                Some(Ok(Message::Text(t))) => {
                    return Some(serde_json::from_str(t.as_str()).expect("frames are JSON"));
                }
                Some(Ok(Message::Close(c))) => panic!("connection closed: {c:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("connection failed: {e}"),
                None => panic!("connection ended"),
            }
        }
    }

    /// Sends `op` with a fresh `id` and returns the answer to it (`ok` or `error`), keeping
    /// other frames read meanwhile in `other`.
    pub async fn request(&mut self, mut v: Value, other: &mut Vec<Value>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        v["id"] = json!(id);
        self.send(v).await;
        loop {
            let f = self.next().await;
            if f["id"] == json!(id) && (f["op"] == "ok" || f["op"] == "error") {
                return f;
            }
            other.push(f);
        }
    }

    /// Subscribes (`extra` adds options) and returns the `ok`; frames read meanwhile are
    /// returned too.
    pub async fn subscribe(&mut self, filter: &str, extra: Value) -> (Value, Vec<Value>) {
        let mut v = json!({"op": "subscribe", "filter": filter});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                o.insert(k.clone(), x.clone());
            }
        }
        let mut other = Vec::new();
        let r = self.request(v, &mut other).await;
        (r, other)
    }

    /// Reads frames until `n` `msg` frames have arrived, returning them (other frames are
    /// skipped but `reset`/`dropped` frames are returned in `notices`).
    pub async fn msgs(&mut self, n: usize, notices: &mut Vec<Value>) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let f = self.next().await;
            if f["op"] == "msg" {
                out.push(f);
            } else {
                notices.push(f);
            }
        }
        out
    }
}

/// The `data` of `msg` frames, as numbers (for numbered test messages).
pub fn numbers(msgs: &[Value]) -> Vec<i64> {
    msgs.iter()
        .map(|m| m["data"].as_i64().expect("numeric data"))
        .collect()
}
