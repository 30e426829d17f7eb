//! One MQTT connection of a simulated device, over rumqttc's 3.1.1 or 5 client, seen
//! through one small interface: a [`Client`] to queue requests and a stream of [`Event`]s.
//!
//! A link is used for one connection only. rumqttc reconnects by itself when polled after an
//! error and then re-sends what it had in flight; the device instead drops the link and opens
//! a new one, so it decides when to retry (with backoff) and what to re-send (its own outbox).
//! The event loop is polled inside the stream, which is never cancelled mid-poll.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::{self, StreamExt};
use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::{TlsConfiguration, Transport as RTransport, v5};

use super::outbox::Props;
use crate::scenario::{Broker, Protocol, Transport};

/// Largest packet a device sends or accepts.
const MAX_PACKET: usize = 1024 * 1024;

/// Everything needed to open one connection.
#[derive(Clone)]
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
    /// Request queue of the client.
    pub queue: usize,
    /// Last will: topic, payload, QoS, retain.
    pub will: Option<(String, String, u8, bool)>,
}

/// What happened on a link.
#[derive(Debug)]
pub enum Event {
    /// The broker accepted the connection.
    ConnAck,
    /// A publish was written; its packet id (0 for QoS 0).
    Sent(u16),
    /// A QoS 1/2 publish is waiting for a packet id held by an older, unacknowledged one.
    AwaitAck(u16),
    /// A QoS 1/2 publish is finished: PUBACK, PUBCOMP, or a refusing PUBREC; `ok` is false
    /// when the broker refused it (MQTT 5 reason code).
    Acked {
        /// Packet id.
        pkid: u16,
        /// Whether the broker accepted it.
        ok: bool,
    },
    /// A message for one of the device's subscriptions.
    Received(Incoming),
    /// A SUBACK; how many filters were refused.
    SubAck(usize),
    /// The DISCONNECT the device asked for was written.
    Disconnected,
    /// Anything else (pings, acks the device sends).
    Other,
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

/// The request side of a link.
#[derive(Clone)]
pub enum Client {
    /// MQTT 3.1.1.
    V4(rumqttc::AsyncClient),
    /// MQTT 5.
    V5(v5::AsyncClient),
}

/// The events of a link, in order.
pub type Events = Pin<Box<dyn Stream<Item = Result<Event, LinkError>> + Send>>;

/// Opens a link: nothing happens on the network until the events are polled.
pub fn open(spec: &LinkSpec) -> (Client, Events) {
    match spec.protocol {
        Protocol::V311 => open_v4(spec),
        Protocol::V5 => open_v5(spec),
    }
}

fn transport(spec: &LinkSpec) -> RTransport {
    // `run` builds a configuration for every TLS broker; without one the connection fails
    // (no trusted CA), which is counted like any other failure.
    let tls = || match spec.tls.clone() {
        Some(config) => TlsConfiguration::Rustls(config),
        None => TlsConfiguration::Simple {
            ca: Vec::new(),
            alpn: None,
            client_auth: None,
        },
    };
    match spec.broker.transport {
        Transport::Tcp => RTransport::Tcp,
        Transport::Tls => RTransport::Tls(tls()),
        Transport::Ws => RTransport::Ws,
        Transport::Wss => RTransport::Wss(tls()),
    }
}

/// rumqttc takes a WebSocket broker as a URL in place of the host.
fn host(spec: &LinkSpec) -> String {
    match spec.broker.transport {
        Transport::Ws | Transport::Wss => spec.broker.to_string(),
        _ => spec.broker.host.clone(),
    }
}

fn open_v4(spec: &LinkSpec) -> (Client, Events) {
    let mut o = rumqttc::MqttOptions::new(&spec.client_id, host(spec), spec.broker.port);
    o.set_keep_alive(spec.keep_alive)
        .set_clean_session(spec.clean_session || spec.client_id.is_empty())
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_inflight(spec.inflight.max(1))
        .set_transport(transport(spec));
    if let Some((user, pass)) = &spec.credentials {
        o.set_credentials(user, pass);
    }
    if let Some((topic, payload, qos, retain)) = &spec.will {
        o.set_last_will(rumqttc::LastWill::new(
            topic,
            payload.as_bytes(),
            qos4(*qos),
            *retain,
        ));
    }
    let (client, eventloop) = rumqttc::AsyncClient::new(o, spec.queue.max(1));
    let events = stream::unfold(eventloop, |mut el| async move {
        let r = el.poll().await;
        Some((r, el))
    })
    .map(|r| r.map(event_v4).map_err(error_v4));
    (Client::V4(client), Box::pin(events))
}

fn open_v5(spec: &LinkSpec) -> (Client, Events) {
    let mut o = v5::MqttOptions::new(&spec.client_id, host(spec), spec.broker.port);
    o.set_keep_alive(spec.keep_alive.max(Duration::from_secs(5)))
        .set_clean_start(spec.clean_session)
        .set_max_packet_size(Some(MAX_PACKET as u32))
        .set_outgoing_inflight_upper_limit(spec.inflight.max(1))
        .set_transport(transport(spec));
    if let Some(expiry) = spec.session_expiry {
        o.set_session_expiry_interval(Some(u32::try_from(expiry.as_secs()).unwrap_or(u32::MAX)));
    }
    if let Some((user, pass)) = &spec.credentials {
        o.set_credentials(user, pass);
    }
    if let Some((topic, payload, qos, retain)) = &spec.will {
        o.set_last_will(p5::LastWill::new(
            topic,
            payload.as_bytes(),
            qos5(*qos),
            *retain,
            None,
        ));
    }
    let (client, eventloop) = v5::AsyncClient::new(o, spec.queue.max(1));
    let events = stream::unfold(eventloop, |mut el| async move {
        let r = el.poll().await;
        Some((r, el))
    })
    .map(|r| r.map(event_v5).map_err(error_v5));
    (Client::V5(client), Box::pin(events))
}

impl Client {
    /// Queues a publish without waiting; false when the queue is full (or the link gone).
    pub fn publish(
        &self,
        topic: &str,
        qos: u8,
        retain: bool,
        payload: Bytes,
        props: Option<&Props>,
    ) -> bool {
        match self {
            Client::V4(c) => c
                .try_publish(topic, qos4(qos), retain, payload.to_vec())
                .is_ok(),
            Client::V5(c) => match props {
                Some(p) => {
                    let props = p5::PublishProperties {
                        user_properties: p.user_properties.clone(),
                        correlation_data: p.correlation.clone(),
                        ..Default::default()
                    };
                    c.try_publish_with_properties(topic, qos5(qos), retain, payload, props)
                        .is_ok()
                }
                None => c.try_publish(topic, qos5(qos), retain, payload).is_ok(),
            },
        }
    }

