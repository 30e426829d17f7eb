//! One network connection to the remote: TCP (and TLS), the CONNECT/CONNACK handshake, a
//! reader task that turns bytes into [`Incoming`] packets, and the writer.

use crate::options::Checked;
use crate::wire::encode::{self, ConnectParams};
use crate::wire::{ConnAck, Decoder, Incoming, WireError, reason};
use bytes::BytesMut;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Packets decoded by the reader task and not yet handled.
const READ_QUEUE: usize = 1024;

/// Why a connection failed or ended. The text goes to the status and the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    /// TCP connect failed (unreachable host, refused port, DNS failure).
    #[error("cannot reach {address}: {reason}")]
    Unreachable {
        /// The remote address.
        address: String,
        /// The OS error.
        reason: String,
    },
    /// The TLS configuration could not be built (files, keys).
    #[error(transparent)]
    TlsConfig(#[from] crate::tls::TlsError),
    /// The TLS handshake failed (certificate not trusted, name mismatch, client certificate
    /// refused).
    #[error("TLS handshake with {address} failed: {reason}")]
    TlsHandshake {
        /// The remote address.
        address: String,
        /// What rustls reported.
        reason: String,
    },
    /// Connect, TLS and CONNACK took longer than `connect_timeout`.
    #[error("no CONNACK from {0} within connect_timeout")]
    Timeout(String),
    /// The remote answered CONNECT with a refusal.
    #[error("{0}")]
    Refused(String),
    /// The remote sent bytes that are not MQTT, or broke the protocol.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Reading or writing failed, or the remote closed the connection.
    #[error("connection to the remote lost: {0}")]
    Io(String),
    /// The remote stayed silent for one and a half keep-alive periods.
    #[error("the remote did not answer within the keep-alive period")]
    KeepAlive,
    /// MQTT 5: the remote sent DISCONNECT.
    #[error("the remote disconnected: {0}")]
    Disconnected(String),
    /// The local side (source or sink) failed; the connection is dropped and retried.
    #[error("{0}")]
    Local(String),
}

/// The stream under the MQTT connection: TCP or TLS over TCP.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A connected, CONNACK'd connection.
pub(crate) struct Conn {
    /// Decoded packets from the remote; an `Err` ends the connection.
    pub rx: mpsc::Receiver<Result<Incoming, ConnError>>,
    /// The write side.
    pub writer: WriteHalf<Box<dyn Stream>>,
    /// The reader task, aborted when the connection is dropped.
    reader: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Conn {
    /// Writes `buf` out and clears it; fails after `timeout` if the remote does not read.
    pub async fn flush(&mut self, buf: &mut BytesMut, timeout: Duration) -> Result<(), ConnError> {
        if buf.is_empty() {
            return Ok(());
        }
        let write = async {
            self.writer.write_all(buf).await?;
            self.writer.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(())) => {
                buf.clear();
                Ok(())
            }
            Ok(Err(e)) => Err(ConnError::Io(e.to_string())),
            Err(_) => Err(ConnError::Io(format!(
                "the remote has not read what we sent for {} s",
                timeout.as_secs()
            ))),
        }
    }
}

/// Connects, sends CONNECT and waits for a successful CONNACK, all within
/// `connect_timeout`.
pub(crate) async fn open(c: &Checked) -> Result<(Conn, ConnAck), ConnError> {
    let address = c.options.address.clone();
    match tokio::time::timeout(c.options.connect_timeout, open_inner(c)).await {
        Ok(r) => r,
        Err(_) => Err(ConnError::Timeout(address)),
    }
}

async fn open_inner(c: &Checked) -> Result<(Conn, ConnAck), ConnError> {
    let o = &c.options;
    let tls = match &o.tls {
        Some(t) => Some(crate::tls::client_config(t)?),
        None => None,
    };
    let tcp = TcpStream::connect((c.host.as_str(), c.port))
        .await
        .map_err(|e| ConnError::Unreachable {
            address: o.address.clone(),
            reason: e.to_string(),
        })?;
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
    let stream: Box<dyn Stream> = match tls {
        None => Box::new(tcp),
        Some(config) => {
            let name = ServerName::try_from(c.server_name.clone()).map_err(|e| {
                ConnError::TlsHandshake {
                    address: o.address.clone(),
                    reason: format!("{:?} is not a valid server name: {e}", c.server_name),
                }
            })?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(&config))
                .connect(name, tcp)
                .await
                .map_err(|e| ConnError::TlsHandshake {
                    address: o.address.clone(),
                    reason: e.to_string(),
                })?;
            Box::new(tls)
        }
    };
    let (read, writer) = tokio::io::split(stream);
    let decoder = Decoder {
        protocol: o.protocol,
        max_packet_size: o.max_packet_size as usize,
    };
    let (tx, rx) = mpsc::channel(READ_QUEUE);
    let reader = tokio::spawn(read_loop(read, decoder, tx));
    let mut conn = Conn { rx, writer, reader };

    let mut buf = BytesMut::new();
    encode::connect(
        &ConnectParams {
            protocol: o.protocol,
            client_id: &o.client_id,
            keep_alive: u16::try_from(o.keep_alive.as_secs()).unwrap_or(u16::MAX),
            username: o.username.as_deref(),
            password: o.password.as_deref(),
            session_expiry: u32::try_from(o.session_expiry.as_secs()).unwrap_or(u32::MAX),
            receive_maximum: o.receive_maximum,
            max_packet_size: o.max_packet_size,
        },
        &mut buf,
    )?;
    conn.flush(&mut buf, o.connect_timeout).await?;
    match conn.rx.recv().await {
        Some(Ok(Incoming::ConnAck(ack))) if ack.code == 0 => Ok((conn, ack)),
        Some(Ok(Incoming::ConnAck(ack))) => {
            let mut text = reason::connack(o.protocol, ack.code);
            if let Some(r) = ack.reason_string {
                text.push_str(&format!(" ({r})"));
            }
            Err(ConnError::Refused(text))
        }
        Some(Ok(_)) => Err(ConnError::Wire(WireError::Malformed(
            "the first packet from the remote was not CONNACK".into(),
        ))),
        Some(Err(e)) => Err(e),
        None => Err(ConnError::Io("the reader stopped".into())),
    }
}

/// Reads and decodes until the connection fails; the error is the last item sent.
async fn read_loop(
    mut read: ReadHalf<Box<dyn Stream>>,
    decoder: Decoder,
    tx: mpsc::Sender<Result<Incoming, ConnError>>,
) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(p)) => {
                    if tx.send(Ok(p)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(ConnError::Wire(e))).await;
                    return;
                }
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        match read.read_buf(&mut buf).await {
            Ok(0) => {
                let _ = tx
                    .send(Err(ConnError::Io(
                        "the remote closed the connection".into(),
                    )))
                    .await;
                return;
            }
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Err(ConnError::Io(e.to_string()))).await;
                return;
            }
        }
    }
}
