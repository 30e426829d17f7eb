//! Browser publishes: the shape shared by WebSocket `publish` frames and REST bodies, its
//! validation, payload decoding and the de-duplication key.
//!
//! A publish with a `msg_id` is idempotent within the log's de-duplication window: the key
//! is `web\0` + `msg_id` whichever transport carried it, so a client that retries over
//! REST after its WebSocket broke still makes one message. `msg_id`s are therefore global:
//! use a UUID (the JS client does).

use super::StreamError;
use super::StreamHub;
use crate::core::message::now_ms;
use crate::core::topic;
use crate::core::{Message, MessageProps, Position, QoS};
use crate::log::{Appended, DedupeKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Longest accepted `msg_id`, in bytes.
pub const MAX_MSG_ID: usize = 128;

/// A publish as a client sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishIn {
    /// Request id echoed in the answer (WebSocket; ignored by REST).
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    /// `op` of a WebSocket frame (REST bodies leave it out).
    #[serde(default)]
    pub op: Option<String>,
    /// Channel (topic name) to publish to.
    pub channel: Option<String>,
    /// The payload, read according to `encoding`.
    pub data: Option<Box<RawValue>>,
    /// `json` (default): `data` is any JSON value, sent as its text; `utf8`: `data` is a
    /// string sent as its UTF-8 bytes; `base64`: `data` is base64 of the bytes.
    #[serde(default)]
    pub encoding: Option<String>,
    /// 0, 1 or 2 (default 1).
    #[serde(default)]
    pub qos: Option<u64>,
    /// Make this the channel's retained message.
    #[serde(default)]
    pub retain: bool,
    /// Client-chosen id making retries idempotent.
    #[serde(default)]
    pub msg_id: Option<String>,
    /// MQTT 5 properties.
    #[serde(default)]
    pub props: Option<PropsIn>,
}

/// MQTT 5 properties a browser may set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropsIn {
    content_type: Option<String>,
    response_topic: Option<String>,
    /// Base64.
    correlation_data: Option<String>,
    payload_format_indicator: Option<u8>,
    message_expiry_interval: Option<u32>,
    /// `[["k","v"], …]` (order kept, repeats allowed) or `{"k":"v", …}`.
    user_properties: Option<UserProps>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum UserProps {
    Pairs(Vec<(String, String)>),
    Map(serde_json::Map<String, serde_json::Value>),
}

/// A validated publish, ready for the log.
#[derive(Debug)]
pub struct Prepared {
    /// The message.
    pub msg: Message,
    /// Its de-duplication key (when it has a `msg_id`).
    pub dedupe: Option<DedupeKey>,
}

/// The answer to a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// Position of the message (of the first copy, for a duplicate).
    pub pos: Position,
    /// The `msg_id` was seen before; nothing new was appended.
    pub duplicate: bool,
}

impl From<Appended> for Ack {
    fn from(a: Appended) -> Self {
        Ack {
            pos: a.position(),
            duplicate: matches!(a, Appended::Duplicate(_)),
        }
    }
}

impl PublishIn {
    /// Validates and builds the message; `origin` says who published (e.g. `web:alice`).
    pub fn prepare(self, hub: &StreamHub, origin: String) -> Result<Prepared, StreamError> {
        let channel = self
            .channel
            .ok_or_else(|| StreamError::BadRequest("\"channel\" is required".into()))?;
        check_channel(&channel, hub)?;
        let qos = match self.qos {
            None => QoS::AtLeastOnce,
            Some(q) => u8::try_from(q).ok().and_then(QoS::from_u8).ok_or_else(|| {
                StreamError::BadRequest(format!("\"qos\" must be 0, 1 or 2, got {q}"))
            })?,
        };
        let data = self
            .data
            .ok_or_else(|| StreamError::BadRequest("\"data\" is required".into()))?;
        let payload = decode_payload(&data, self.encoding.as_deref())?;
        if payload.len() > hub.config.max_frame_size {
            return Err(StreamError::FrameTooLarge {
                size: payload.len(),
                max: hub.config.max_frame_size,
            });
        }
        let dedupe = match self.msg_id {
            Some(id) if id.is_empty() || id.len() > MAX_MSG_ID => {
                return Err(StreamError::BadRequest(format!(
                    "\"msg_id\" must be 1 to {MAX_MSG_ID} bytes"
                )));
            }
            Some(id) => {
                let mut k = b"web\0".to_vec();
                k.extend_from_slice(id.as_bytes());
                Some(DedupeKey(k))
            }
            None => None,
        };
        let props = match self.props {
            Some(p) => p.into_props(hub)?,
            None => MessageProps::default(),
        };
        Ok(Prepared {
            msg: Message {
                topic: channel,
                payload,
                qos,
                retain: self.retain,
                props,
                ts_ms: now_ms(),
                origin: Some(origin),
            },
            dedupe,
        })
    }
}

