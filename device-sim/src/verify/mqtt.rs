//! The verifier over MQTT (any broker), with rumqttc: MQTT 5 by default, so stamps in user
//! properties arrive, or 3.1.1 (`--mqtt-version 4`) for payload stamps only.
//!
//! Resume is the broker's persistent session: a fixed client id, `clean_start` only on the
//! run's first connection (5) or `clean_session = false` throughout (3.1.1), a session expiry
//! of [`SESSION_EXPIRY`] (5), and QoS 1 so the broker queues what arrives while the verifier is
//! away. A resume that finds no session (`session_present = 0`) lost continuity: reported.

use std::collections::VecDeque;

use rumqttc::mqttbytes::v4::SubscribeReasonCode as SubscribeReasonCodeV4;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet as Packet5, SubscribeReasonCode};
use rumqttc::v5::{self, mqttbytes::QoS as QoS5};
use rumqttc::{self as v4, Outgoing};
use tokio::time::{Duration, Instant, timeout_at};

use super::transport::{Conn, ConnError, Event, Opened, Settings, Start};
use crate::bench::mqtt::{error_kind, qos};
use crate::stamp::Stamp;

/// How long an MQTT 5 session outlives a disconnect, seconds: ample for a reconnect, short
/// enough that a forgotten verifier's queue disappears.
pub const SESSION_EXPIRY: u32 = 600;
/// Largest packet accepted either way.
const MAX_PACKET: usize = 16 * 1024 * 1024;
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Requests queued for the event loop.
const QUEUE: usize = 64;

/// A connected, subscribed MQTT client.
pub struct MqttConn {
    client: Client,
    /// Messages that arrived while subscribing: a resumed session delivers its queue right
    /// after CONNACK, and those are acknowledged already.
    pending: VecDeque<Event>,
}

/// The client of either protocol version.
enum Client {
    /// MQTT 5.
    V5(v5::AsyncClient, Box<v5::EventLoop>),
    /// MQTT 3.1.1.
    V4(v4::AsyncClient, Box<v4::EventLoop>),
}

fn qos5(level: u8) -> QoS5 {
    match level {
        0 => QoS5::AtMostOnce,
        1 => QoS5::AtLeastOnce,
        _ => QoS5::ExactlyOnce,
    }
}

fn error5(e: &v5::ConnectionError) -> ConnError {
    match e {
        v5::ConnectionError::ConnectionRefused(code) => {
            ConnError::fatal("refused", format!("CONNACK refused: {code:?}"))
        }
        other => ConnError::retry("connection_lost", other.to_string()),
    }
}

fn error4(e: &v4::ConnectionError) -> ConnError {
    match e {
        v4::ConnectionError::ConnectionRefused(code) => {
            ConnError::fatal("refused", format!("CONNACK refused: {code:?}"))
        }
        other => ConnError::retry(error_kind(other), other.to_string()),
    }
}

/// One poll of either event loop, reduced to what the verifier follows.
enum Step {
    /// CONNACK: whether the session was resumed, and the refusal if any.
    ConnAck {
        present: bool,
        refused: Option<String>,
    },
    /// SUBACK, with the refusal if any filter was refused.
    SubAck { refused: Option<String> },
    /// A message.
    Message(Event),
    /// The DISCONNECT asked for was written.
    Disconnected,
    /// Anything else (acks, pings).
    Other,
}

impl Client {
    /// Polls the event loop once.
    async fn step(&mut self) -> Result<Step, ConnError> {
        let step = match self {
            Client::V5(_, el) => match el.poll().await.map_err(|e| error5(&e))? {
                v5::Event::Incoming(Packet5::ConnAck(ack)) => Step::ConnAck {
                    present: ack.session_present,
                    refused: (ack.code != ConnectReturnCode::Success)
                        .then(|| format!("{:?}", ack.code)),
                },
                v5::Event::Incoming(Packet5::SubAck(ack)) => Step::SubAck {
                    refused: (!ack
                        .return_codes
                        .iter()
                        .all(|c| matches!(c, SubscribeReasonCode::Success(_))))
                    .then(|| format!("subscription refused: {:?}", ack.return_codes)),
                },
                v5::Event::Incoming(Packet5::Publish(p)) => Step::Message(message5(&p)),
                v5::Event::Outgoing(Outgoing::Disconnect) => Step::Disconnected,
                _ => Step::Other,
            },
            Client::V4(_, el) => match el.poll().await.map_err(|e| error4(&e))? {
                v4::Event::Incoming(v4::Packet::ConnAck(ack)) => Step::ConnAck {
                    present: ack.session_present,
                    refused: None,
                },
                v4::Event::Incoming(v4::Packet::SubAck(ack)) => Step::SubAck {
                    refused: (!ack
                        .return_codes
                        .iter()
                        .all(|c| matches!(c, SubscribeReasonCodeV4::Success(_))))
                    .then(|| format!("subscription refused: {:?}", ack.return_codes)),
                },
                v4::Event::Incoming(v4::Packet::Publish(p)) => Step::Message(message4(&p)),
                v4::Event::Outgoing(Outgoing::Disconnect) => Step::Disconnected,
                _ => Step::Other,
            },
        };
        Ok(step)
    }

