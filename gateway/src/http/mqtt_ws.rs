//! MQTT over WebSocket at `/mqtt`, as MQTT 5 section 6 and MQTT.js expect it.
//!
//! The upgrade must offer the `mqtt` subprotocol (it is echoed back); anything else gets
//! 400. After the upgrade the WebSocket is turned into a plain byte stream and handed to the
//! same MQTT connection code that serves TCP ([`crate::mqtt::serve_stream`]):
//! - binary frames are the connection's bytes; a frame may hold several MQTT packets or part
//!   of one, in both directions;
//! - a text frame is a protocol error (MQTT over WebSocket is binary only) and ends the
//!   connection;
//! - ping/pong are answered by the WebSocket layer and never reach MQTT.
//!
//! The byte stream is one end of an in-memory pipe; two pumps move bytes between the pipe's
//! other end and the WebSocket's receive and send halves. The pumps run independently, so
//! the MQTT reader and writer never wait on each other, as with a TCP socket, and every
//! chunk the MQTT side writes is sent and flushed as one binary frame (the MQTT side may
//! write without flushing, as it does on TCP).

use super::HttpState;
use crate::broker::Broker;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio_util::sync::CancellationToken;

/// The WebSocket subprotocol MQTT clients offer (MQTT 5 section 6).
pub const SUBPROTOCOL: &str = "mqtt";

/// Bytes buffered in each direction of the pipe between the WebSocket and the MQTT
/// connection. Bounds memory per connection; a full pipe pushes back on the other side like
/// a full socket buffer.
const PIPE_CAPACITY: usize = 64 * 1024;

/// Spare capacity the outbound pump reserves before each read from the pipe; what one read
/// returns is sent as one binary frame.
const OUT_CHUNK: usize = 16 * 1024;

/// `GET /mqtt`: checks the subprotocol and upgrades.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<HttpState>,
) -> Response {
    let offered = ws
        .requested_protocols()
        .any(|p| p.as_bytes() == SUBPROTOCOL.as_bytes());
    if !offered {
        tracing::debug!(%peer, "refused /mqtt upgrade without the mqtt subprotocol");
        return (
            StatusCode::BAD_REQUEST,
            "MQTT over WebSocket needs the \"mqtt\" subprotocol: send \
             `Sec-WebSocket-Protocol: mqtt` with the upgrade request\n",
        )
            .into_response();
    }
    // A WebSocket message may carry several MQTT packets, so allow some slack over one
    // packet; the MQTT side enforces the packet limit itself.
    let limit = (state.max_packet_size as usize)
        .saturating_mul(2)
        .max(64 * 1024);
    let tasks = state.tasks.clone();
    ws.protocols([SUBPROTOCOL])
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| {
            tasks.track_future(async move {
                let stats = state.stats.clone();
                stats.mqtt_ws_open.fetch_add(1, Ordering::Relaxed);
                stats.mqtt_ws_total.fetch_add(1, Ordering::Relaxed);
                serve(socket, peer, state.broker).await;
                stats.mqtt_ws_open.fetch_sub(1, Ordering::Relaxed);
            })
        })
}

/// Serves one upgraded `/mqtt` connection until the MQTT side or the peer ends it.
pub async fn serve(socket: WebSocket, peer: SocketAddr, broker: Arc<Broker>) {
    let (mqtt_side, pump) = byte_stream(socket, peer);
    tokio::join!(crate::mqtt::serve_stream(mqtt_side, peer, broker), pump);
}

/// Turns a WebSocket into a byte stream. Returns the stream and the pump future that moves
/// bytes between it and the WebSocket; poll both (e.g. with `join!`). The pump ends once the
/// stream is dropped (after sending what was written and a close frame) or the peer is gone.
pub fn byte_stream(
    socket: WebSocket,
    peer: SocketAddr,
) -> (DuplexStream, impl Future<Output = ()> + Send) {
    let (mqtt_side, pump_side) = tokio::io::duplex(PIPE_CAPACITY);
    let pump = async move {
        let (ws_tx, ws_rx) = socket.split();
        let (pipe_rd, pipe_wr) = tokio::io::split(pump_side);
        let done = CancellationToken::new();
        let outbound = async {
            pipe_to_ws(pipe_rd, ws_tx, peer).await;
            done.cancel();
        };
        let inbound = async {
            tokio::select! {
                () = ws_to_pipe(ws_rx, pipe_wr, peer) => {}
                () = done.cancelled() => {}
            }
        };
        tokio::join!(outbound, inbound);
    };
    (mqtt_side, pump)
}

/// Peer → MQTT: binary frames become bytes on the pipe. Ends (closing the pipe's write side,
/// which the MQTT side reads as end of stream) on close, error or a text frame.
async fn ws_to_pipe(
    mut rx: SplitStream<WebSocket>,
    mut pipe: impl AsyncWrite + Unpin,
    peer: SocketAddr,
) {
    while let Some(msg) = rx.next().await {
        match msg {
            Ok(Message::Binary(bytes)) => {
                if pipe.write_all(&bytes).await.is_err() {
                    // The MQTT side is gone.
                    return;
                }
            }
            Ok(Message::Text(_)) => {
                tracing::info!(%peer, "text frame on /mqtt; MQTT over WebSocket is binary only, closing");
                break;
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(Message::Close(_)) => break,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "/mqtt WebSocket read failed");
                break;
            }
        }
    }
    let _ = pipe.shutdown().await;
}

/// MQTT → peer: whatever the MQTT side writes is sent as binary frames, each flushed. Ends
/// when the MQTT side drops its end (then sends a close frame) or the peer is gone.
async fn pipe_to_ws(
    mut pipe: impl AsyncRead + Unpin,
    mut tx: SplitSink<WebSocket, Message>,
    peer: SocketAddr,
) {
    let mut buf = BytesMut::new();
    loop {
        // Reserve little up front: most writes are small, and an idle connection should not
        // hold a large buffer. `read_buf` reads what is there, up to the spare capacity.
        buf.reserve(OUT_CHUNK);
        match pipe.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let frame = Message::Binary(buf.split().freeze());
        if let Err(e) = tx.send(frame).await {
            tracing::debug!(%peer, error = %e, "/mqtt WebSocket write failed");
            return;
        }
    }
    let _ = tx.close().await;
}
