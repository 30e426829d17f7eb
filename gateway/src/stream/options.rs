//! What a subscription asks for: a filter, where to start, whether retained messages come
//! first, and whether it is reliable. Every transport turns its own syntax (a WebSocket
//! frame, an SSE or long-poll query string) into a [`SubscribeSpec`] through
//! [`SubscribeSpec::parse`], so validation and error codes are the same everywhere.

use super::StreamError;
use crate::core::topic::{self, TopicLimits};
use crate::core::{Position, QoS};

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With the next message published.
    Now,
    /// With the last `n` messages matching the filter.
    Rewind(usize),
    /// With the messages accepted in the last `n` seconds.
    RewindSeconds(u64),
    /// Right after this position (the last one the client has seen).
    Since(Position),
}

/// One validated subscription request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeSpec {
    /// A valid MQTT filter (not `$share/`).
    pub filter: String,
    /// Where it starts.
    pub start: Start,
    /// Send the retained messages matching the filter first.
    pub retained: bool,
    /// `AtLeastOnce` (default): catch up from the log when the connection falls behind.
    /// `AtMostOnce`: live only, a slow connection drops the oldest and is told how many.
    pub qos: QoS,
}

/// The raw subscription options as a transport received them.
#[derive(Debug, Clone, Default)]
pub struct RawOptions<'a> {
    /// The filter.
    pub filter: Option<&'a str>,
    /// `since`: a position string.
    pub since: Option<&'a str>,
    /// `rewind`: a message count.
    pub rewind: Option<u64>,
    /// `rewind_seconds`.
    pub rewind_seconds: Option<u64>,
    /// `retained`.
    pub retained: bool,
    /// `qos`: 0 or 1 (2 is read as 1).
    pub qos: Option<u64>,
}

impl SubscribeSpec {
    /// Validates raw options. At most one of `since`, `rewind`, `rewind_seconds` may be
    /// given; `rewind` is capped by `max_rewind`.
    pub fn parse(
        raw: &RawOptions<'_>,
        limits: &TopicLimits,
        max_rewind: usize,
    ) -> Result<SubscribeSpec, StreamError> {
        let filter = raw
            .filter
            .ok_or_else(|| StreamError::BadRequest("\"filter\" is required".into()))?;
        let parsed = topic::validate_filter(filter, limits)
            .map_err(|e| StreamError::InvalidFilter(e.to_string()))?;
        if parsed.is_shared() {
            return Err(StreamError::InvalidFilter(
                "$share/ filters are for MQTT clients; subscribe to the plain filter".into(),
            ));
        }
        let given = [
            raw.since.is_some(),
            raw.rewind.is_some(),
            raw.rewind_seconds.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(StreamError::BadRequest(
                "give at most one of \"since\", \"rewind\" and \"rewind_seconds\"".into(),
            ));
        }
        let start = if let Some(s) = raw.since {
            Start::Since(parse_position(s)?)
        } else if let Some(n) = raw.rewind {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n > max_rewind {
                return Err(StreamError::BadRequest(format!(
                    "\"rewind\" is at most {max_rewind} messages; use \"since\" or the history \
                     API for more"
                )));
            }
            Start::Rewind(n)
        } else if let Some(s) = raw.rewind_seconds {
            Start::RewindSeconds(s)
        } else {
            Start::Now
        };
        let qos = match raw.qos {
            None => QoS::AtLeastOnce,
            Some(0) => QoS::AtMostOnce,
            Some(1 | 2) => QoS::AtLeastOnce,
            Some(q) => {
                return Err(StreamError::BadRequest(format!(
                    "\"qos\" must be 0 or 1, got {q}"
                )));
            }
        };
        Ok(SubscribeSpec {
            filter: filter.to_owned(),
            start,
            retained: raw.retained,
            qos,
        })
    }
}

/// Reads a position string as the gateway gave it.
pub fn parse_position(s: &str) -> Result<Position, StreamError> {
    s.parse::<Position>()
        .map_err(|e| StreamError::BadPosition(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: RawOptions<'_>) -> Result<SubscribeSpec, StreamError> {
        SubscribeSpec::parse(&raw, &TopicLimits::default(), 100)
    }

    #[test]
    fn defaults_and_each_start() {
        let s = parse(RawOptions {
            filter: Some("a/+/c"),
            ..Default::default()
        });
        assert_eq!(
            s.map(|s| (s.start, s.qos)),
            Ok((Start::Now, QoS::AtLeastOnce))
        );
        let s = parse(RawOptions {
            filter: Some("a/#"),
            since: Some("7-42"),
            ..Default::default()
        });
        assert_eq!(
            s.map(|s| s.start),
            Ok(Start::Since(Position { epoch: 7, seq: 42 }))
        );
        let s = parse(RawOptions {
            filter: Some("a"),
            rewind: Some(5),
            qos: Some(0),
            ..Default::default()
        });
        assert_eq!(
            s.map(|s| (s.start, s.qos)),
            Ok((Start::Rewind(5), QoS::AtMostOnce))
        );
    }

    #[test]
    fn refusals_have_their_codes() {
        let code = |raw: RawOptions<'_>| parse(raw).map_err(|e| e.code());
        assert_eq!(code(RawOptions::default()), Err("bad_request"));
        let f = |filter| RawOptions {
            filter: Some(filter),
            ..Default::default()
        };
        assert_eq!(code(f("a/#/b")), Err("invalid_filter"));
        assert_eq!(code(f("$share/g/a")), Err("invalid_filter"));
        assert_eq!(
            code(RawOptions {
                since: Some("nope"),
                ..f("a")
            }),
            Err("bad_position")
        );
        assert_eq!(
            code(RawOptions {
                rewind: Some(101),
                ..f("a")
            }),
            Err("bad_request")
        );
        assert_eq!(
            code(RawOptions {
                rewind: Some(1),
                rewind_seconds: Some(1),
                ..f("a")
            }),
            Err("bad_request")
        );
        assert_eq!(
            code(RawOptions {
                qos: Some(3),
                ..f("a")
            }),
            Err("bad_request")
        );
    }
}
