//! MQTT 3.1.1 and 5 server: listeners, connections, sessions and QoS flows.
//!
//! Layout:
//! - `codec/`: framing, protocol detection, 3.1.1 ⇄ 5 packet conversion (the session layer
//!   sees only MQTT 5 packets).
//! - `connect.rs`: the CONNECT handshake and CONNACK.
//! - `resume.rs`: loading, restoring or discarding a session at connect.
//! - `connection.rs`: the per-connection event loop and clean-up.
//! - `read_room.rs`: how much a connection reads per syscall.
//! - `inbound.rs`: packets from the client (publish flows, subscribe, acks).
//! - `outbound.rs`: deliveries to the client (cursor, catch-up, in-flight window).
//! - `session.rs`: session state and its saved form.

pub mod codec;
mod connect;
mod connection;
mod convert;
mod inbound;
mod outbound;
mod read_room;
mod resume;
pub use resume::schedule_stored_expiries;
pub mod session;

use crate::broker::Broker;
use crate::core::QoS;
use bytes::BytesMut;
use codec::{CodecError, MqttCodec};
use rumqttc::v5::mqttbytes::QoS as WireQoS;
use rumqttc::v5::mqttbytes::v5::{DisconnectReasonCode, Packet};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Accepts MQTT connections on `listener` until `shutdown` is cancelled.
pub async fn serve_tcp(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "could not set TCP_NODELAY");
                }
                let broker = broker.clone();
                tokio::spawn(serve_stream(stream, peer, broker));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one MQTT connection over any byte stream (TCP, or WebSocket at `/mqtt`).
pub async fn serve_stream<S>(stream: S, peer: SocketAddr, broker: Arc<Broker>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if broker.shutdown.is_cancelled() {
        return;
    }
    let _alive = broker.tracker.token();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut inbuf = BytesMut::with_capacity(256);
    let mut codec = MqttCodec::new(broker.settings.max_packet_size as usize);
    let first = tokio::time::timeout(
        broker.settings.connect_timeout,
        connect::read_first(&mut rd, &mut inbuf, &mut codec),
    )
    .await;
    let first = match first {
        Err(_) => {
            tracing::info!(%peer, "no CONNECT within the connect timeout; closing");
            return;
        }
        Ok(Err(Close::Codec(e))) => {
            tracing::info!(%peer, error = %e, "invalid first packet; closing");
            if let Some(code) = connect::refusal_for(&e) {
                let _ = code;
                // Version unknown: answer in the 3.1.1 format, which 3.1 and 5 clients read
                // as "unacceptable protocol version".
                let _ = wr.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
            }
            return;
        }
        Ok(Err(close)) => {
            close.log("-", peer);
            return;
        }
        Ok(Ok(p)) => p,
    };
    let v5 = connect::is_v5(&codec);
    let Packet::Connect(connect_pkt, will, login) = first else {
        tracing::info!(%peer, "first packet was not CONNECT; closing");
        return;
    };
    let accepted = match connect::accept(connect_pkt, will, login, v5, &broker.settings) {
        Ok(a) => a,
        Err(code) => {
            tracing::info!(%peer, ?code, "CONNECT refused");
            let mut out = BytesMut::new();
            let _ = codec.encode(&connect::refusal(code), &mut out, None);
            let _ = wr.write_all(&out).await;
            return;
        }
    };
    let conn = broker.next_conn_id();
    connection::run(broker, conn, peer, accepted, codec, rd, wr, inbuf).await;
}

/// Why a connection ended.
#[derive(Debug)]
pub(crate) enum Close {
    /// The peer closed the TCP connection without DISCONNECT.
    PeerClosed,
    /// A socket error.
    Io(std::io::Error),
    /// The client sent DISCONNECT.
    ClientDisconnect {
        /// MQTT 5 reason 0x04: publish the will anyway.
        with_will: bool,
    },
    /// Another connection took the client id.
    TakenOver,
    /// The gateway is shutting down.
    ServerShutdown,
    /// Nothing arrived for 1.5 × keep-alive.
    KeepAliveTimeout,
    /// Undecodable or invalid bytes.
    Codec(CodecError),
    /// A decodable packet that breaks the protocol.
    Protocol(DisconnectReasonCode, &'static str),
}

impl Close {
    /// Logs the ending once, at a level that matches how unusual it is.
    fn log(&self, client_id: &str, peer: SocketAddr) {
        match self {
            Close::PeerClosed | Close::ClientDisconnect { .. } | Close::ServerShutdown => {
                tracing::debug!(client_id, %peer, reason = ?self, "connection closed");
            }
            Close::Io(e) => tracing::debug!(client_id, %peer, error = %e, "connection lost"),
            Close::TakenOver => tracing::info!(client_id, %peer, "session taken over"),
            Close::KeepAliveTimeout => tracing::info!(client_id, %peer, "keep-alive timeout"),
            Close::Codec(e) => tracing::warn!(client_id, %peer, error = %e, "bad packet; closing"),
            Close::Protocol(code, what) => {
                tracing::warn!(client_id, %peer, ?code, what, "protocol violation; closing");
            }
        }
    }
}

/// The origin stamped on messages an MQTT client publishes.
pub(crate) fn origin_of(client_id: &str) -> String {
    format!("mqtt:{client_id}")
}

/// Wire QoS to core QoS.
pub(crate) fn qos_in(q: WireQoS) -> QoS {
    match q {
        WireQoS::AtMostOnce => QoS::AtMostOnce,
        WireQoS::AtLeastOnce => QoS::AtLeastOnce,
        WireQoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

/// Core QoS to wire QoS.
pub(crate) fn qos_out(q: QoS) -> WireQoS {
    match q {
        QoS::AtMostOnce => WireQoS::AtMostOnce,
        QoS::AtLeastOnce => WireQoS::AtLeastOnce,
        QoS::ExactlyOnce => WireQoS::ExactlyOnce,
    }
}