    /// Queues a SUBSCRIBE (`&mut`: a shared `Client` would have to be `Sync`, and its event
    /// loop is not).
    async fn subscribe(&mut self, filter: &str, level: u8) -> Result<(), ConnError> {
        let sent = match self {
            Client::V5(c, _) => c
                .subscribe(filter, qos5(level))
                .await
                .map_err(|e| e.to_string()),
            Client::V4(c, _) => c
                .subscribe(filter, qos(level))
                .await
                .map_err(|e| e.to_string()),
        };
        sent.map_err(|e| ConnError::retry("client", e))
    }

    /// Queues a DISCONNECT; false when the client is gone.
    fn try_disconnect(&self) -> bool {
        match self {
            Client::V5(c, _) => c.try_disconnect().is_ok(),
            Client::V4(c, _) => c.try_disconnect().is_ok(),
        }
    }
}

impl MqttConn {
    /// Connects, subscribes every filter and waits for the SUBACKs.
    pub async fn open(
        host: &str,
        port: u16,
        settings: &Settings,
        start: Start<'_>,
    ) -> Result<Opened, ConnError> {
        let m = &settings.mqtt;
        let resume = matches!(start, Start::Resume(_));
        let deadline = Instant::now() + settings.connect_timeout;
        let mut client = if m.version == 5 {
            let mut opts = v5::MqttOptions::new(m.client_id.clone(), host, port);
            opts.set_keep_alive(KEEP_ALIVE)
                .set_clean_start(!(m.persistent && resume))
                .set_max_packet_size(Some(MAX_PACKET as u32));
            if m.persistent {
                opts.set_session_expiry_interval(Some(SESSION_EXPIRY));
            }
            let (client, el) = v5::AsyncClient::new(opts, QUEUE);
            Client::V5(client, Box::new(el))
        } else {
            let mut opts = v4::MqttOptions::new(m.client_id.clone(), host, port);
            opts.set_keep_alive(KEEP_ALIVE)
                .set_clean_session(!m.persistent)
                .set_max_packet_size(MAX_PACKET, MAX_PACKET);
            let (client, el) = v4::AsyncClient::new(opts, QUEUE);
            Client::V4(client, Box::new(el))
        };
        let session_present = loop {
            match timeout_at(deadline, client.step()).await {
                Err(_) => return Err(ConnError::retry("connect_timeout", "no CONNACK")),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(Step::ConnAck {
                    refused: Some(code),
                    ..
                })) => return Err(ConnError::fatal("refused", code)),
                Ok(Ok(Step::ConnAck { present, .. })) => break present,
                Ok(Ok(_)) => {}
            }
        };
        for f in &settings.filters {
            client.subscribe(f, m.qos).await?;
        }
        let mut pending = VecDeque::new();
        let mut acks = 0;
        while acks < settings.filters.len() {
            match timeout_at(deadline, client.step()).await {
                Err(_) => return Err(ConnError::retry("connect_timeout", "no SUBACK")),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(Step::SubAck {
                    refused: Some(detail),
                })) => return Err(ConnError::fatal("refused", detail)),
                Ok(Ok(Step::SubAck { refused: None })) => acks += 1,
                Ok(Ok(Step::Message(event))) => pending.push_back(event),
                Ok(Ok(_)) => {}
            }
        }
        Ok(Opened {
            conn: Conn::Mqtt(Box::new(MqttConn { client, pending })),
            position: None,
            session_lost: resume && m.persistent && !session_present,
        })
    }

    /// The next message.
    pub async fn next(&mut self) -> Result<Event, ConnError> {
        if let Some(event) = self.pending.pop_front() {
            return Ok(event);
        }
        loop {
            if let Step::Message(event) = self.client.step().await? {
                return Ok(event);
            }
        }
    }

    /// Sends DISCONNECT (after the acknowledgements still queued) and polls until it is out.
    /// Messages that arrive meanwhile are acknowledged too, so they go to `late`.
    pub async fn close(mut self, late: &mut Vec<Event>) {
        late.extend(self.pending.drain(..));
        if !self.client.try_disconnect() {
            return;
        }
        loop {
            match self.client.step().await {
                Ok(Step::Disconnected) | Err(_) => return,
                Ok(Step::Message(event)) => late.push(event),
                Ok(_) => {}
            }
        }
    }
}

/// An MQTT 5 PUBLISH as an event: the stamp from user properties, else from the payload.
fn message5(p: &v5::mqttbytes::v5::Publish) -> Event {
    let from_props = p.properties.as_ref().and_then(|props| {
        Stamp::from_user_properties(props.user_properties.iter().map(|(k, v)| (&**k, &**v)))
    });
    Event::Message {
        stamp: from_props.or_else(|| Stamp::from_payload(&p.payload)),
        position: None,
        retained: p.retain,
    }
}

/// An MQTT 3.1.1 PUBLISH as an event: the stamp from the payload.
fn message4(p: &v4::Publish) -> Event {
    Event::Message {
        stamp: Stamp::from_payload(&p.payload),
        position: None,
        retained: p.retain,
    }
}
