//! The stamp every simulated message carries, so `device-sim verify` can tell, per device,
//! what was lost, duplicated or reordered, and how long delivery took.
//!
//! A stamp is the sending device's id, its per-device sequence number (1, 2, 3, ... for each
//! message that device publishes in one run) and the send time in microseconds since the Unix
//! epoch. It travels in one of two places:
//! - **in the payload**, for JSON object payloads: a member `"sim": {"dev": .., "seq": ..,
//!   "ts": ..}` next to the telemetry fields. Works over MQTT 3.1.1 and 5, and through every
//!   gateway transport (the browser protocol delivers JSON payloads inline).
//! - **as MQTT 5 user properties** `sim-dev`, `sim-seq`, `sim-ts`, for any payload. The
//!   gateway passes user properties through unchanged to MQTT 5, WebSocket and SSE
//!   subscribers.
//!
//! A reader tries the user properties first, then the payload.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// Name of the payload member that holds the stamp.
pub const PAYLOAD_KEY: &str = "sim";
/// User property holding the device id.
pub const PROP_DEVICE: &str = "sim-dev";
/// User property holding the sequence number.
pub const PROP_SEQ: &str = "sim-seq";
/// User property holding the send time (µs since the Unix epoch).
pub const PROP_TIME: &str = "sim-ts";

/// Who sent a message, its place in that sender's sequence, and when it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// The sending device's id (its MQTT client id).
    pub device: String,
    /// Per-device sequence number, starting at 1 and growing by one per published message.
    pub seq: u64,
    /// Send time in microseconds since the Unix epoch.
    pub sent_at_us: u64,
}

impl Stamp {
    /// A stamp for `device`'s message number `seq`, sent now.
    pub fn now(device: impl Into<String>, seq: u64) -> Self {
        Self {
            device: device.into(),
            seq,
            sent_at_us: unix_micros(),
        }
    }

    /// The stamp as the JSON value stored under [`PAYLOAD_KEY`].
    pub fn to_json(&self) -> Value {
        let mut m = Map::with_capacity(3);
        m.insert("dev".into(), Value::String(self.device.clone()));
        m.insert("seq".into(), Value::from(self.seq));
        m.insert("ts".into(), Value::from(self.sent_at_us));
        Value::Object(m)
    }

    /// Adds the stamp to a JSON object payload (replacing any earlier stamp).
    pub fn insert_into(&self, object: &mut Map<String, Value>) {
        object.insert(PAYLOAD_KEY.into(), self.to_json());
    }

    /// Reads a stamp from a JSON value: an object with a [`PAYLOAD_KEY`] member.
    pub fn from_json(value: &Value) -> Option<Self> {
        let s = value.as_object()?.get(PAYLOAD_KEY)?.as_object()?;
        Some(Self {
            device: s.get("dev")?.as_str()?.to_owned(),
            seq: s.get("seq")?.as_u64()?,
            sent_at_us: s.get("ts")?.as_u64()?,
        })
    }

    /// Reads a stamp from raw payload bytes, when they are a JSON object carrying one.
    pub fn from_payload(payload: &[u8]) -> Option<Self> {
        // Cheap pre-check: most non-stamped payloads are rejected without a parse.
        if !payload.starts_with(b"{") {
            return None;
        }
        let value: Value = serde_json::from_slice(payload).ok()?;
        Self::from_json(&value)
    }

    /// The stamp as MQTT 5 user properties.
    pub fn user_properties(&self) -> Vec<(String, String)> {
        vec![
            (PROP_DEVICE.into(), self.device.clone()),
            (PROP_SEQ.into(), self.seq.to_string()),
            (PROP_TIME.into(), self.sent_at_us.to_string()),
        ]
    }

    /// Reads a stamp from MQTT 5 user properties (name, value pairs), when all three are there.
    pub fn from_user_properties<'a, I>(props: I) -> Option<Self>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let (mut device, mut seq, mut ts) = (None, None, None);
        for (k, v) in props {
            match k {
                PROP_DEVICE => device = Some(v.to_owned()),
                PROP_SEQ => seq = v.parse().ok(),
                PROP_TIME => ts = v.parse().ok(),
                _ => {}
            }
        }
        Some(Self {
            device: device?,
            seq: seq?,
            sent_at_us: ts?,
        })
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip_keeps_other_fields() {
        let stamp = Stamp {
            device: "press-3".into(),
            seq: 17,
            sent_at_us: 1_700_000_000_000_000,
        };
        let mut obj = Map::new();
        obj.insert("temp".into(), Value::from(21.5));
        stamp.insert_into(&mut obj);
        let bytes = serde_json::to_vec(&Value::Object(obj)).unwrap();
        assert_eq!(Stamp::from_payload(&bytes), Some(stamp.clone()));
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["temp"], Value::from(21.5));
    }

    #[test]
    fn user_property_round_trip() {
        let stamp = Stamp::now("dev-1", 3);
        let props = stamp.user_properties();
        let parsed = Stamp::from_user_properties(props.iter().map(|(k, v)| (&**k, &**v)));
        assert_eq!(parsed, Some(stamp));
    }

    #[test]
    fn unstamped_inputs_give_none() {
        assert_eq!(Stamp::from_payload(b"21.5"), None);
        assert_eq!(Stamp::from_payload(b"{\"temp\":1}"), None);
        assert_eq!(Stamp::from_payload(b"{\"sim\":{\"dev\":1}}"), None);
        assert_eq!(Stamp::from_payload(b"{not json"), None);
        assert_eq!(
            Stamp::from_user_properties([("sim-dev", "a"), ("sim-seq", "x"), ("sim-ts", "1")]),
            None
        );
    }
}
