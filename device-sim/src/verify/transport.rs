//! The seam between the verifier loop and its three transports: one connection type
//! ([`Conn`]) that opens a subscription (fresh, or resuming), yields [`Event`]s and closes,
//! whatever it speaks underneath.

use std::time::Duration;

use super::source::Source;
use super::{mqtt, sse, ws};
use crate::stamp::Stamp;

/// What a connection observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message.
    Message {
        /// Its stamp, if it carries one.
        stamp: Option<Stamp>,
        /// Its gateway position (`None` over MQTT).
        position: Option<String>,
        /// Sent because a retained message exists, not as part of the live stream.
        retained: bool,
    },
    /// The resume position moved without a message (SSE heartbeat `id:`).
    Position(String),
    /// Continuity was lost; the notice as received.
    Reset(String),
    /// The gateway dropped this many messages for the connection.
    Dropped(u64),
    /// The server reported an error not tied to a request; the object as received.
    ServerError(String),
}

/// Why a connection could not be opened or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnError {
    /// A short stable name for reports (`connect`, `closed`, `refused`, ...).
    pub kind: &'static str,
    /// What happened.
    pub detail: String,
    /// True when trying again cannot help (a refused subscription, a bad position).
    pub fatal: bool,
}

impl ConnError {
    /// An error worth retrying.
    pub fn retry(kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            fatal: false,
        }
    }

    /// An error retrying cannot fix.
    pub fn fatal(kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            fatal: true,
        }
    }
}

/// MQTT options of the verifier's client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSettings {
    /// Protocol version: 5 (stamps in user properties or payload) or 4 (3.1.1; payload only).
    pub version: u8,
    /// Subscription QoS.
    pub qos: u8,
    /// Client id; fixed across reconnections so a persistent session resumes.
    pub client_id: String,
    /// Ask for a persistent session (resume after a disconnect without loss).
    pub persistent: bool,
}

/// What every connection of a run subscribes with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Filters to subscribe to.
    pub filters: Vec<String>,
    /// Gateway position the first connection starts after (`--since`).
    pub since: Option<String>,
    /// MQTT client options.
    pub mqtt: MqttSettings,
    /// Bound on connecting and subscribing.
    pub connect_timeout: Duration,
}

/// Where a new connection starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start<'a> {
    /// The first connection of the run: `--since`, or now.
    Fresh,
    /// A reconnection: after this gateway position (WS `since`, SSE `Last-Event-ID`), or the
    /// persistent session (MQTT).
    Resume(Option<&'a str>),
}

/// An open, subscribed connection.
pub struct Opened {
    /// The connection.
    pub conn: Conn,
    /// The gateway position the subscription starts after, when the transport has one.
    pub position: Option<String>,
    /// MQTT: the broker did not keep the session asked for on a resume.
    pub session_lost: bool,
}

/// A subscription over one of the transports.
pub enum Conn {
    /// The gateway's `/ws`.
    Ws(Box<ws::WsConn>),
    /// The gateway's `/sse`.
    Sse(Box<sse::SseConn>),
    /// An MQTT broker.
    Mqtt(Box<mqtt::MqttConn>),
}

impl Conn {
    /// Connects and subscribes, bounded by `settings.connect_timeout`.
    pub async fn open(
        source: &Source,
        settings: &Settings,
        start: Start<'_>,
    ) -> Result<Opened, ConnError> {
        let open = async {
            match source {
                Source::Ws(url) => ws::WsConn::open(url, settings, start).await,
                Source::Sse { host, port, path } => {
                    sse::SseConn::open(host, *port, path, settings, start).await
                }
                Source::Mqtt { host, port } => {
                    mqtt::MqttConn::open(host, *port, settings, start).await
                }
            }
        };
        match tokio::time::timeout(settings.connect_timeout, open).await {
            Ok(result) => result,
            Err(_) => Err(ConnError::retry(
                "connect_timeout",
                format!(
                    "no subscription within {:.1} s",
                    settings.connect_timeout.as_secs_f64()
                ),
            )),
        }
    }

    /// The next event; an error ends the connection.
    pub async fn next(&mut self) -> Result<Event, ConnError> {
        match self {
            Conn::Ws(c) => c.next().await,
            Conn::Sse(c) => c.next().await,
            Conn::Mqtt(c) => c.next().await,
        }
    }

    /// Closes the connection politely (MQTT DISCONNECT, WebSocket close), bounded in time.
    /// Returns the messages that arrived while closing: over MQTT they are acknowledged, so
    /// the broker will not send them again and they must be counted.
    pub async fn close(self) -> Vec<Event> {
        let mut late = Vec::new();
        let close = async {
            match self {
                Conn::Ws(c) => c.close().await,
                Conn::Sse(c) => drop(c),
                Conn::Mqtt(c) => c.close(&mut late).await,
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), close).await;
        late
    }
}