    /// Queues a subscription; false when the queue is full.
    pub fn subscribe(&self, filter: &str, qos: u8) -> bool {
        match self {
            Client::V4(c) => c.try_subscribe(filter, qos4(qos)).is_ok(),
            Client::V5(c) => c.try_subscribe(filter, qos5(qos)).is_ok(),
        }
    }

    /// Queues a DISCONNECT; false when the queue is full.
    pub fn disconnect(&self) -> bool {
        match self {
            Client::V4(c) => c.try_disconnect().is_ok(),
            Client::V5(c) => c.try_disconnect().is_ok(),
        }
    }
}

fn qos4(q: u8) -> rumqttc::QoS {
    match q {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

fn qos5(q: u8) -> v5::mqttbytes::QoS {
    match q {
        0 => v5::mqttbytes::QoS::AtMostOnce,
        1 => v5::mqttbytes::QoS::AtLeastOnce,
        _ => v5::mqttbytes::QoS::ExactlyOnce,
    }
}

fn event_v4(e: rumqttc::Event) -> Event {
    use rumqttc::{Event as E, Outgoing as O, Packet as P};
    match e {
        E::Incoming(P::ConnAck(_)) => Event::ConnAck,
        E::Incoming(P::PubAck(a)) => Event::Acked {
            pkid: a.pkid,
            ok: true,
        },
        E::Incoming(P::PubComp(a)) => Event::Acked {
            pkid: a.pkid,
            ok: true,
        },
        E::Incoming(P::Publish(p)) => Event::Received(Incoming {
            topic: p.topic,
            payload: p.payload,
            response_topic: None,
            correlation: None,
        }),
        E::Incoming(P::SubAck(s)) => Event::SubAck(
            s.return_codes
                .iter()
                .filter(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                .count(),
        ),
        E::Outgoing(O::Publish(pkid)) => Event::Sent(pkid),
        E::Outgoing(O::AwaitAck(pkid)) => Event::AwaitAck(pkid),
        E::Outgoing(O::Disconnect) => Event::Disconnected,
        _ => Event::Other,
    }
}

fn event_v5(e: v5::Event) -> Event {
    use p5::Packet as P;
    use rumqttc::Outgoing as O;
    use v5::Event as E;
    match e {
        E::Incoming(P::ConnAck(_)) => Event::ConnAck,
        E::Incoming(P::PubAck(a)) => Event::Acked {
            pkid: a.pkid,
            ok: matches!(
                a.reason,
                p5::PubAckReason::Success | p5::PubAckReason::NoMatchingSubscribers
            ),
        },
        E::Incoming(P::PubRec(r))
            if !matches!(
                r.reason,
                p5::PubRecReason::Success | p5::PubRecReason::NoMatchingSubscribers
            ) =>
        {
            Event::Acked {
                pkid: r.pkid,
                ok: false,
            }
        }
        E::Incoming(P::PubComp(a)) => Event::Acked {
            pkid: a.pkid,
            ok: true,
        },
        E::Incoming(P::Publish(p)) => {
            let (response_topic, correlation) = match p.properties {
                Some(props) => (props.response_topic, props.correlation_data),
                None => (None, None),
            };
            Event::Received(Incoming {
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                payload: p.payload,
                response_topic,
                correlation,
            })
        }
        E::Incoming(P::SubAck(s)) => Event::SubAck(
            s.return_codes
                .iter()
                .filter(|c| !matches!(c, p5::SubscribeReasonCode::Success(_)))
                .count(),
        ),
        E::Outgoing(O::Publish(pkid)) => Event::Sent(pkid),
        E::Outgoing(O::AwaitAck(pkid)) => Event::AwaitAck(pkid),
        E::Outgoing(O::Disconnect) => Event::Disconnected,
        _ => Event::Other,
    }
}

fn error_v4(e: rumqttc::ConnectionError) -> LinkError {
    use rumqttc::ConnectionError as C;
    let kind = match &e {
        C::ConnectionRefused(_) => "connection_refused_by_broker",
        C::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => "connection_refused",
        C::Io(_) => "socket_error",
        C::NetworkTimeout => "connect_timeout",
        C::FlushTimeout => "flush_timeout",
        C::NotConnAck(_) => "unexpected_packet",
        C::Tls(_) => "tls_error",
        C::MqttState(s) => state_kind_v4(s),
        _ => "connection_error",
    };
    LinkError {
        kind,
        detail: describe(e.to_string(), kind),
    }
}

fn state_kind_v4(s: &rumqttc::StateError) -> &'static str {
    use rumqttc::StateError as S;
    match s {
        S::Io(_) | S::Deserialization(rumqttc::mqttbytes::Error::Io(_)) => "socket_error",
        S::ConnectionAborted => "closed_by_broker",
        S::Deserialization(_) => "malformed_packet",
        S::AwaitPingResp => "no_pingresp",
        S::Unsolicited(_) => "unsolicited_ack",
        _ => "protocol_error",
    }
}

fn error_v5(e: v5::ConnectionError) -> LinkError {
    use v5::ConnectionError as C;
    use v5::StateError as S;
    let kind = match &e {
        C::ConnectionRefused(_) => "connection_refused_by_broker",
        C::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => "connection_refused",
        C::Io(_) => "socket_error",
        C::Timeout(_) => "connect_timeout",
        C::NotConnAck(_) => "unexpected_packet",
        C::Tls(_) => "tls_error",
        C::MqttState(S::Io(_)) => "socket_error",
        C::MqttState(S::ConnectionAborted) => "closed_by_broker",
        C::MqttState(S::ServerDisconnect { .. }) => "disconnected_by_broker",
        C::MqttState(S::Deserialization(_)) => "malformed_packet",
        C::MqttState(S::AwaitPingResp) => "no_pingresp",
        C::MqttState(S::Unsolicited(_)) => "unsolicited_ack",
        C::MqttState(_) => "protocol_error",
        _ => "connection_error",
    };
    LinkError {
        kind,
        detail: describe(e.to_string(), kind),
    }
}

/// A short human detail: "connection refused" rather than rumqttc's debug-ish text.
fn describe(text: String, kind: &str) -> String {
    match kind {
        "connection_refused" => "connection refused".into(),
        "connect_timeout" => "no answer (timeout)".into(),
        "closed_by_broker" => "connection closed by the broker".into(),
        _ => text,
    }
}
