//! Client → server frames of the WebSocket protocol and what each does to the connection's
//! [`Stream`]. Every refusal is an `error` frame with the request's `id` and a stable code;
//! none of them ends the connection.

use crate::stream::encode;
use crate::stream::publish::{Ack, PublishIn};
use crate::stream::{RawOptions, Stream, StreamError, StreamHub, SubscribeSpec};
use serde::Deserialize;
use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;

/// A publish waiting for the log, resolving to the request id and the outcome.
pub type PendingAck =
    Pin<Box<dyn Future<Output = (Option<Value>, Result<Ack, StreamError>)> + Send>>;

/// What handling one frame produced.
pub enum Outcome {
    /// Send this text frame now.
    Reply(String),
    /// A publish was queued to the log; its answer comes later.
    Pending(PendingAck),
}

#[derive(Deserialize)]
struct Head {
    op: Option<String>,
    id: Option<Value>,
}

#[derive(Deserialize)]
struct SubscribeIn {
    filter: Option<String>,
    since: Option<String>,
    rewind: Option<u64>,
    rewind_seconds: Option<u64>,
    #[serde(default)]
    retained: bool,
    qos: Option<u64>,
}

#[derive(Deserialize)]
struct FilterIn {
    filter: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
}

#[derive(Deserialize)]
struct AuthIn {
    /// Accepted and not checked yet: authentication is not configurable in this version.
    #[allow(dead_code)]
    token: Option<String>,
    client_id: Option<String>,
}

fn yes() -> bool {
    true
}

fn ok(id: &Option<Value>, mut extra: Value) -> String {
    if let Some(obj) = extra.as_object_mut() {
        obj.insert("op".into(), json!("ok"));
        if let Some(id) = id {
            obj.insert("id".into(), id.clone());
        }
    }
    extra.to_string()
}

fn err(id: &Option<Value>, e: &StreamError) -> String {
    encode::error(id.as_ref(), e)
}

fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, StreamError> {
    serde_json::from_str(text).map_err(|e| StreamError::BadJson(e.to_string()))
}

/// The answer to a publish, as a frame.
pub fn ack_frame(id: &Option<Value>, r: &Result<Ack, StreamError>) -> String {
    match r {
        Ok(a) => ok(
            id,
            json!({ "pos": a.pos.to_string(), "duplicate": a.duplicate }),
        ),
        Err(e) => err(id, e),
    }
}

/// Handles one text frame.
pub fn handle(text: &str, stream: &mut Stream, hub: &StreamHub) -> Outcome {
    let head: Head = match serde_json::from_str(text) {
        Ok(h) => h,
        Err(e) => return Outcome::Reply(err(&None, &StreamError::BadJson(e.to_string()))),
    };
    let id = head.id;
    let Some(op) = head.op else {
        return Outcome::Reply(err(
            &id,
            &StreamError::BadRequest("every frame needs an \"op\"".into()),
        ));
    };
    let r = match op.as_str() {
        "ping" => {
            return Outcome::Reply(match &id {
                Some(id) => json!({"op": "pong", "id": id}).to_string(),
                None => r#"{"op":"pong"}"#.into(),
            });
        }
        "publish" => return publish(text, id, stream, hub),
        "subscribe" => subscribe(text, stream, hub),
        "unsubscribe" => parse::<FilterIn>(text).and_then(|f| {
            let filter = f
                .filter
                .ok_or_else(|| StreamError::BadRequest("\"filter\" is required".into()))?;
            stream.unsubscribe(&filter)?;
            Ok(json!({ "filter": filter }))
        }),
        "presence" => parse::<FilterIn>(text).and_then(|f| {
            let filter = f
                .filter
                .ok_or_else(|| StreamError::BadRequest("\"filter\" is required".into()))?;
            stream.watch_presence(&filter, f.enabled)?;
            Ok(json!({ "filter": filter, "enabled": f.enabled }))
        }),
        "auth" => parse::<AuthIn>(text).and_then(|a| {
            if let Some(c) = &a.client_id {
                stream.set_client_id(c)?;
            }
            Ok(json!({ "client_id": stream.client_id() }))
        }),
        other => Err(StreamError::UnknownOp(other.chars().take(64).collect())),
    };
    Outcome::Reply(match r {
        Ok(v) => ok(&id, v),
        Err(e) => err(&id, &e),
    })
}

fn subscribe(text: &str, stream: &mut Stream, hub: &StreamHub) -> Result<Value, StreamError> {
    let s: SubscribeIn = parse(text)?;
    let raw = RawOptions {
        filter: s.filter.as_deref(),
        since: s.since.as_deref(),
        rewind: s.rewind,
        rewind_seconds: s.rewind_seconds,
        retained: s.retained,
        qos: s.qos,
    };
    let spec = SubscribeSpec::parse(&raw, &hub.limits, hub.config.max_rewind)?;
    let start = stream.subscribe(&spec)?;
    Ok(json!({ "filter": spec.filter, "position": start.to_string() }))
}

fn publish(text: &str, id: Option<Value>, stream: &Stream, hub: &StreamHub) -> Outcome {
    let p: PublishIn = match parse(text) {
        Ok(p) => p,
        Err(e) => return Outcome::Reply(err(&id, &e)),
    };
    let origin = match stream.client_id() {
        Some(c) => format!("web:{c}"),
        None => format!("web:#{}", stream.conn_id()),
    };
    let prepared = match p.prepare(hub, origin) {
        Ok(p) => p,
        Err(e) => return Outcome::Reply(err(&id, &e)),
    };
    let fut = hub.log.submit(prepared.msg, prepared.dedupe);
    Outcome::Pending(Box::pin(async move {
        let r = fut.await.map(Ack::from).map_err(StreamError::from);
        (id, r)
    }))
}
