//! The scenario file as written: serde structs mirroring the TOML, with unknown fields
//! refused and the fields that need checking beyond their type kept [`Spanned`], so
//! `validate` can point at them. Value types that are checked while reading (durations, QoS,
//! protocol) report their own errors, which the TOML reader places at the value.
//!
//! Field meanings are documented in `device-sim/scenarios/README.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub name: Option<String>,
    pub broker: Option<Spanned<String>>,
    pub duration: Option<Spanned<DurationValue>>,
    pub seed: Option<u64>,
    pub ramp_up: Option<DurationValue>,
    pub faults: Option<RawRunFaults>,
    pub classes: Option<Vec<Spanned<RawClass>>>,
}

/// `[faults]` at the top level: what applies to the whole run.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRunFaults {
    pub proxy: Option<RawProxy>,
}

/// `[faults.proxy]`: the in-process TCP proxy between the devices and the broker.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    pub latency: Option<DurationValue>,
    pub jitter: Option<DurationValue>,
    pub loss: Option<Spanned<f64>>,
    pub rto: Option<Spanned<DurationValue>>,
    pub max_retransmits: Option<u32>,
    pub cut: Option<Spanned<f64>>,
    pub bandwidth: Option<Spanned<u64>>,
}

/// One `[[classes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClass {
    pub name: Spanned<String>,
    pub count: Spanned<i64>,
    pub client_id: Option<Spanned<String>>,
    pub protocol: Option<Protocol>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keep_alive: Option<Spanned<DurationValue>>,
    pub clean_session: Option<bool>,
    pub session_expiry: Option<Spanned<DurationValue>>,
    pub inflight: Option<Spanned<u16>>,
    pub queue: Option<Spanned<u32>>,
    pub tls: Option<RawTls>,
    pub will: Option<RawMessage>,
    pub birth: Option<RawMessage>,
    #[serde(default)]
    pub telemetry: Vec<RawStream>,
    #[serde(default)]
    pub commands: Vec<RawCommand>,
    pub faults: Option<RawClassFaults>,
    pub reconnect: Option<RawBackoff>,
}

/// `[classes.tls]`: PEM files, relative to the scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca: Option<Spanned<String>>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
}

/// A will or birth message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMessage {
    pub topic: Spanned<String>,
    pub payload: Option<Spanned<String>>,
    pub qos: Option<Qos>,
    pub retain: Option<bool>,
}

/// One `[[classes.telemetry]]` stream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStream {
    pub topic: Spanned<String>,
    pub payload: Spanned<RawPayload>,
    pub interval: Spanned<DurationValue>,
    pub jitter: Option<Spanned<DurationValue>>,
    pub qos: Option<Qos>,
    pub retain: Option<bool>,
    pub stamp: Option<bool>,
}

/// One `[[classes.commands]]` subscription.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommand {
    pub topic: Spanned<String>,
    pub qos: Option<Qos>,
    pub reply_topic: Option<Spanned<String>>,
    pub reply: Option<Spanned<toml::Value>>,
    pub reply_qos: Option<Qos>,
    pub reply_retain: Option<bool>,
    pub delay: Option<DurationValue>,
}

/// `[classes.faults]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassFaults {
    pub disconnect_every: Option<Spanned<DurationValue>>,
    pub disconnect_probability: Option<Spanned<f64>>,
    pub reconnect_delay: Option<DurationValue>,
    #[serde(default)]
    pub storm: Vec<RawStorm>,
}

/// One `[[classes.faults.storm]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorm {
    pub at: DurationValue,
    pub fraction: Option<Spanned<f64>>,
    pub reconnect_delay: Option<DurationValue>,
}

/// `[classes.reconnect]`: the backoff while the broker cannot be reached.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    pub initial: Option<Spanned<DurationValue>>,
    pub max: Option<Spanned<DurationValue>>,
}

/// A payload: a bare value (a constant) or a table with a `model` field.
#[derive(Debug)]
pub enum RawPayload {
    Constant(toml::Value),
    Model(Box<RawModel>),
}

/// A model table. Which fields apply depends on `model`; `validate` checks them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub model: Spanned<String>,
    pub value: Option<toml::Value>,
    pub start: Option<Spanned<f64>>,
    pub step: Option<Spanned<f64>>,
    pub min: Option<Spanned<f64>>,
    pub max: Option<Spanned<f64>>,
    pub period: Option<Spanned<DurationValue>>,
    pub amplitude: Option<f64>,
    pub offset: Option<f64>,
    pub noise: Option<Spanned<f64>>,
    pub decimals: Option<Spanned<u32>>,
    pub values: Option<Spanned<Vec<toml::Value>>>,
    pub weights: Option<Spanned<Vec<f64>>>,
    pub fields: Option<BTreeMap<String, Spanned<RawPayload>>>,
}

impl<'de> Deserialize<'de> for RawPayload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawPayload;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value, or a table with a `model` field")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawPayload, A::Error> {
                let de = de::value::MapAccessDeserializer::new(map);
                RawModel::deserialize(de).map(|m| RawPayload::Model(Box::new(m)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawPayload, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element::<toml::Value>()? {
                    items.push(v);
                }
                Ok(RawPayload::Constant(toml::Value::Array(items)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPayload, E> {
                Ok(RawPayload::Constant(toml::Value::String(v.to_owned())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawPayload, E> {
                Ok(RawPayload::Constant(toml::Value::Integer(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawPayload, E> {
                i64::try_from(v)
                    .map(|v| RawPayload::Constant(toml::Value::Integer(v)))
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawPayload, E> {
                Ok(RawPayload::Constant(toml::Value::Float(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawPayload, E> {
                Ok(RawPayload::Constant(toml::Value::Boolean(v)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration: a string such as `"500ms"`, `"10s"`, `"2m"`, or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"500ms\", \"10s\" or \"2m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationValue, E> {
                if v.trim_start().starts_with('-') {
                    return Err(E::custom(format!(
                        "\"{v}\" is negative; durations are >= 0"
                    )));
                }
                crate::cli::parse_duration(v)
                    .map(DurationValue)
                    .map_err(|_| {
                        E::custom(format!(
                            "\"{v}\" is not a duration; write e.g. \"500ms\", \"10s\" or \"2m\""
                        ))
                    })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationValue, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationValue, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationValue, E> {
                if v < 0.0 {
                    return Err(E::custom(format!("{v} is negative; durations are >= 0")));
                }
                crate::cli::parse_duration(&v.to_string())
                    .map(DurationValue)
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// An MQTT QoS level: 0, 1 or 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qos(pub u8);

impl<'de> Deserialize<'de> for Qos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        match u8::try_from(v) {
            Ok(q @ 0..=2) => Ok(Qos(q)),
            _ => Err(de::Error::custom(format!(
                "{v} is not a QoS level; use 0, 1 or 2"
            ))),
        }
    }
}

/// The MQTT protocol version: `4`/`"3.1.1"` or `5`/`"5"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.
    V5,
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Protocol;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("4, 5, \"3.1.1\" or \"5\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Protocol, E> {
                match v {
                    4 => Ok(Protocol::V311),
                    5 => Ok(Protocol::V5),
                    _ => Err(E::custom(format!(
                        "{v} is not an MQTT protocol level; use 4 (3.1.1) or 5"
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Protocol, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Protocol, E> {
                match v {
                    "3.1.1" | "4" | "v4" | "v3.1.1" => Ok(Protocol::V311),
                    "5" | "5.0" | "v5" => Ok(Protocol::V5),
                    _ => Err(E::custom(format!(
                        "\"{v}\" is not an MQTT version; use \"3.1.1\" or \"5\""
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}
