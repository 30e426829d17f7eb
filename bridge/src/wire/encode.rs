//! Encoding the packets a client sends, for MQTT 3.1.1 or 5, with rumqttc's writers where
//! they are right and by hand for the fixed four-byte acknowledgements.
//!
//! rumqttc's CONNECT writers patch their flags byte at an offset counted from the start of
//! the buffer, so CONNECT is always written into a buffer of its own first.

use super::WireError;
use crate::message::{Props, QoS};
use crate::options::Protocol;
use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::{self as b4, v4};
use rumqttc::v5::mqttbytes::v5;

/// What goes into CONNECT.
#[derive(Debug, Clone)]
pub struct ConnectParams<'a> {
    /// Protocol version.
    pub protocol: Protocol,
    /// Client id.
    pub client_id: &'a str,
    /// Keep-alive in seconds.
    pub keep_alive: u16,
    /// User name.
    pub username: Option<&'a str>,
    /// Password.
    pub password: Option<&'a str>,
    /// MQTT 5 session expiry interval, seconds.
    pub session_expiry: u32,
    /// MQTT 5 receive maximum we announce.
    pub receive_maximum: u16,
    /// MQTT 5 maximum packet size we announce.
    pub max_packet_size: u32,
}

/// An outgoing PUBLISH.
#[derive(Debug, Clone)]
pub struct OutPublish<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Packet id (ignored for QoS 0).
    pub pkid: u16,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Set when sending again after a reconnect.
    pub dup: bool,
    /// Payload.
    pub payload: Bytes,
    /// MQTT 5 properties (ignored for 3.1.1).
    pub props: &'a Props,
}

/// The four-byte acknowledgements a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// QoS 1 acknowledgement of an inbound message.
    PubAck,
    /// QoS 2, first acknowledgement of an inbound message.
    PubRec,
    /// QoS 2 release of an outbound message.
    PubRel,
    /// QoS 2, final acknowledgement of an inbound message.
    PubComp,
}

fn enc(packet: &'static str) -> impl Fn(String) -> WireError {
    move |reason| WireError::Encode { packet, reason }
}

/// Appends CONNECT (no will; clean start off, so the remote keeps the session). rumqttc
/// leaves an empty password out, as MQTT wants for a user name alone.
pub fn connect(p: &ConnectParams<'_>, out: &mut BytesMut) -> Result<(), WireError> {
    let e = enc("CONNECT");
    let mut scratch = BytesMut::with_capacity(64 + p.client_id.len());
    let login = p.username.map(|u| (u, p.password.unwrap_or("")));
    match p.protocol {
        Protocol::V311 => {
            let mut c = v4::Connect::new(p.client_id);
            c.keep_alive = p.keep_alive;
            c.clean_session = false;
            c.login = login.map(|(u, pw)| v4::Login::new(u, pw));
            c.write(&mut scratch).map_err(|x| e(x.to_string()))?;
        }
        Protocol::V5 => {
            let mut props = v5::ConnectProperties::new();
            props.session_expiry_interval = Some(p.session_expiry);
            props.receive_maximum = Some(p.receive_maximum);
            props.max_packet_size = Some(p.max_packet_size);
            props.topic_alias_max = Some(0);
            let c = v5::Connect {
                keep_alive: p.keep_alive,
                client_id: p.client_id.to_string(),
                clean_start: false,
                properties: Some(props),
            };
            let login = login.map(|(u, pw)| v5::Login::new(u, pw));
            c.write(&None, &login, &mut scratch)
                .map_err(|x| e(x.to_string()))?;
        }
    }
    out.extend_from_slice(&scratch);
    Ok(())
}

