//! Read endpoints: history, retained messages, channels, presence.

use super::error::ApiError;
use crate::core::message::now_ms;
use crate::core::topic;
use crate::stream::encode::{MsgOut, ResetOut};
use crate::stream::history::{self, Direction, HistoryQuery};
use crate::stream::options::parse_position;
use crate::stream::{StreamError, StreamHub};
use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// Query parameters, refusing keys not in `allowed`.
fn params(raw: &Option<String>, allowed: &[&str]) -> Result<HashMap<String, String>, StreamError> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        if !allowed.contains(&&*k) {
            return Err(StreamError::BadRequest(format!(
                "unknown query parameter {:?}; this endpoint takes {}",
                k.chars().take(64).collect::<String>(),
                allowed.join(", ")
            )));
        }
        out.insert(k.into_owned(), v.into_owned());
    }
    Ok(out)
}

fn limit(
    p: &HashMap<String, String>,
    hub: &StreamHub,
    default: usize,
) -> Result<usize, StreamError> {
    match p.get("limit") {
        None => Ok(default.min(hub.config.max_batch)),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n >= 1 && n <= hub.config.max_batch => Ok(n),
            _ => Err(StreamError::BadRequest(format!(
                "\"limit\" must be 1 to {}",
                hub.config.max_batch
            ))),
        },
    }
}

fn filter_param(p: &HashMap<String, String>, hub: &StreamHub) -> Result<String, StreamError> {
    let f = p
        .get("filter")
        .ok_or_else(|| StreamError::BadRequest("\"filter\" is required".into()))?;
    let parsed = topic::validate_filter(f, &hub.limits)
        .map_err(|e| StreamError::InvalidFilter(e.to_string()))?;
    if parsed.is_shared() {
        return Err(StreamError::InvalidFilter(
            "$share/ filters are not for reading history".into(),
        ));
    }
    Ok(f.clone())
}

/// `GET /history?channel=…|filter=…&since=&before=&limit=&direction=forward|backward`.
pub async fn history(
    State(hub): State<Arc<StreamHub>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = params(
        &raw,
        &["channel", "filter", "since", "before", "limit", "direction"],
    )?;
    let filter = match (p.get("channel"), p.get("filter")) {
        (Some(c), None) => {
            topic::validate_topic_name(c, &hub.limits)
                .map_err(|e| StreamError::InvalidTopic(e.to_string()))?;
            c.clone()
        }
        (None, Some(_)) => filter_param(&p, &hub)?,
        _ => {
            return Err(StreamError::BadRequest(
                "give exactly one of \"channel\" and \"filter\"".into(),
            )
            .into());
        }
    };
    let direction = match p.get("direction").map(String::as_str) {
        None | Some("forward") => Direction::Forward,
        Some("backward") => Direction::Backward,
        Some(_) => {
            return Err(
                StreamError::BadRequest("\"direction\" is forward or backward".into()).into(),
            );
        }
    };
    let q = HistoryQuery {
        filter,
        since: p.get("since").map(|s| parse_position(s)).transpose()?,
        before: p.get("before").map(|s| parse_position(s)).transpose()?,
        limit: limit(&p, &hub, 100)?,
        direction,
    };
    let page = history::read(&*hub.log, &q)?;
    let messages: Vec<MsgOut<'_>> = page
        .messages
        .iter()
        .map(|m| MsgOut::new(m, false, false))
        .collect();
    let mut body = json!({
        "messages": messages,
        "next": page.next.map(|p| p.to_string()),
    });
    if !page.resets.is_empty() {
        let resets: Vec<ResetOut<'_>> = page.resets.iter().map(ResetOut::new).collect();
        body["resets"] = serde_json::to_value(resets).unwrap_or(Value::Null);
    }
    Ok(Json(body))
}

/// `GET /retained?filter=…`.
pub async fn retained(
    State(hub): State<Arc<StreamHub>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = params(&raw, &["filter"])?;
    let filter = filter_param(&p, &hub)?;
    let msgs = hub.log.retained(&filter).map_err(StreamError::from)?;
    let out: Vec<MsgOut<'_>> = msgs.iter().map(|m| MsgOut::new(m, true, false)).collect();
    Ok(Json(json!({ "messages": out })))
}

/// `GET /channels?filter=&limit=`: channels seen since start, most active first.
pub async fn channels(
    State(hub): State<Arc<StreamHub>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = params(&raw, &["filter", "limit"])?;
    let filter = match p.get("filter") {
        Some(_) => Some(filter_param(&p, &hub)?),
        None => None,
    };
    let limit = limit(&p, &hub, 100)?;
    let broker = hub.broker.clone();
    let list = hub.channels.list(filter.as_deref(), limit, now_ms(), |c| {
        // The rate tap is itself a `#` subscriber.
        broker.subscriber_count(c).saturating_sub(1)
    });
    Ok(Json(json!({ "channels": list })))
}

/// `GET /presence?filter=` (default `#`): who is online.
pub async fn presence(
    State(hub): State<Arc<StreamHub>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = params(&raw, &["filter"])?;
    let filter = match p.get("filter") {
        Some(_) => filter_param(&p, &hub)?,
        None => "#".to_owned(),
    };
    let members = hub.broker.presence.members(&filter);
    Ok(Json(json!({ "filter": filter, "members": members })))
}
