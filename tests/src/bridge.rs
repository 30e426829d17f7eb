//! Helpers for bridge tests: `[[bridge]]` sections from TOML text, the bridges' status from
//! `GET /api/v1/bridges`, waiting for a status condition, and a verifier that checks a
//! numbered stream arrived at the remote.

use crate::mqtt::{V4, v4_options};
use gateway::config::Config;
use gateway::config::bridge::BridgeConfig;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Parses the body of one `[[bridge]]` section (keys and its `[bridge.tls]`,
/// `[[bridge.out]]`, `[[bridge.in]]` sub-tables) as the gateway's config loader would.
pub fn bridge_config(body: &str) -> BridgeConfig {
    let text = format!("[[bridge]]\n{body}");
    let mut config = Config::from_toml(&text, Path::new("bridge-test.toml"))
        .unwrap_or_else(|e| panic!("bridge section does not parse: {e}\n{text}"));
    config.bridge.remove(0)
}

/// Every bridge's status, from the gateway's HTTP listener.
pub async fn statuses(http: SocketAddr) -> Vec<Value> {
    let r = crate::http::request(http, "GET", "/api/v1/bridges", None, &[]).await;
    assert_eq!(r.status, 200, "GET /api/v1/bridges: {}", r.body);
    match r.json().get("bridges") {
        Some(Value::Array(list)) => list.clone(),
        other => panic!("no bridges array in {other:?}"),
    }
}

/// The status of the bridge called `name`.
pub async fn status(http: SocketAddr, name: &str) -> Value {
    statuses(http)
        .await
        .into_iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no bridge {name:?} in the status list"))
}

/// Polls the status of `name` every 50 ms until `cond` holds; panics with the last status
/// after `patience`.
pub async fn wait_status(
    http: SocketAddr,
    name: &str,
    patience: Duration,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let s = status(http, name).await;
        if cond(&s) {
            return s;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("bridge {name:?}: waited {patience:?} for {what}; status: {s:#}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A counter of a status as a number (0 when absent).
pub fn counter(s: &Value, key: &str) -> u64 {
    s[key].as_u64().unwrap_or(0)
}

/// Creates the verifier's persistent session at the remote (QoS 2 subscription), so the
/// remote queues everything for it while it is away, then leaves.
pub async fn register_verifier(remote: SocketAddr, id: &str, filter: &str) {
    let mut o = v4_options(remote, id);
    o.set_clean_session(false);
    let (mut v, _) = V4::connect(o).await;
    v.subscribe(filter, rumqttc::QoS::ExactlyOnce).await;
    v.disconnect().await;
}

/// Reconnects the verifier and collects the numbered payloads until `count` distinct ones
/// arrived (or patience runs out), in arrival order.
pub async fn collect(remote: SocketAddr, id: &str, count: usize) -> Vec<u32> {
    let mut o = v4_options(remote, id);
    o.set_clean_session(false);
    let (mut v, ack) = V4::connect(o).await;
    assert!(ack.session_present, "the verifier's session survived");
    let mut got = Vec::new();
    let mut distinct = std::collections::HashSet::new();
    while distinct.len() < count {
        let Some(p) = v.try_next_publish(Duration::from_secs(20)).await else {
            break;
        };
        let n: u32 = std::str::from_utf8(&p.payload)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected payload {:?}", p.payload));
        distinct.insert(n);
        got.push(n);
    }
    v.disconnect().await;
    got
}

/// Checks that every number below `count` arrived and that first arrivals are in order;
/// with `exactly_once`, that nothing arrived twice.
pub fn check_stream(got: &[u32], count: u32, exactly_once: bool) {
    let mut seen = std::collections::HashSet::new();
    let mut last_new: Option<u32> = None;
    for &n in got {
        if seen.insert(n) {
            if let Some(prev) = last_new {
                assert!(
                    n > prev,
                    "{n} arrived for the first time after {prev}: {got:?}"
                );
            }
            last_new = Some(n);
        } else {
            assert!(!exactly_once, "{n} arrived twice at QoS 2: {got:?}");
        }
    }
    let missing: Vec<u32> = (0..count).filter(|n| !seen.contains(n)).collect();
    assert!(missing.is_empty(), "missing {missing:?} of {count}");
}