/// Checks a channel a browser publishes to.
pub fn check_channel(channel: &str, hub: &StreamHub) -> Result<(), StreamError> {
    if channel.starts_with('$') {
        return Err(StreamError::ForbiddenTopic);
    }
    topic::validate_topic_name(channel, &hub.limits)
        .map_err(|e| StreamError::InvalidTopic(e.to_string()))
}

/// The payload bytes `data` stands for under `encoding`.
pub fn decode_payload(data: &RawValue, encoding: Option<&str>) -> Result<Bytes, StreamError> {
    let as_string = || {
        serde_json::from_str::<String>(data.get()).map_err(|_| {
            StreamError::BadPayload(format!(
                "with encoding {:?}, \"data\" must be a string",
                encoding.unwrap_or_default()
            ))
        })
    };
    match encoding.unwrap_or("json") {
        "json" => Ok(Bytes::copy_from_slice(data.get().trim().as_bytes())),
        "utf8" => Ok(Bytes::from(as_string()?)),
        "base64" => B64
            .decode(as_string()?)
            .map(Bytes::from)
            .map_err(|e| StreamError::BadPayload(format!("\"data\" is not valid base64: {e}"))),
        other => Err(StreamError::BadRequest(format!(
            "unknown encoding {:?}; use json, utf8 or base64",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

impl PropsIn {
    fn into_props(self, hub: &StreamHub) -> Result<MessageProps, StreamError> {
        if let Some(rt) = &self.response_topic {
            topic::validate_topic_name(rt, &hub.limits)
                .map_err(|e| StreamError::BadRequest(format!("props.response_topic: {e}")))?;
        }
        if self.payload_format_indicator.is_some_and(|p| p > 1) {
            return Err(StreamError::BadRequest(
                "props.payload_format_indicator must be 0 or 1".into(),
            ));
        }
        let correlation_data = match self.correlation_data {
            Some(c) => Some(Bytes::from(B64.decode(c).map_err(|e| {
                StreamError::BadRequest(format!("props.correlation_data is not base64: {e}"))
            })?)),
            None => None,
        };
        let user_properties = match self.user_properties {
            None => Vec::new(),
            Some(UserProps::Pairs(p)) => p,
            Some(UserProps::Map(m)) => m
                .into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => Ok((k, s)),
                    _ => Err(StreamError::BadRequest(
                        "props.user_properties values must be strings".into(),
                    )),
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(MessageProps {
            payload_format_indicator: self.payload_format_indicator,
            message_expiry_interval: self.message_expiry_interval,
            content_type: self.content_type,
            response_topic: self.response_topic,
            correlation_data,
            user_properties,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).expect("valid JSON")
    }

    #[test]
    fn encodings_decode() {
        assert_eq!(
            decode_payload(&raw(r#"{"a":1}"#), None).ok(),
            Some(Bytes::from_static(br#"{"a":1}"#))
        );
        assert_eq!(
            decode_payload(&raw(r#""hi""#), Some("utf8")).ok(),
            Some(Bytes::from_static(b"hi"))
        );
        assert_eq!(
            decode_payload(&raw(r#""/wAB""#), Some("base64")).ok(),
            Some(Bytes::from_static(&[0xff, 0, 1]))
        );
        let code = |d: &str, e| decode_payload(&raw(d), Some(e)).map_err(|e| e.code());
        assert_eq!(code("1", "utf8"), Err("bad_payload"));
        assert_eq!(code(r#""!!""#, "base64"), Err("bad_payload"));
        assert_eq!(code("1", "hex"), Err("bad_request"));
    }
}
