//! One MQTT connection of a simulated device: a [`Link`] opened with a [`LinkSpec`], which
//! takes requests (publish, subscribe, disconnect) and yields [`Event`]s, over MQTT 3.1.1 or
//! 5 on TCP, TLS, WebSocket or secure WebSocket.
//!
//! A link is used for one connection only: the device drops it when the connection fails and
//! opens a new one, so it decides when to retry (with backoff) and what to re-send (its own
//! outbox). [`Link::next`] is cancel-safe: all state lives in the link, so the device may
//! poll it in a `select!` beside its timers.
//!
//! A fleet holds thousands of links, mostly idle, so a link is small: the protocol state, a
//! socket, one timer, and buffers that exist only while there are bytes in them. That is why
//! it speaks MQTT itself on rumqttc's packet codecs: rumqttc's client event loop keeps ~40 kB
//! of buffers and queues per connection whatever its options.
//!
//! # Layout
//! - `core`: the protocol with no I/O (packet ids, in-flight window, queue, keep-alive).
//! - `codec`: MQTT 3.1.1 and 5 packets (rumqttc's `mqttbytes`) in one vocabulary.
//! - `io`: TCP, TLS and WebSocket streams.

mod codec;
mod core;
mod io;

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::{Instant, Sleep, sleep_until};

use self::core::Core;
pub use self::core::Refused;
use self::io::{Io, socket_error};
use super::outbox::Props;
use crate::scenario::{Broker, Protocol};

/// Everything needed to open one connection.
#[derive(Debug, Clone)]
pub struct LinkSpec {
    /// Client id.
    pub client_id: String,
    /// Where to connect (possibly the fault proxy).
    pub broker: Broker,
    /// TLS configuration, for `mqtts://` and `wss://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// MQTT version.
    pub protocol: Protocol,
    /// Username and password.
    pub credentials: Option<(String, String)>,
    /// Keep-alive.
    pub keep_alive: Duration,
    /// Clean session / clean start.
    pub clean_session: bool,
    /// MQTT 5 session expiry.
    pub session_expiry: Option<Duration>,
    /// In-flight window for QoS 1/2.
    pub inflight: u16,
    /// Publishes that may wait for room in the window before further ones are refused.
    pub queue: usize,
    /// Last will.
    pub will: Option<Will>,
}

impl LinkSpec {
    fn v5(&self) -> bool {
        self.protocol == Protocol::V5
    }
}

/// A last will, expanded for one device.
#[derive(Debug, Clone)]
pub struct Will {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: String,
    /// QoS.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
}

/// One publish handed to a link.
#[derive(Debug, Clone)]
pub struct Publish {
    /// Topic.
    pub topic: String,
    /// QoS.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
    /// Payload.
    pub payload: Bytes,
    /// MQTT 5 properties.
    pub props: Option<Props>,
}

/// What happened on a link.
#[derive(Debug)]
pub enum Event {
    /// The broker accepted the connection.
    ConnAck,
    /// A publish was written; its packet id (0 for QoS 0). Publishes are written in the order
    /// the link accepted them.
    Sent(u16),
    /// A QoS 1/2 publish is finished: PUBACK, PUBCOMP, or a refusing PUBREC; `ok` is false
    /// when the broker refused it (MQTT 5 reason code).
    Acked {
        /// Packet id.
        pkid: u16,
        /// Whether the broker accepted it.
        ok: bool,
    },
    /// A message for one of the device's subscriptions (boxed: it is rare, and it would
    /// make every queued event as large as itself).
    Received(Box<Incoming>),
    /// A SUBACK; how many filters were refused.
    SubAck(usize),
    /// The DISCONNECT the device asked for was written.
    Disconnected,
}

/// A message received by a device.
#[derive(Debug)]
pub struct Incoming {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// MQTT 5 response topic.
    pub response_topic: Option<String>,
    /// MQTT 5 correlation data.
    pub correlation: Option<Bytes>,
}

/// Why a link ended, as a stable kind (for tallies) and a detail (for people).
#[derive(Debug, Clone)]
pub struct LinkError {
    /// Stable short name, e.g. `connection_refused`.
    pub kind: &'static str,
    /// What happened.
    pub detail: String,
}

