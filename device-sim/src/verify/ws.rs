//! The verifier over the gateway's WebSocket (`/ws`, JSON text frames): read the `welcome`,
//! subscribe every filter with `since` (the `--since` position, the welcome position, or on
//! a resume the last position received), wait for each `ok`, then turn `msg`, `reset` and
//! `dropped` frames into events. Sends a `ping` op now and then so an idle subscription is not
//! closed for silence.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::frames;
use super::transport::{Conn, ConnError, Event, Opened, Settings, Start};

/// How often an otherwise silent connection sends a `ping` op.
const PING_EVERY: Duration = Duration::from_secs(15);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A subscribed `/ws` connection.
pub struct WsConn {
    ws: Ws,
    /// Events that arrived while subscribing.
    pending: VecDeque<Event>,
    ping: Interval,
}

fn connect_error(e: tungstenite::Error) -> ConnError {
    match e {
        tungstenite::Error::Http(resp) => ConnError::fatal(
            "refused",
            format!(
                "the server answered HTTP {} instead of a WebSocket upgrade; is the path /ws?",
                resp.status()
            ),
        ),
        tungstenite::Error::Url(e) => ConnError::fatal("bad_url", e.to_string()),
        other => ConnError::retry("connect", other.to_string()),
    }
}

/// The next text frame; `None` when the connection ended.
async fn next_text(ws: &mut Ws) -> Result<String, ConnError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => {
                return Err(ConnError::retry("closed", format!("closed: {frame:?}")));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(ConnError::retry("socket_error", e.to_string())),
            None => return Err(ConnError::retry("closed", "connection closed")),
        }
    }
}

impl WsConn {
    /// Connects to `url` and subscribes every filter from where `start` says.
    pub async fn open(
        url: &str,
        settings: &Settings,
        start: Start<'_>,
    ) -> Result<Opened, ConnError> {
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(connect_error)?;
        let welcome = loop {
            let text = next_text(&mut ws).await?;
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if v.get("op").and_then(Value::as_str) == Some("welcome") {
                break v
                    .get("position")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        ConnError::fatal("protocol", format!("welcome without position: {text}"))
                    })?;
            }
        };
        let since = match start {
            Start::Fresh => settings.since.clone().unwrap_or(welcome),
            Start::Resume(Some(pos)) => pos.to_string(),
            Start::Resume(None) => welcome,
        };
        let mut waiting = HashSet::new();
        for (i, filter) in settings.filters.iter().enumerate() {
            let id = i as u64 + 1;
            let op = json!({"op": "subscribe", "id": id, "filter": filter, "since": since});
            ws.send(Message::Text(op.to_string().into()))
                .await
                .map_err(|e| ConnError::retry("socket_error", e.to_string()))?;
            waiting.insert(id);
        }
        let mut pending = VecDeque::new();
        while !waiting.is_empty() {
            let text = next_text(&mut ws).await?;
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let id = v.get("id").and_then(Value::as_u64);
            match (v.get("op").and_then(Value::as_str), id) {
                (Some("ok"), Some(id)) => {
                    waiting.remove(&id);
                }
                (Some("error"), Some(id)) if waiting.contains(&id) => {
                    let code = v.get("code").and_then(Value::as_str).unwrap_or("");
                    let detail = format!("subscribe refused: {text}");
                    return Err(match code {
                        "storage" | "unavailable" => ConnError::retry("refused", detail),
                        _ => ConnError::fatal("refused", detail),
                    });
                }
                _ => pending.extend(frames::parse(&text)),
            }
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ping.reset();
        Ok(Opened {
            conn: Conn::Ws(Box::new(WsConn { ws, pending, ping })),
            position: Some(since),
            session_lost: false,
        })
    }

    /// The next event.
    pub async fn next(&mut self) -> Result<Event, ConnError> {
        if let Some(e) = self.pending.pop_front() {
            return Ok(e);
        }
        loop {
            tokio::select! {
                _ = self.ping.tick() => {
                    let ping = Message::Text(r#"{"op":"ping"}"#.into());
                    self.ws
                        .send(ping)
                        .await
                        .map_err(|e| ConnError::retry("socket_error", e.to_string()))?;
                }
                text = next_text(&mut self.ws) => {
                    if let Some(event) = frames::parse(&text?) {
                        return Ok(event);
                    }
                }
            }
        }
    }

    /// Sends a close frame.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
