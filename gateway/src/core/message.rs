//! Messages and positions: what the log stores and every transport delivers.
//!
//! A [`Message`] is transport-neutral: MQTT 3.1.1, MQTT 5, WebSocket and REST publishes are
//! all turned into one before they reach the log. A [`StoredMessage`] is a message plus the
//! [`Position`] the log gave it; it is shared (`Arc`) between every subscriber it reaches.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Quality of service, as MQTT defines it. Browser publishes use the same three levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum QoS {
    /// Fire and forget.
    AtMostOnce = 0,
    /// Acknowledged; may be delivered more than once.
    AtLeastOnce = 1,
    /// Acknowledged in two steps; delivered once.
    ExactlyOnce = 2,
}

impl QoS {
    /// Maps 0, 1, 2 to a level; anything else is `None`.
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    /// True for QoS 1 and 2: the publisher waits for durability and subscribers may catch up
    /// from the store.
    pub fn is_reliable(self) -> bool {
        self != QoS::AtMostOnce
    }
}

/// A place in the log: the store's epoch and a global sequence number.
///
/// Sequence numbers grow strictly within an epoch but need not be dense: a crash may leave a
/// gap. The epoch changes only when history was lost (store wiped or replaced), which is how a
/// client tells "resume" from "start again". The text form `"<epoch>-<seq>"` (both decimal) is
/// what clients see; they treat it as opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Identifies one life of the store.
    pub epoch: u64,
    /// Global sequence number, starting at 1.
    pub seq: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.epoch, self.seq)
    }
}

/// Why a position string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid position {0:?}: expected \"<epoch>-<seq>\" as given by the gateway")]
pub struct PositionParseError(pub String);

impl FromStr for Position {
    type Err = PositionParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PositionParseError(s.chars().take(64).collect());
        let (e, q) = s.split_once('-').ok_or_else(err)?;
        let epoch = e.parse::<u64>().map_err(|_| err())?;
        let seq = q.parse::<u64>().map_err(|_| err())?;
        Ok(Position { epoch, seq })
    }
}

/// MQTT 5 message properties that travel with a message, unchanged from publisher to
/// subscriber. Other transports map what they can onto these.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageProps {
    /// 0 = unspecified bytes, 1 = UTF-8 text.
    pub payload_format_indicator: Option<u8>,
    /// Seconds the message stays deliverable after it was accepted.
    pub message_expiry_interval: Option<u32>,
    /// MIME type of the payload.
    pub content_type: Option<String>,
    /// Request/response: where the answer goes.
    pub response_topic: Option<String>,
    /// Request/response: opaque data that ties an answer to its request.
    pub correlation_data: Option<Bytes>,
    /// Application key/value pairs, order preserved.
    pub user_properties: Vec<(String, String)>,
}

impl MessageProps {
    /// True when no property is set, so encoders can skip the block.
    pub fn is_empty(&self) -> bool {
        self == &MessageProps::default()
    }
}

/// A message as accepted from any publisher, before the log sequences it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Channel name (an MQTT topic name), already validated.
    pub topic: String,
    /// The payload bytes, never copied after decode.
    pub payload: Bytes,
    /// Level the publisher used; subscribers get at most this.
    pub qos: QoS,
    /// The publisher asked for this to become the topic's retained message.
    pub retain: bool,
    /// MQTT 5 properties passed through unchanged.
    pub props: MessageProps,
    /// Milliseconds since the Unix epoch when the gateway accepted it; message expiry counts
    /// from here.
    pub ts_ms: u64,
    /// Who published it (MQTT client id, or a transport-prefixed id); used for MQTT 5
    /// no-local and for bridge loop prevention.
    pub origin: Option<String>,
}

impl Message {
    /// Milliseconds since the Unix epoch after which the message must not be delivered, if
    /// it expires.
    pub fn expires_at_ms(&self) -> Option<u64> {
        self.props
            .message_expiry_interval
            .map(|s| self.ts_ms.saturating_add(u64::from(s) * 1000))
    }

    /// Seconds of life left at `now_ms` (for the expiry property on delivery), or `None` when
    /// the message does not expire. `Some(0)` means it has expired.
    pub fn remaining_expiry(&self, now_ms: u64) -> Option<u32> {
        self.expires_at_ms().map(|at| {
            let left_ms = at.saturating_sub(now_ms);
            u32::try_from(left_ms.div_ceil(1000)).unwrap_or(u32::MAX)
        })
    }
}

/// A message with the position the log gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Where it sits in the log.
    pub pos: Position,
    /// The message itself.
    pub msg: Message,
    /// Its encodings, made on first use and shared by every subscriber that gets the same
    /// bytes. Never stored.
    #[serde(skip)]
    pub wire: WireCache,
}

impl StoredMessage {
    /// A message at a position, with nothing encoded yet.
    pub fn new(pos: Position, msg: Message) -> StoredMessage {
        StoredMessage {
            pos,
            msg,
            wire: WireCache::default(),
        }
    }
}

/// Encoded forms of one message for the wire formats that are the same for every subscriber
/// (e.g. an MQTT QoS 0 PUBLISH without per-subscriber properties), one slot per format.
/// Transports own the meaning of the slots; the core only holds the bytes. Clones start empty
/// and every cache compares equal, so it never affects a message's identity.
#[derive(Default)]
pub struct WireCache {
    slots: [std::sync::OnceLock<Bytes>; WireCache::SLOTS],
}

impl WireCache {
    /// Number of slots.
    pub const SLOTS: usize = 4;

    /// The bytes in `slot`, encoding them with `encode` on first use. `None` when `slot` is out
    /// of range or `encode` declines.
    pub fn get_or_encode(
        &self,
        slot: usize,
        encode: impl FnOnce() -> Option<Bytes>,
    ) -> Option<Bytes> {
        let cell = self.slots.get(slot)?;
        if let Some(b) = cell.get() {
            return Some(b.clone());
        }
        let b = encode()?;
        Some(cell.get_or_init(|| b).clone())
    }
}

impl Clone for WireCache {
    fn clone(&self) -> Self {
        WireCache::default()
    }
}

impl PartialEq for WireCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for WireCache {}

impl fmt::Debug for WireCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let filled = self.slots.iter().filter(|s| s.get().is_some()).count();
        write!(f, "WireCache({filled} encoded)")
    }
}

/// Milliseconds since the Unix epoch, from the system clock. The core never calls this; the
/// transports pass time in.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn position_text_round_trips(epoch in any::<u64>(), seq in any::<u64>()) {
            let p = Position { epoch, seq };
            prop_assert_eq!(p.to_string().parse::<Position>(), Ok(p));
        }

        #[test]
        fn position_parse_never_panics(s in ".{0,40}") {
            let _ = s.parse::<Position>();
        }
    }

    #[test]
    fn expiry_counts_from_acceptance() {
        let m = Message {
            topic: "a".into(),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            props: MessageProps {
                message_expiry_interval: Some(10),
                ..Default::default()
            },
            ts_ms: 1_000,
            origin: None,
        };
        assert_eq!(m.remaining_expiry(1_000), Some(10));
        assert_eq!(m.remaining_expiry(5_500), Some(6));
        assert_eq!(m.remaining_expiry(11_000), Some(0));
        assert_eq!(m.remaining_expiry(99_000), Some(0));
    }
}