/// One open connection.
pub struct Link {
    io: Io,
    core: Core,
    /// Bytes read and not yet a whole packet; empty (no allocation) while idle.
    rbuf: BytesMut,
    /// Keep-alive timer.
    timer: Pin<Box<Sleep>>,
    /// Bytes were written since the last flush.
    dirty: bool,
}

impl Link {
    /// Connects, sends CONNECT and waits for the broker to accept (the caller bounds the
    /// wait).
    pub async fn open(spec: &LinkSpec) -> Result<Self, LinkError> {
        let io = io::connect(spec).await?;
        let now = Instant::now();
        let mut link = Link {
            io,
            core: Core::new(spec, now)?,
            rbuf: BytesMut::new(),
            timer: Box::pin(sleep_until(now + spec.keep_alive)),
            dirty: false,
        };
        // While connecting, CONNACK is the only event there can be.
        while !matches!(link.next().await?, Event::ConnAck) {}
        Ok(link)
    }

    /// Queues a publish; it is written (and reported as [`Event::Sent`]) while
    /// [`Link::next`] is polled.
    pub fn publish(&mut self, p: Publish) -> Result<(), Refused> {
        self.core.publish(p, Instant::now())
    }

    /// Subscribes to one filter.
    pub fn subscribe(&mut self, filter: &str, qos: u8) -> Result<(), Refused> {
        self.core.subscribe(filter, qos, Instant::now())
    }

    /// Queues a DISCONNECT; [`Event::Disconnected`] follows once it is written. False when
    /// the link is already closing.
    pub fn disconnect(&mut self) -> bool {
        self.core.disconnect(Instant::now())
    }

    /// The next event; writes what is queued and keeps the connection alive meanwhile.
    /// Cancel-safe.
    pub async fn next(&mut self) -> Result<Event, LinkError> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Event, LinkError>> {
        loop {
            if let Some(e) = self.core.take_failure() {
                return Poll::Ready(Err(e));
            }
            if let Some(ev) = self.core.pop_event() {
                return Poll::Ready(Ok(ev));
            }
            let mut progress = false;
            while !self.core.to_write().is_empty() {
                match self.io.poll_write(cx, self.core.to_write()) {
                    Poll::Ready(Ok(0)) => {
                        let e = std::io::ErrorKind::WriteZero.into();
                        return Poll::Ready(Err(socket_error(e)));
                    }
                    Poll::Ready(Ok(n)) => {
                        self.dirty = true;
                        progress = true;
                        if let Err(e) = self.core.wrote(n, Instant::now()) {
                            return Poll::Ready(Err(e));
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(socket_error(e))),
                    Poll::Pending => break,
                }
            }
            if self.dirty && self.core.to_write().is_empty() {
                match self.io.poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        self.dirty = false;
                        self.core.flushed();
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(socket_error(e))),
                    Poll::Pending => {}
                }
            }
            match self.io.poll_read(cx, &mut self.rbuf) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(LinkError {
                        kind: "closed_by_broker",
                        detail: "connection closed by the broker".into(),
                    }));
                }
                Poll::Ready(Ok(_)) => {
                    progress = true;
                    if let Err(e) = self.core.receive(&mut self.rbuf, Instant::now()) {
                        return Poll::Ready(Err(e));
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(socket_error(e))),
                Poll::Pending => {}
            }
            if let Some(at) = self.core.deadline() {
                if self.timer.deadline() != at {
                    self.timer.as_mut().reset(at);
                }
                if self.timer.as_mut().poll(cx).is_ready() {
                    progress = true;
                    // The timer has fired, so the deadline has passed whatever the clock's
                    // rounding says.
                    if let Err(e) = self.core.on_timer(Instant::now().max(at)) {
                        return Poll::Ready(Err(e));
                    }
                }
            }
            if !progress {
                if self.rbuf.is_empty() {
                    // Let an idle connection's read buffer go.
                    self.rbuf = BytesMut::new();
                }
                return Poll::Pending;
            }
        }
    }
}
