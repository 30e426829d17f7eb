//! The JSON shapes of the browser protocol, shared by WebSocket, SSE, long-poll and REST.
//!
//! A `msg` object is encoded once per message and shared: [`Encoder::msg`] keeps recent
//! encodings in a small direct-mapped cache keyed by sequence number, so fan-out to many
//! connections serialises each message once.
//!
//! Payloads travel as:
//! - `json`: the payload is valid JSON and is embedded as is (re-serialised compactly only
//!   when it spans several lines, so every object stays on one line for SSE);
//! - `utf8`: valid UTF-8 text that is not JSON, as a string;
//! - `base64`: anything else, standard alphabet with padding.

use super::start::Reset;
use crate::broker::presence::{Member, PresenceEvent};
use crate::core::{MessageProps, Position, StoredMessage};
use axum::extract::ws::Utf8Bytes;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::value::RawValue;

/// Slots of the encoding cache.
const CACHE_SLOTS: usize = 1024;
/// Encodings larger than this are not cached (bounds the cache's memory).
const CACHE_MAX_BYTES: usize = 16 * 1024;

/// How a payload is carried in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Inline JSON value.
    Json,
    /// UTF-8 text.
    Utf8,
    /// Base64 of the bytes.
    Base64,
}

/// MQTT 5 properties as the browser protocol writes them.
#[derive(Debug, Serialize)]
pub struct PropsOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_topic: Option<&'a str>,
    /// Base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_format_indicator: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_expiry_interval: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    user_properties: Vec<[&'a str; 2]>,
}

impl<'a> PropsOut<'a> {
    /// The JSON view of `p`.
    pub fn new(p: &'a MessageProps) -> Self {
        PropsOut {
            content_type: p.content_type.as_deref(),
            response_topic: p.response_topic.as_deref(),
            correlation_data: p.correlation_data.as_ref().map(|c| B64.encode(c)),
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            user_properties: p
                .user_properties
                .iter()
                .map(|(k, v)| [k.as_str(), v.as_str()])
                .collect(),
        }
    }
}

/// A message as the protocol shows it (`op` is set by the transport: WebSocket and long-poll
/// say `msg`; REST history leaves it out).
#[derive(Debug, Serialize)]
pub struct MsgOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    op: Option<&'static str>,
    channel: &'a str,
    pos: String,
    ts: u64,
    qos: u8,
    retain: bool,
    encoding: Encoding,
    data: Box<RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    props: Option<PropsOut<'a>>,
}

impl<'a> MsgOut<'a> {
    /// The JSON view of `m`; `retained` marks a message sent from the retained table.
    pub fn new(m: &'a StoredMessage, retained: bool, op: bool) -> Self {
        let (encoding, data) = payload_json(&m.msg.payload);
        MsgOut {
            op: op.then_some("msg"),
            channel: &m.msg.topic,
            pos: m.pos.to_string(),
            ts: m.msg.ts_ms,
            qos: m.msg.qos as u8,
            retain: retained,
            encoding,
            data,
            props: (!m.msg.props.is_empty()).then(|| PropsOut::new(&m.msg.props)),
        }
    }
}

/// The payload as a JSON value and the encoding that says how to read it.
pub fn payload_json(payload: &[u8]) -> (Encoding, Box<RawValue>) {
    if let Ok(text) = std::str::from_utf8(payload) {
        if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
            let raw = if text.contains(['\n', '\r']) {
                serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| serde_json::value::to_raw_value(&v).ok())
            } else {
                RawValue::from_string(text.trim().to_owned()).ok()
            };
            if let Some(raw) = raw {
                return (Encoding::Json, raw);
            }
        }
        return (Encoding::Utf8, raw_string(text));
    }
    (Encoding::Base64, raw_string(&B64.encode(payload)))
}

fn raw_string(s: &str) -> Box<RawValue> {
    serde_json::value::to_raw_value(s).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// Serialises a protocol object; our shapes always serialise.
pub fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| {
        format!(r#"{{"op":"error","code":"internal","message":"encoding failed: {e}"}}"#)
    })
}

