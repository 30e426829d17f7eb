//! A minimal MQTT 3.1.1 client over one TCP socket, for scenarios that open thousands of
//! connections (idle memory, reconnect storm). It does CONNECT → CONNACK, SUBSCRIBE → SUBACK,
//! PINGREQ and DISCONNECT, and nothing else, so the load generator stays far smaller and cheaper
//! than the broker it measures. Packets are encoded and decoded with rumqttc's `mqttbytes`.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Packet, Subscribe, SubscribeReasonCode,
};
use rumqttc::mqttbytes::{self, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest packet accepted from the broker; anything bigger is a protocol error here.
const MAX_INCOMING: usize = 1024 * 1024;

/// What went wrong on one raw connection. [`RawError::kind`] names it for error tallies.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    /// The TCP connection could not be opened.
    #[error("TCP connect failed: {0}")]
    Connect(io::Error),
    /// Reading or writing the socket failed.
    #[error("socket error: {0}")]
    Io(io::Error),
    /// The broker closed the connection before answering.
    #[error("the broker closed the connection")]
    Closed,
    /// CONNACK carried a refusal code.
    #[error("the broker refused the connection: {0:?}")]
    Refused(ConnectReturnCode),
    /// SUBACK carried a failure code.
    #[error("the broker refused the subscription")]
    SubscribeRefused,
    /// The broker sent bytes that are not valid MQTT 3.1.1.
    #[error("malformed packet from the broker: {0}")]
    Malformed(String),
    /// The broker sent a valid packet where another was required.
    #[error("expected {expected} from the broker, got {got}")]
    Unexpected {
        /// What the exchange required.
        expected: &'static str,
        /// What arrived instead.
        got: String,
    },
}

impl RawError {
    /// A short stable name for error tallies in reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect(_) => "tcp_connect_failed",
            Self::Io(_) => "socket_error",
            Self::Closed => "closed_by_broker",
            Self::Refused(_) => "connack_refused",
            Self::SubscribeRefused => "suback_refused",
            Self::Malformed(_) => "malformed_packet",
            Self::Unexpected { .. } => "unexpected_packet",
        }
    }
}

/// How to connect.
#[derive(Debug, Clone, Copy)]
pub struct ConnectSpec<'a> {
    /// MQTT client identifier.
    pub client_id: &'a str,
    /// Keep-alive announced in CONNECT, in seconds (0 = none).
    pub keep_alive_secs: u16,
    /// MQTT 3.1.1 clean-session flag; false asks for a persistent session.
    pub clean_session: bool,
}

/// One connected client in the middle of a short scripted exchange.
pub struct RawConnection {
    stream: TcpStream,
    buf: BytesMut,
}

impl RawConnection {
    /// Opens a TCP connection, sends CONNECT and waits for a successful CONNACK. Returns the
    /// connection and CONNACK's session-present flag.
    pub async fn connect(
        addr: SocketAddr,
        spec: ConnectSpec<'_>,
    ) -> Result<(Self, bool), RawError> {
        let stream = TcpStream::connect(addr).await.map_err(RawError::Connect)?;
        // Best effort: Nagle only delays the next small packet of this exchange.
        let _ = stream.set_nodelay(true);
        let mut conn = Self {
            stream,
            buf: BytesMut::with_capacity(64),
        };
        let mut connect = Connect::new(spec.client_id);
        connect.keep_alive = spec.keep_alive_secs;
        connect.clean_session = spec.clean_session;
        conn.send(&Packet::Connect(connect)).await?;
        match conn.read_packet().await? {
            Packet::ConnAck(ConnAck {
                code: ConnectReturnCode::Success,
                session_present,
            }) => Ok((conn, session_present)),
            Packet::ConnAck(ConnAck { code, .. }) => Err(RawError::Refused(code)),
            other => Err(unexpected("CONNACK", &other)),
        }
    }

    /// Subscribes to one filter and waits for its SUBACK. Other packets that arrive meanwhile
    /// (PUBLISH of a resumed session) are skipped.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS, pkid: u16) -> Result<(), RawError> {
        let mut subscribe = Subscribe::new(filter, qos);
        subscribe.pkid = pkid.max(1);
        let pkid = subscribe.pkid;
        self.send(&Packet::Subscribe(subscribe)).await?;
        loop {
            match self.read_packet().await? {
                Packet::SubAck(ack) if ack.pkid == pkid => {
                    return if ack
                        .return_codes
                        .iter()
                        .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
                    {
                        Ok(())
                    } else {
                        Err(RawError::SubscribeRefused)
                    };
                }
                Packet::Publish(_) | Packet::PubRel(_) | Packet::PingResp => continue,
                other => return Err(unexpected("SUBACK", &other)),
            }
        }
    }

    /// Sends DISCONNECT and closes the socket.
    pub async fn disconnect(mut self) -> Result<(), RawError> {
        self.send(&Packet::Disconnect).await?;
        self.stream.shutdown().await.map_err(RawError::Io)
    }

    /// Keeps only the socket, dropping the read buffer: what an idle connection needs.
    pub fn into_idle(self) -> IdleConnection {
        IdleConnection {
            stream: self.stream,
        }
    }

    async fn send(&mut self, packet: &Packet) -> Result<(), RawError> {
        let mut out = BytesMut::with_capacity(packet.size());
        packet
            .write(&mut out, MAX_INCOMING)
            .map_err(|e| RawError::Malformed(format!("cannot encode {packet:?}: {e}")))?;
        self.stream.write_all(&out).await.map_err(RawError::Io)
    }

    async fn read_packet(&mut self) -> Result<Packet, RawError> {
        loop {
            match Packet::read(&mut self.buf, MAX_INCOMING) {
                Ok(packet) => return Ok(packet),
                Err(mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => return Err(RawError::Malformed(e.to_string())),
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(RawError::Io)?;
            if n == 0 {
                return Err(RawError::Closed);
            }
        }
    }
}

fn unexpected(expected: &'static str, got: &Packet) -> RawError {
    let got = format!("{got:?}");
    RawError::Unexpected {
        expected,
        got: got.chars().take(80).collect(),
    }
}

/// A connected client that only holds its socket: no buffer, no task.
pub struct IdleConnection {
    stream: TcpStream,
}

/// PINGREQ on the wire.
const PINGREQ: [u8; 2] = [0xC0, 0x00];

impl IdleConnection {
    /// Sends PINGREQ without waiting, so the broker's keep-alive does not expire. Returns false
    /// when the socket could not take the two bytes.
    pub fn ping(&self) -> bool {
        matches!(self.stream.try_write(&PINGREQ), Ok(2))
    }

    /// Reads and discards whatever the broker sent (PINGRESP). Returns false when the broker
    /// has closed the connection.
    pub fn drain(&self) -> bool {
        let mut scratch = [0u8; 256];
        loop {
            match self.stream.try_read(&mut scratch) {
                Ok(0) => return false,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
    }
}
