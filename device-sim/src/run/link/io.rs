//! The byte stream under a link: TCP, TLS over TCP, or WebSocket (binary frames, subprotocol
//! `mqtt`) over either, opened from the broker URL and polled by the link.
//!
//! An idle device holds no read buffer: on plain TCP the link waits for the socket to become
//! readable before it lends one, and other streams only borrow it while they are polled.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use rumqttc::tokio_rustls::{TlsConnector, client::TlsStream};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use super::{LinkError, LinkSpec};
use crate::scenario::Transport;

/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 2 * 1024;
/// WebSocket read buffer (tungstenite's default is 128 KiB per connection).
const WS_READ_BUFFER: usize = 4 * 1024;

/// TCP, or TLS over TCP.
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS (boxed: a TLS session is large and a fleet may hold many).
    Tls(Box<TlsStream<TcpStream>>),
}

/// What a link reads and writes.
pub enum Io {
    /// MQTT straight on the stream.
    Plain(Stream),
    /// MQTT in WebSocket binary frames.
    Ws(Box<WebSocketStream<Stream>>),
}

/// Opens the stream the spec's broker URL asks for (TCP, TLS, WebSocket handshake).
pub async fn connect(spec: &LinkSpec) -> Result<Io, LinkError> {
    let broker = &spec.broker;
    let tcp = TcpStream::connect((broker.host.as_str(), broker.port))
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionRefused => LinkError {
                kind: "connection_refused",
                detail: "connection refused".into(),
            },
            _ => socket_error(e),
        })?;
    // Best effort: without it a small publish may wait for the previous one's ack.
    let _ = tcp.set_nodelay(true);
    let stream = if broker.uses_tls() {
        Stream::Tls(Box::new(tls(spec, tcp).await?))
    } else {
        Stream::Tcp(tcp)
    };
    Ok(match broker.transport {
        Transport::Tcp | Transport::Tls => Io::Plain(stream),
        Transport::Ws | Transport::Wss => Io::Ws(Box::new(websocket(spec, stream).await?)),
    })
}

async fn tls(spec: &LinkSpec, tcp: TcpStream) -> Result<TlsStream<TcpStream>, LinkError> {
    let tls_error = |detail: String| LinkError {
        kind: "tls_error",
        detail,
    };
    // `run` builds a configuration for every TLS broker; this is the fallback of a bug.
    let config = spec
        .tls
        .clone()
        .ok_or_else(|| tls_error("no TLS configuration".into()))?;
    let name = ServerName::try_from(spec.broker.host.clone())
        .map_err(|e| tls_error(format!("{}: {e}", spec.broker.host)))?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| tls_error(e.to_string()))
}

async fn websocket(spec: &LinkSpec, stream: Stream) -> Result<WebSocketStream<Stream>, LinkError> {
    let ws_error = |detail: String| LinkError {
        kind: "connection_error",
        detail: format!("WebSocket handshake: {detail}"),
    };
    let mut request = spec
        .broker
        .to_string()
        .into_client_request()
        .map_err(|e| ws_error(e.to_string()))?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(|e| match e {
            tungstenite::Error::Http(resp) => ws_error(format!("HTTP {}", resp.status())),
            tungstenite::Error::Io(e) => socket_error(e),
            other => ws_error(other.to_string()),
        })?;
    Ok(ws)
}

/// A failed read or write.
pub fn socket_error(e: io::Error) -> LinkError {
    LinkError {
        kind: "socket_error",
        detail: e.to_string(),
    }
}

impl Io {
    /// Reads what has arrived into `buf`; `Ok(0)` when the broker closed the connection.
    pub fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        match self {
            Io::Plain(Stream::Tcp(tcp)) => loop {
                ready!(tcp.poll_read_ready(cx))?;
                buf.reserve(READ_CHUNK);
                match tcp.try_read_buf(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    other => return Poll::Ready(other),
                }
            },
            Io::Plain(stream) => {
                buf.reserve(READ_CHUNK);
                tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf)
            }
            Io::Ws(ws) => loop {
                match ready!(ws.poll_next_unpin(cx)) {
                    Some(Ok(Message::Binary(b))) if !b.is_empty() => {
                        buf.extend_from_slice(&b);
                        return Poll::Ready(Ok(b.len()));
                    }
                    Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(0)),
                    // Pings are answered by tungstenite; text frames are not MQTT.
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Poll::Ready(Err(ws_io(e))),
                }
            },
        }
    }

    /// Writes some of `data`; how much.
    pub fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            Io::Plain(stream) => Pin::new(stream).poll_write(cx, data),
            Io::Ws(ws) => {
                ready!(ws.poll_ready_unpin(cx)).map_err(ws_io)?;
                ws.start_send_unpin(Message::Binary(Bytes::copy_from_slice(data)))
                    .map_err(ws_io)?;
                Poll::Ready(Ok(data.len()))
            }
        }
    }

    /// Pushes written bytes through TLS and WebSocket buffers to the socket.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Io::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Io::Ws(ws) => ws.poll_flush_unpin(cx).map_err(ws_io),
        }
    }
}

fn ws_io(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            io::ErrorKind::ConnectionAborted.into()
        }
        other => io::Error::other(other),
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, data),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