/// Appends PUBLISH, or leaves `out` unchanged and fails when the packet would exceed
/// `max_size` (the remote's maximum packet size).
pub fn publish(
    protocol: Protocol,
    p: &OutPublish<'_>,
    out: &mut BytesMut,
    max_size: Option<usize>,
) -> Result<(), WireError> {
    let e = enc("PUBLISH");
    let start = out.len();
    let pkid = if p.qos == QoS::AtMostOnce { 0 } else { p.pkid };
    let written = match protocol {
        Protocol::V311 => v4::Publish {
            dup: p.dup && p.qos != QoS::AtMostOnce,
            qos: qos4(p.qos),
            retain: p.retain,
            topic: p.topic.to_string(),
            pkid,
            payload: p.payload.clone(),
        }
        .write(out)
        .map_err(|x| x.to_string()),
        Protocol::V5 => {
            let props = if p.props == &Props::default() {
                None
            } else {
                Some(v5::PublishProperties {
                    payload_format_indicator: p.props.payload_format_indicator,
                    message_expiry_interval: p.props.message_expiry_interval,
                    topic_alias: None,
                    response_topic: p.props.response_topic.clone(),
                    correlation_data: p.props.correlation_data.clone(),
                    user_properties: p.props.user_properties.clone(),
                    subscription_identifiers: Vec::new(),
                    content_type: p.props.content_type.clone(),
                })
            };
            v5::Publish {
                dup: p.dup && p.qos != QoS::AtMostOnce,
                qos: qos5(p.qos),
                retain: p.retain,
                topic: Bytes::copy_from_slice(p.topic.as_bytes()),
                pkid,
                payload: p.payload.clone(),
                properties: props,
            }
            .write(out)
            .map_err(|x| x.to_string())
        }
    };
    let size = out.len() - start;
    match written {
        Ok(_) if max_size.is_none_or(|m| size <= m) => Ok(()),
        Ok(_) => {
            out.truncate(start);
            Err(e(format!(
                "{size} bytes is more than the remote's maximum packet size ({})",
                max_size.unwrap_or_default()
            )))
        }
        Err(reason) => {
            out.truncate(start);
            Err(e(reason))
        }
    }
}

/// Appends SUBSCRIBE. MQTT 5 filters ask for no-local (our own publishes are not sent back),
/// retain-as-published, and retained messages only when the subscription is new.
pub fn subscribe(
    protocol: Protocol,
    pkid: u16,
    filters: &[(String, QoS)],
    out: &mut BytesMut,
) -> Result<(), WireError> {
    let e = enc("SUBSCRIBE");
    let start = out.len();
    let r = match protocol {
        Protocol::V311 => {
            let s = v4::Subscribe {
                pkid,
                filters: filters
                    .iter()
                    .map(|(f, q)| v4::SubscribeFilter::new(f.clone(), qos4(*q)))
                    .collect(),
            };
            s.write(out).map_err(|x| x.to_string())
        }
        Protocol::V5 => {
            let s = v5::Subscribe {
                pkid,
                filters: filters
                    .iter()
                    .map(|(f, q)| v5::Filter {
                        path: f.clone(),
                        qos: qos5(*q),
                        // No-local is not allowed on shared subscriptions.
                        nolocal: !f.starts_with("$share/"),
                        preserve_retain: true,
                        retain_forward_rule: v5::RetainForwardRule::OnNewSubscribe,
                    })
                    .collect(),
                properties: None,
            };
            s.write(out).map_err(|x| x.to_string())
        }
    };
    r.map(|_| ()).map_err(|reason| {
        out.truncate(start);
        e(reason)
    })
}

/// Appends a four-byte acknowledgement (valid in 3.1.1 and 5: success, no properties).
pub fn ack(kind: Ack, pkid: u16, out: &mut BytesMut) {
    let byte1 = match kind {
        Ack::PubAck => 0x40,
        Ack::PubRec => 0x50,
        Ack::PubRel => 0x62,
        Ack::PubComp => 0x70,
    };
    let [hi, lo] = pkid.to_be_bytes();
    out.extend_from_slice(&[byte1, 0x02, hi, lo]);
}

/// Appends PINGREQ.
pub fn pingreq(out: &mut BytesMut) {
    out.extend_from_slice(&[0xC0, 0x00]);
}

/// Appends DISCONNECT (normal disconnection; valid in 3.1.1 and 5).
pub fn disconnect(out: &mut BytesMut) {
    out.extend_from_slice(&[0xE0, 0x00]);
}

fn qos4(q: QoS) -> b4::QoS {
    match q {
        QoS::AtMostOnce => b4::QoS::AtMostOnce,
        QoS::AtLeastOnce => b4::QoS::AtLeastOnce,
        QoS::ExactlyOnce => b4::QoS::ExactlyOnce,
    }
}

fn qos5(q: QoS) -> rumqttc::v5::mqttbytes::QoS {
    use rumqttc::v5::mqttbytes::QoS as Q;
    match q {
        QoS::AtMostOnce => Q::AtMostOnce,
        QoS::AtLeastOnce => Q::AtLeastOnce,
        QoS::ExactlyOnce => Q::ExactlyOnce,
    }
}
