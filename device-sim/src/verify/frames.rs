//! Reading the gateway's browser-protocol objects (WebSocket text frames and SSE `data:`
//! lines carry the same JSON, see docs/protocol.md) into verifier [`Event`]s: a `msg` with
//! its stamp and position, `reset`, `dropped`, `error`.

use serde_json::Value;

use super::transport::Event;
use crate::stamp::Stamp;

/// The event a gateway JSON object stands for; `None` for objects the verifier ignores
/// (`ok`, `pong`, `presence`, `welcome`, ...) and for text that is not JSON.
pub fn parse(text: &str) -> Option<Event> {
    let v: Value = serde_json::from_str(text).ok()?;
    match v.get("op")?.as_str()? {
        "msg" => Some(Event::Message {
            stamp: stamp_of(&v),
            position: v.get("pos").and_then(Value::as_str).map(str::to_owned),
            retained: v.get("retain").and_then(Value::as_bool).unwrap_or(false),
        }),
        "reset" => Some(Event::Reset(text.to_string())),
        "dropped" => Some(Event::Dropped(
            v.get("count").and_then(Value::as_u64).unwrap_or(0),
        )),
        "error" => Some(Event::ServerError(text.to_string())),
        _ => None,
    }
}

/// The stamp of a `msg` object: from `props.user_properties` first, then the payload.
pub fn stamp_of(msg: &Value) -> Option<Stamp> {
    if let Some(props) = msg
        .get("props")
        .and_then(|p| p.get("user_properties"))
        .and_then(Value::as_array)
    {
        let pairs = props.iter().filter_map(|pair| {
            let pair = pair.as_array()?;
            Some((pair.first()?.as_str()?, pair.get(1)?.as_str()?))
        });
        if let Some(stamp) = Stamp::from_user_properties(pairs) {
            return Some(stamp);
        }
    }
    let data = msg.get("data")?;
    match msg
        .get("encoding")
        .and_then(Value::as_str)
        .unwrap_or("json")
    {
        "json" => Stamp::from_json(data),
        // A JSON text the gateway did not inline (it inlines every valid JSON payload).
        "utf8" => Stamp::from_payload(data.as_str()?.as_bytes()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_stamp() {
        let f = r#"{"op":"msg","channel":"sim/a","pos":"9-42","ts":1,"qos":1,"retain":false,
            "encoding":"json","data":{"t":1,"sim":{"dev":"a","seq":7,"ts":123}}}"#;
        let Some(Event::Message {
            stamp,
            position,
            retained,
        }) = parse(f)
        else {
            panic!("not a message");
        };
        assert_eq!(
            stamp.map(|s| (s.device, s.seq, s.sent_at_us)),
            Some(("a".into(), 7, 123))
        );
        assert_eq!(position.as_deref(), Some("9-42"));
        assert!(!retained);
    }

    #[test]
    fn user_properties_win_over_the_payload() {
        let f = r#"{"op":"msg","pos":"9-1","retain":true,"encoding":"base64","data":"/wAB",
            "props":{"user_properties":[["x","y"],["sim-dev","b"],["sim-seq","3"],["sim-ts","9"]]}}"#;
        let Some(Event::Message {
            stamp, retained, ..
        }) = parse(f)
        else {
            panic!("not a message");
        };
        assert_eq!(stamp.map(|s| (s.device, s.seq)), Some(("b".into(), 3)));
        assert!(retained);
    }

    #[test]
    fn other_objects() {
        assert!(matches!(
            parse(r#"{"op":"msg","pos":"1-1","encoding":"utf8","data":"hello"}"#),
            Some(Event::Message { stamp: None, .. })
        ));
        assert!(matches!(
            parse(r#"{"op":"reset","filter":"a","reason":"retention","from":"1-1","to":"1-5"}"#),
            Some(Event::Reset(_))
        ));
        assert!(matches!(
            parse(r#"{"op":"dropped","count":12,"total":40}"#),
            Some(Event::Dropped(12))
        ));
        assert!(parse(r#"{"op":"pong","id":1}"#).is_none());
        assert!(parse("not json").is_none());
    }
}
