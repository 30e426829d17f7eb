//! Tests of the embedded log against a real store in a temporary directory.
// A failed unwrap here is a failed test, with the error in its message.
#![allow(clippy::unwrap_used)]

mod basics;
mod blocks;
mod crash;
mod dedupe;
mod order;
mod retained;
mod retention;
mod retention_cost;

use super::{EmbeddedLog, LogOptions, ReleaseFeed};
use crate::core::namespace::{HistoryPolicy, NamespaceRule, NamespaceRules};
use crate::core::{Message, MessageProps, QoS, StoredMessage};
use bytes::Bytes;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A message on `topic` with the given QoS and payload, accepted now.
pub fn msg(topic: &str, qos: QoS, payload: &str) -> Message {
    Message {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos,
        retain: false,
        props: MessageProps::default(),
        ts_ms: crate::core::message::now_ms(),
        origin: None,
    }
}

/// Same, with the retain flag set.
pub fn retained_msg(topic: &str, payload: &str) -> Message {
    Message {
        retain: true,
        ..msg(topic, QoS::AtLeastOnce, payload)
    }
}

/// Default namespace rules.
pub fn default_rules() -> Arc<NamespaceRules> {
    Arc::new(NamespaceRules::default())
}

/// Rules with one namespace on `filter` using `history`.
pub fn rules_with(filter: &str, history: HistoryPolicy) -> Arc<NamespaceRules> {
    let rule = NamespaceRule {
        name: "test".into(),
        filter: filter.into(),
        history,
    };
    Arc::new(NamespaceRules::new(vec![rule], HistoryPolicy::default()))
}

/// Opens a log with default options (no periodic sweep during a test).
pub fn open(dir: &Path, rules: Arc<NamespaceRules>) -> (Arc<EmbeddedLog>, ReleaseFeed) {
    let opts = LogOptions {
        retention_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    match EmbeddedLog::open(dir, rules, opts) {
        Ok(v) => v,
        Err(e) => panic!("open failed: {e}"),
    }
}

/// Payloads of messages as text, for compact assertions.
pub fn payloads(msgs: &[Arc<StoredMessage>]) -> Vec<String> {
    msgs.iter()
        .map(|m| String::from_utf8_lossy(&m.msg.payload).into_owned())
        .collect()
}

/// Sequence numbers of messages.
pub fn seqs(msgs: &[Arc<StoredMessage>]) -> Vec<u64> {
    msgs.iter().map(|m| m.pos.seq).collect()
}

/// Bounds a future in time so a bug shows up as a failure rather than a hung test.
pub async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(30), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after 30 s"),
    }
}