/// Encodes server frames; holds the shared `msg` cache.
pub struct Encoder {
    slots: Vec<Mutex<Option<(u64, Utf8Bytes)>>>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    /// An empty cache.
    pub fn new() -> Self {
        Encoder {
            slots: (0..CACHE_SLOTS).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// The `msg` frame of a message (`retained`: sent from the retained table on subscribe).
    pub fn msg(&self, m: &StoredMessage, retained: bool) -> Utf8Bytes {
        if retained {
            return to_json(&MsgOut::new(m, true, true)).into();
        }
        let slot = &self.slots[(m.pos.seq as usize) % CACHE_SLOTS];
        if let Some((seq, bytes)) = &*slot.lock() {
            if *seq == m.pos.seq {
                return bytes.clone();
            }
        }
        let bytes: Utf8Bytes = to_json(&MsgOut::new(m, false, true)).into();
        if bytes.len() <= CACHE_MAX_BYTES {
            *slot.lock() = Some((m.pos.seq, bytes.clone()));
        }
        bytes
    }
}

/// The JSON object for one engine event (every one carries its `op`).
pub fn event(enc: &Encoder, e: &super::Event) -> Utf8Bytes {
    use super::Event;
    match e {
        Event::Msg { msg, retained } => enc.msg(msg, *retained),
        Event::Reset(r) => to_json(&ResetOut::new(r)).into(),
        Event::Dropped { count, total } => dropped(*count, *total).into(),
        Event::Presence { filter, event } => presence_event(filter, event).into(),
        Event::Members { filter, members } => presence_members(filter, members).into(),
    }
}

/// `reset` frame body.
#[derive(Debug, Serialize)]
pub struct ResetOut<'a> {
    op: &'static str,
    filter: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    reason: &'static str,
    from: String,
    to: Option<String>,
}

impl<'a> ResetOut<'a> {
    /// The JSON view of `r`.
    pub fn new(r: &'a Reset) -> Self {
        ResetOut {
            op: "reset",
            filter: &r.filter,
            channel: r.channel.as_deref(),
            reason: r.reason,
            from: r.from.to_string(),
            to: r.to.map(|p| p.to_string()),
        }
    }
}

/// `dropped` notice: a qos 0 subscription's connection was too slow.
pub fn dropped(count: u64, total: u64) -> String {
    format!(r#"{{"op":"dropped","count":{count},"total":{total}}}"#)
}

/// `presence` frame with one change.
pub fn presence_event(filter: &str, e: &PresenceEvent) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        op: &'static str,
        filter: &'a str,
        action: crate::broker::presence::PresenceAction,
        member: &'a Member,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
    }
    to_json(&Out {
        op: "presence",
        filter,
        action: e.action,
        member: &e.member,
        reason: e.reason,
    })
}

/// `presence` frame with the current members (`action: present`).
pub fn presence_members(filter: &str, members: &[Member]) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        op: &'static str,
        filter: &'a str,
        action: &'static str,
        members: &'a [Member],
    }
    to_json(&Out {
        op: "presence",
        filter,
        action: "present",
        members,
    })
}

/// `welcome` frame.
pub fn welcome(connection: u64, epoch: u64, position: Position) -> String {
    format!(
        r#"{{"op":"welcome","connection":"{connection}","epoch":"{epoch}","position":"{position}"}}"#
    )
}

/// `error` frame.
pub fn error(id: Option<&serde_json::Value>, e: &super::StreamError) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        op: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a serde_json::Value>,
        code: &'static str,
        message: String,
    }
    to_json(&Out {
        op: "error",
        id,
        code: e.code(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_encodings() {
        let (e, v) = payload_json(br#"{"t": 21.5}"#);
        assert_eq!((e, v.get()), (Encoding::Json, r#"{"t": 21.5}"#));
        let (e, v) = payload_json(b"42");
        assert_eq!((e, v.get()), (Encoding::Json, "42"));
        let (e, v) = payload_json(b"{\n \"a\": [1,\r\n 2]\n}");
        assert_eq!((e, v.get()), (Encoding::Json, r#"{"a":[1,2]}"#));
        let (e, v) = payload_json(b"hello \"world\"");
        assert_eq!((e, v.get()), (Encoding::Utf8, r#""hello \"world\"""#));
        let (e, v) = payload_json(b"");
        assert_eq!((e, v.get()), (Encoding::Utf8, r#""""#));
        let (e, v) = payload_json(&[0xff, 0x00, 0x01]);
        assert_eq!((e, v.get()), (Encoding::Base64, r#""/wAB""#));
    }
}
