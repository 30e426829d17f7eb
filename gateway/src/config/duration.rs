//! Human-readable durations in the config file: `"500ms"`, `"30s"`, `"10m"`, `"24h"`, `"7d"`,
//! `"1w"`, and sums of those (`"1h30m"`). A bare integer (`30`) means seconds, so an
//! environment override such as `GATEWAY__MQTT__CONNECT_TIMEOUT=30` works too.
//!
//! Ages (history `max_age`) additionally accept `"0"`, `0` and `"none"`, meaning "no age
//! limit".

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// Parses a human duration such as `"30s"`, `"10m"`, `"24h"`, `"7d"` or `"1h30m"`.
///
/// Units: `ms`, `s`, `m`, `h`, `d`, `w`. A number without a unit means seconds. Returns a
/// message naming the problem when the text is not a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration; write e.g. \"30s\", \"10m\", \"24h\" or \"7d\"".into());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad(text));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad(text))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Some(Duration::from_millis(number)),
            "s" => Some(Duration::from_secs(number)),
            "m" => number.checked_mul(60).map(Duration::from_secs),
            "h" => number.checked_mul(3600).map(Duration::from_secs),
            "d" => number.checked_mul(86_400).map(Duration::from_secs),
            "w" => number.checked_mul(7 * 86_400).map(Duration::from_secs),
            _ => return Err(bad(text)),
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| format!("duration {text:?} is too large"))?;
    }
    Ok(total)
}

/// Parses a history age: a duration, or `"0"` / `"none"` for no age limit (`None`).
pub fn parse_age(text: &str) -> Result<Option<Duration>, String> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let d = parse_duration(trimmed)?;
    Ok((!d.is_zero()).then_some(d))
}

fn bad(text: &str) -> String {
    format!(
        "{text:?} is not a duration; write a number and a unit (ms, s, m, h, d, w), \
         e.g. \"30s\", \"10m\", \"24h\", \"7d\" or \"1h30m\""
    )
}

/// Serde helper for `Duration` fields: `#[serde(deserialize_with = "duration::deserialize")]`.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

/// Serde helper for an age (`Option<Duration>`, `None` = no limit).
pub fn deserialize_age<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    d.deserialize_any(AgeVisitor)
}

/// Serde helper for an optional age override: absent = inherit (`None`), present = `Some(age)`.
/// Use together with `#[serde(default)]`.
pub fn deserialize_age_override<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<Duration>>, D::Error> {
    d.deserialize_any(AgeVisitor).map(Some)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration such as \"30s\", \"10m\", \"24h\" or \"7d\", or whole seconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(format!("a duration cannot be negative (got {v})")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }
}

struct AgeVisitor;

impl Visitor<'_> for AgeVisitor {
    type Value = Option<Duration>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an age such as \"24h\" or \"7d\", or \"none\" / 0 for no age limit")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<Duration>, E> {
        parse_age(v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<Duration>, E> {
        DurationVisitor
            .visit_i64(v)
            .map(|d| (!d.is_zero()).then_some(d))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<Duration>, E> {
        Ok((v != 0).then(|| Duration::from_secs(v)))
    }
}

/// Formats a duration the way the config file writes it (`"7d"`, `"10s"`, `"1500ms"`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs != 0 && secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_sums() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(1_209_600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(" 45 "), Ok(Duration::from_secs(45)));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "s",
            "10x",
            "1.5h",
            "-3s",
            "h10",
            "10 s",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("none"), Ok(None));
        assert_eq!(parse_age("NONE"), Ok(None));
        assert_eq!(parse_age("0"), Ok(None));
        assert_eq!(parse_age("0s"), Ok(None));
        assert_eq!(parse_age("7d"), Ok(Some(Duration::from_secs(604_800))));
        assert!(parse_age("forever").is_err());
    }

    #[test]
    fn format_round_trips() {
        for text in ["7d", "10s", "1500ms", "14d", "90m", "25h", "0s"] {
            let d = parse_duration(text).expect("valid duration");
            assert_eq!(format_duration(d), text);
        }
    }
}
