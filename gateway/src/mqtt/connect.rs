//! The CONNECT handshake: reading the first packet in time, validating it, and the CONNACK
//! (or the refusal) that answers it.

use super::codec::{CodecError, MqttCodec, ProtocolVersion};
use super::{Close, qos_in};
use crate::broker::Broker;
use crate::config::MqttConfig;
use crate::core::message::now_ms;
use crate::core::topic::{TopicLimits, validate_topic_name};
use crate::core::{Message, MessageProps};
use bytes::BytesMut;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnAckProperties, Connect, ConnectReturnCode, LastWill, Login, Packet,
};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// What a valid CONNECT asked for, after the server applied its limits.
#[derive(Debug)]
pub struct Accepted {
    /// Client id, assigned by us when the client sent none.
    pub client_id: String,
    /// True when we assigned the id (MQTT 5 tells the client in CONNACK).
    pub assigned_id: bool,
    /// MQTT 5 (else 3.1.1).
    pub v5: bool,
    /// Start with a new session (3.1.1 clean session, 5 clean start).
    pub clean_start: bool,
    /// Session expiry in seconds; `u32::MAX` never, 0 ends with the connection.
    pub expiry: u32,
    /// Effective keep-alive in seconds (0 = none).
    pub keep_alive: u16,
    /// Set when the server overrides the client's keep-alive (MQTT 5 property).
    pub server_keep_alive: Option<u16>,
    /// The client's receive maximum (how many QoS>0 messages we may have in flight to it).
    pub receive_max: u16,
    /// The client's maximum packet size.
    pub max_packet: Option<u32>,
    /// The will and its delay.
    pub will: Option<(Message, Duration)>,
}

/// Reads bytes until the codec yields the first packet.
pub async fn read_first<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    codec: &mut MqttCodec,
) -> Result<Packet, Close> {
    loop {
        match codec.decode(buf) {
            Ok(Some(p)) => return Ok(p),
            Ok(None) => {}
            Err(e) => return Err(Close::Codec(e)),
        }
        match rd.read_buf(buf).await {
            Ok(0) => return Err(Close::PeerClosed),
            Ok(_) => {}
            Err(e) => return Err(Close::Io(e)),
        }
    }
}

/// Validates a CONNECT. On refusal, returns the reason code to put in CONNACK.
pub fn accept(
    connect: Connect,
    will: Option<LastWill>,
    login: Option<Login>,
    v5: bool,
    cfg: &MqttConfig,
) -> Result<Accepted, ConnectReturnCode> {
    let _ = login; // Authentication arrives with the security work; anonymous is allowed on loopback.
    let props = connect.properties.unwrap_or_default();
    if props.receive_maximum == Some(0) || props.max_packet_size == Some(0) {
        return Err(ConnectReturnCode::ProtocolError);
    }
    if props.authentication_method.is_some() {
        return Err(ConnectReturnCode::BadAuthenticationMethod);
    }
    let mut client_id = connect.client_id;
    let mut assigned_id = false;
    if client_id.is_empty() {
        if !v5 && !connect.clean_start {
            // 3.1.1: a zero-length id requires clean session.
            return Err(ConnectReturnCode::ClientIdentifierNotValid);
        }
        client_id = format!("auto-{:016x}", rand_u64());
        assigned_id = true;
    }
    if client_id.len() > cfg.max_client_id_length || client_id.chars().any(char::is_control) {
        return Err(ConnectReturnCode::ClientIdentifierNotValid);
    }
    let mut expiry = if v5 {
        props.session_expiry_interval.unwrap_or(0)
    } else if connect.clean_start {
        0
    } else {
        u32::MAX
    };
    if cfg.max_session_expiry > 0 {
        expiry = expiry.min(cfg.max_session_expiry);
    }
    let mut keep_alive = connect.keep_alive;
    let mut server_keep_alive = None;
    if cfg.max_keep_alive > 0 && (keep_alive == 0 || keep_alive > cfg.max_keep_alive) {
        keep_alive = cfg.max_keep_alive;
        server_keep_alive = Some(keep_alive);
    }
    let limits = TopicLimits {
        max_len: cfg.max_topic_length,
        max_levels: cfg.max_topic_levels,
    };
    let will = match will {
        None => None,
        Some(w) => {
            let topic = String::from_utf8(w.topic.to_vec())
                .map_err(|_| ConnectReturnCode::MalformedPacket)?;
            if validate_topic_name(&topic, &limits).is_err() || topic.starts_with('$') {
                return Err(ConnectReturnCode::TopicNameInvalid);
            }
            let (delay, props) = match w.properties {
                None => (0, MessageProps::default()),
                Some(wp) => (
                    wp.delay_interval.unwrap_or(0),
                    MessageProps {
                        payload_format_indicator: wp.payload_format_indicator,
                        message_expiry_interval: wp.message_expiry_interval,
                        content_type: wp.content_type,
                        response_topic: wp.response_topic,
                        correlation_data: wp.correlation_data,
                        user_properties: wp.user_properties,
                    },
                ),
            };
            let delay = Duration::from_secs(u64::from(delay));
            let msg = Message {
                topic,
                payload: w.message,
                qos: qos_in(w.qos),
                retain: w.retain,
                props,
                ts_ms: now_ms(),
                origin: Some(super::origin_of(&client_id)),
            };
            Some((msg, delay))
        }
    };
    Ok(Accepted {
        client_id,
        assigned_id,
        v5,
        clean_start: connect.clean_start,
        expiry,
        keep_alive,
        server_keep_alive,
        receive_max: props.receive_maximum.unwrap_or(u16::MAX),
        max_packet: props.max_packet_size,
        will,
    })
}

/// The CONNACK for an accepted connection.
pub fn connack(a: &Accepted, session_present: bool, broker: &Broker) -> Packet {
    let cfg = &broker.settings;
    let properties = a.v5.then(|| ConnAckProperties {
        session_expiry_interval: None,
        receive_max: Some(cfg.receive_maximum),
        max_qos: None,
        retain_available: None,
        max_packet_size: Some(cfg.max_packet_size),
        assigned_client_identifier: a.assigned_id.then(|| a.client_id.clone()),
        topic_alias_max: Some(cfg.topic_alias_maximum),
        reason_string: None,
        user_properties: Vec::new(),
        wildcard_subscription_available: None,
        subscription_identifiers_available: None,
        shared_subscription_available: None,
        server_keep_alive: a.server_keep_alive,
        response_information: None,
        server_reference: None,
        authentication_method: None,
        authentication_data: None,
    });
    Packet::ConnAck(ConnAck {
        session_present,
        code: ConnectReturnCode::Success,
        properties,
    })
}

/// A refusing CONNACK.
pub fn refusal(code: ConnectReturnCode) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present: false,
        code,
        properties: None,
    })
}

/// The CONNACK for a codec error during the handshake, if one should be sent.
pub fn refusal_for(e: &CodecError) -> Option<ConnectReturnCode> {
    match e {
        CodecError::UnsupportedProtocolVersion(_) => {
            Some(ConnectReturnCode::UnsupportedProtocolVersion)
        }
        _ => None,
    }
}

/// The version a codec settled on, as a flag.
pub fn is_v5(codec: &MqttCodec) -> bool {
    codec.version() == Some(ProtocolVersion::V5)
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms());
    h.finish()
}

/// A random 64-bit value (session nonces, assigned ids).
pub fn random_u64() -> u64 {
    rand_u64()
}
