//! A minimal MQTT 3.1.1 client over one TCP socket, for scenarios that open thousands of
//! connections (idle memory, reconnect storm). It does CONNECT → CONNACK, SUBSCRIBE → SUBACK,
//! PINGREQ and DISCONNECT, and nothing else, so the load generator stays far smaller and cheaper
//! than the broker it measures. Packets are encoded and decoded with rumqttc's `mqttbytes`.

use std::io;
use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
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

    /// Writes bytes as they are (pre-encoded packets).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), RawError> {
        self.stream.write_all(bytes).await.map_err(RawError::Io)
    }

    /// Reads once and counts the PUBLISH packets completed by what arrived, without decoding
    /// them (a subscriber that only counts stays far cheaper than the broker it measures).
    /// Other packets are skipped. Cancel-safe.
    pub async fn count_publishes(&mut self) -> Result<u64, RawError> {
        self.read_more().await?;
        if self.buf.capacity() - self.buf.len() < 16 * 1024 {
            self.buf.reserve(64 * 1024);
        }
        count_publish_frames(&mut self.buf)
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
            self.read_more().await?;
        }
    }

    /// Reads what is there into the buffer; a closed connection is an error.
    async fn read_more(&mut self) -> Result<(), RawError> {
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .map_err(RawError::Io)?;
        if n == 0 {
            return Err(RawError::Closed);
        }
        Ok(())
    }
}

/// Removes every complete packet from the front of `buf` and counts the PUBLISH ones; an
/// incomplete packet stays for the next read.
pub fn count_publish_frames(buf: &mut BytesMut) -> Result<u64, RawError> {
    let mut publishes = 0;
    loop {
        match mqttbytes::check(buf.iter(), MAX_INCOMING) {
            Ok(header) => {
                if buf[0] >> 4 == 3 {
                    publishes += 1;
                }
                buf.advance(header.frame_length());
            }
            Err(mqttbytes::Error::InsufficientBytes(_)) => return Ok(publishes),
            Err(e) => return Err(RawError::Malformed(e.to_string())),
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

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::v4::Publish;

    fn encoded(packet: Packet) -> Vec<u8> {
        let mut out = BytesMut::new();
        packet.write(&mut out, MAX_INCOMING).unwrap();
        out.to_vec()
    }

    #[test]
    fn counts_publishes_across_split_reads_and_skips_other_packets() {
        let small = encoded(Packet::Publish(Publish::new(
            "a/b",
            QoS::AtMostOnce,
            vec![7; 10],
        )));
        // 300 bytes of payload: a two-byte remaining length.
        let big = encoded(Packet::Publish(Publish::new(
            "a",
            QoS::AtMostOnce,
            vec![1; 300],
        )));
        assert_eq!(big[2] & 0x80, 0);
        assert_ne!(big[1] & 0x80, 0, "two-byte length expected");
        let mut stream = Vec::new();
        for _ in 0..3 {
            stream.extend_from_slice(&small);
            stream.extend_from_slice(&PINGREQ);
            stream.extend_from_slice(&big);
        }
        // Fed in every split: the total is always 6 and nothing is left over.
        for cut in 0..stream.len() {
            let mut buf = BytesMut::from(&stream[..cut]);
            let mut n = count_publish_frames(&mut buf).unwrap();
            buf.extend_from_slice(&stream[cut..]);
            n += count_publish_frames(&mut buf).unwrap();
            assert_eq!(n, 6, "split at {cut}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn a_length_over_four_bytes_or_the_limit_is_an_error() {
        let mut buf = BytesMut::from(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
        assert!(count_publish_frames(&mut buf).is_err());
        // 2 MiB announced: over the limit, refused before the body arrives.
        let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x01][..]);
        assert!(count_publish_frames(&mut buf).is_err());
    }
}
