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
        let mut pending = VecDeque::new();
        let (client, session_present) = if m.version == 5 {
            let mut opts = v5::MqttOptions::new(m.client_id.clone(), host, port);
            opts.set_keep_alive(KEEP_ALIVE)
                .set_clean_start(!(m.persistent && resume))
                .set_max_packet_size(Some(MAX_PACKET as u32));
            if m.persistent {
                opts.set_session_expiry_interval(Some(SESSION_EXPIRY));
            }
            let (client, mut el) = v5::AsyncClient::new(opts, QUEUE);
            let present = loop {
                match timeout_at(deadline, el.poll()).await {
                    Err(_) => return Err(ConnError::retry("connect_timeout", "no CONNACK")),
                    Ok(Err(e)) => return Err(error5(&e)),
                    Ok(Ok(v5::Event::Incoming(Packet5::ConnAck(ack)))) => {
                        if ack.code != ConnectReturnCode::Success {
                            return Err(ConnError::fatal("refused", format!("{:?}", ack.code)));
                        }
                        break ack.session_present;
                    }
                    Ok(Ok(_)) => {}
                }
            };
            for f in &settings.filters {
                client
                    .subscribe(f.clone(), qos5(m.qos))
                    .await
                    .map_err(|e| ConnError::retry("client", e.to_string()))?;
            }
            let mut acks = 0;
            while acks < settings.filters.len() {
                match timeout_at(deadline, el.poll()).await {
                    Err(_) => return Err(ConnError::retry("connect_timeout", "no SUBACK")),
                    Ok(Err(e)) => return Err(error5(&e)),
                    Ok(Ok(v5::Event::Incoming(Packet5::SubAck(ack)))) => {
                        if !ack
                            .return_codes
                            .iter()
                            .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
                        {
                            return Err(ConnError::fatal(
                                "refused",
                                format!("subscription refused: {:?}", ack.return_codes),
                            ));
                        }
                        acks += 1;
                    }
                    Ok(Ok(v5::Event::Incoming(Packet5::Publish(p)))) => {
                        pending.push_back(message5(&p));
                    }
                    Ok(Ok(_)) => {}
                }
            }
            (Client::V5(client, Box::new(el)), present)
        } else {
            let mut opts = v4::MqttOptions::new(m.client_id.clone(), host, port);
            opts.set_keep_alive(KEEP_ALIVE)
                .set_clean_session(!m.persistent)
                .set_max_packet_size(MAX_PACKET, MAX_PACKET);
            let (client, mut el) = v4::AsyncClient::new(opts, QUEUE);
            let present = match timeout_at(deadline, el.poll()).await {
                Err(_) => return Err(ConnError::retry("connect_timeout", "no CONNACK")),
                Ok(Err(e)) => return Err(error4(&e)),
                Ok(Ok(v4::Event::Incoming(v4::Packet::ConnAck(ack)))) => ack.session_present,
                Ok(Ok(other)) => {
                    return Err(ConnError::fatal("protocol", format!("{other:?}")));
                }
            };
            for f in &settings.filters {
                client
                    .subscribe(f.clone(), qos(m.qos))
                    .await
                    .map_err(|e| ConnError::retry("client", e.to_string()))?;
            }
            let mut acks = 0;
            while acks < settings.filters.len() {
                match timeout_at(deadline, el.poll()).await {
                    Err(_) => return Err(ConnError::retry("connect_timeout", "no SUBACK")),
                    Ok(Err(e)) => return Err(error4(&e)),
                    Ok(Ok(v4::Event::Incoming(v4::Packet::SubAck(ack)))) => {
                        if !ack
                            .return_codes
                            .iter()
                            .all(|c| matches!(c, SubscribeReasonCodeV4::Success(_)))
                        {
                            return Err(ConnError::fatal(
                                "refused",
                                format!("subscription refused: {:?}", ack.return_codes),
                            ));
                        }
                        acks += 1;
                    }
                    Ok(Ok(v4::Event::Incoming(v4::Packet::Publish(p)))) => {
                        pending.push_back(message4(&p));
                    }
                    Ok(Ok(_)) => {}
                }
            }
            (Client::V4(client, Box::new(el)), present)
        };
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
            let event = match &mut self.client {
                Client::V5(_, el) => match el.poll().await.map_err(|e| error5(&e))? {
                    v5::Event::Incoming(Packet5::Publish(p)) => Some(message5(&p)),
                    _ => None,
                },
                Client::V4(_, el) => match el.poll().await.map_err(|e| error4(&e))? {
                    v4::Event::Incoming(v4::Packet::Publish(p)) => Some(message4(&p)),
                    _ => None,
                },
            };
            if let Some(event) = event {
                return Ok(event);
            }
        }
    }

    /// Sends DISCONNECT (after the acknowledgements still queued) and polls until it is out.
    /// Messages that arrive meanwhile are acknowledged too, so they go to `late`.
    pub async fn close(self, late: &mut Vec<Event>) {
        late.extend(self.pending);
        match self.client {
            Client::V5(client, mut el) => {
                if client.try_disconnect().is_err() {
                    return;
                }
                loop {
                    match el.poll().await {
                        Ok(v5::Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                        Ok(v5::Event::Incoming(Packet5::Publish(p))) => late.push(message5(&p)),
                        Ok(_) => {}
                    }
                }
            }
            Client::V4(client, mut el) => {
                if client.try_disconnect().is_err() {
                    return;
                }
                loop {
                    match el.poll().await {
                        Ok(v4::Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                        Ok(v4::Event::Incoming(v4::Packet::Publish(p))) => late.push(message4(&p)),
                        Ok(_) => {}
                    }
                }
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
