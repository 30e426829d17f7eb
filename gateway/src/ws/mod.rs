//! The browser WebSocket protocol at `/ws`: JSON text frames, one [`Stream`] per connection.
//!
//! This module only adapts: it reads frames and hands them to [`ops::handle`], and writes
//! what the stream produces. The loop, in one task per connection:
//! - takes up to a batch of events from the stream and writes them as text frames with one
//!   flush (many frames per syscall);
//! - waits for the next of: shutdown, a publish acknowledgement from the log, a client
//!   frame (not read while `browser.max_pending_publishes` publishes are outstanding, which
//!   pushes back on a flooding client), the stream having more, or the heartbeat tick;
//! - sends a WebSocket ping every `browser.heartbeat` and closes a peer silent for
//!   `browser.idle_timeout`; a peer that does not take our writes within that time is
//!   dropped too.
//!
//! Frames over `browser.max_frame_size` get a `frame_too_large` error and the connection
//! goes on; only frames over four times that are refused by the WebSocket layer, which ends
//! the connection.

pub mod ops;

use crate::stream::{Stream, StreamError, StreamHub, encode};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// Events taken from the stream per write.
const BATCH: usize = 256;
/// Bytes of tungstenite's read buffer; small, so idle connections stay cheap.
const READ_BUFFER: usize = 1024;
/// Bytes tungstenite buffers before writing; frames queued with `feed` go out in one write.
const WRITE_BUFFER: usize = 16 * 1024;

/// Query string of the upgrade request.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    /// Declares a client id (presence), like an `auth` frame with `client_id`.
    pub client_id: Option<String>,
}

/// What the `/ws` handler needs.
#[derive(Clone)]
pub struct WsState {
    /// The engine.
    pub hub: Arc<StreamHub>,
    /// Tracks connection tasks for shutdown.
    pub tasks: TaskTracker,
}

/// `GET /ws`: upgrades and serves the connection.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    headers: axum::http::HeaderMap,
    Query(q): Query<WsQuery>,
    State(state): State<WsState>,
) -> Response {
    if let Some(origin) = headers.get(axum::http::header::ORIGIN) {
        let allowed = origin
            .to_str()
            .is_ok_and(|o| state.hub.config.origin_allowed(o));
        if !allowed {
            return (
                axum::http::StatusCode::FORBIDDEN,
                "this page's origin is not in browser.allowed_origins\n",
            )
                .into_response();
        }
    }
    let hard_limit = state.hub.config.max_frame_size.saturating_mul(4);
    let tasks = state.tasks.clone();
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| {
            tasks.track_future(async move {
                let hub = state.hub;
                hub.open.ws.fetch_add(1, Ordering::Relaxed);
                serve(socket, hub.clone(), q.client_id).await;
                hub.open.ws.fetch_sub(1, Ordering::Relaxed);
            })
        })
}

/// Serves one upgraded connection until the peer leaves or the gateway shuts down.
pub async fn serve(socket: WebSocket, hub: Arc<StreamHub>, client_id: Option<String>) {
    let (mut tx, mut rx) = socket.split();
    let mut stream = Stream::new(hub.clone());
    let mut out: Vec<Utf8Bytes> = Vec::new();
    out.push(encode::welcome(stream.conn_id(), hub.log.epoch(), stream.position()).into());
    if let Some(c) = client_id {
        if let Err(e) = stream.set_client_id(&c) {
            out.push(encode::error(None, &e).into());
        }
    }
    let cfg = &hub.config;
    let shutdown = hub.broker.shutdown.clone();
    let mut acks: FuturesUnordered<ops::PendingAck> = FuturesUnordered::new();
    let mut beat = tokio::time::interval_at(Instant::now() + cfg.heartbeat, cfg.heartbeat);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut ping = false;
    loop {
        match stream.next_events(BATCH) {
            Ok(events) => out.extend(events.iter().map(|e| encode::event(&hub.encoder, e))),
            Err(e) => {
                tracing::warn!(error = %e, "reading the log for a WebSocket client failed");
                out.push(encode::error(None, &e).into());
                break;
            }
        }
        if !out.is_empty() || ping {
            let frames = out
                .drain(..)
                .map(Message::Text)
                .chain(ping.then(|| Message::Ping(Default::default())));
            ping = false;
            let write = async {
                for f in frames {
                    tx.feed(f).await?;
                }
                tx.flush().await
            };
            tokio::select! {
                r = tokio::time::timeout(cfg.idle_timeout, write) => match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "WebSocket write failed");
                        return;
                    }
                    Err(_) => {
                        tracing::info!("WebSocket client took no data for the idle timeout; closing");
                        return;
                    }
                },
                _ = shutdown.cancelled() => break,
            }
        }
        let can_read = acks.len() < cfg.max_pending_publishes;
        let pending = stream.has_pending();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some((id, r)) = acks.next(), if !acks.is_empty() => {
                out.push(ops::ack_frame(&id, &r).into());
            }
            frame = rx.next(), if can_read => {
                last_heard = Instant::now();
                match frame {
                    Some(Ok(Message::Text(t))) => {
                        if t.len() > cfg.max_frame_size {
                            let e = StreamError::FrameTooLarge { size: t.len(), max: cfg.max_frame_size };
                            out.push(encode::error(None, &e).into());
                            continue;
                        }
                        match ops::handle(t.as_str(), &mut stream, &hub) {
                            ops::Outcome::Reply(r) => out.push(r.into()),
                            ops::Outcome::Pending(f) => acks.push(f),
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let e = StreamError::BadJson("binary frames are not part of the protocol; send JSON text frames".into());
                        out.push(encode::error(None, &e).into());
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => return,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "WebSocket read failed");
                        return;
                    }
                }
            }
            _ = std::future::ready(()), if pending => {}
            _ = stream.wait(), if !pending => {}
            _ = beat.tick() => {
                if last_heard.elapsed() >= cfg.idle_timeout {
                    tracing::info!("WebSocket client silent for the idle timeout; closing");
                    return;
                }
                ping = true;
            }
        }
    }
    // Shutting down (or the log failed): say so, briefly.
    let close = Message::Close(Some(CloseFrame {
        code: 1001,
        reason: "gateway shutting down; reconnect with your last position".into(),
    }));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        for f in out.drain(..).map(Message::Text) {
            tx.feed(f).await?;
        }
        tx.send(close).await
    })
    .await;
}
