//! Slow consumers: a reliable subscription that stops reading catches up from the log once
//! it reads again (nothing lost, in order), a qos 0 one loses its oldest and is told, and
//! neither holds up a fast consumer.

use e2e_tests::GatewayHarness;
use e2e_tests::http::post_json;
use e2e_tests::ws::WsClient;
use serde_json::{Value, json};

const BATCHES: i64 = 20;
const PER_BATCH: i64 = 500;

/// Publishes BATCHES × PER_BATCH numbered messages with ~1 KB of padding each over REST.
async fn flood(http: std::net::SocketAddr, qos: u8) {
    let pad = "x".repeat(1000);
    for b in 0..BATCHES {
        let messages: Vec<Value> = (0..PER_BATCH)
            .map(|i| json!({"channel": "flood/x", "data": {"n": b * PER_BATCH + i, "pad": pad}, "qos": qos}))
            .collect();
        let (status, r) = post_json(
            http,
            "/api/v1/publish/batch",
            &json!({"messages": messages}),
        )
        .await;
        assert_eq!(status, 200, "{r}");
        assert!(
            r["results"]
                .as_array()
                .is_some_and(|a| a.iter().all(|x| x["pos"].is_string()))
        );
    }
}

fn n(m: &Value) -> i64 {
    m["data"]["n"].as_i64().expect("numbered")
}

#[tokio::test]
async fn reliable_slow_consumer_catches_up_from_the_log_in_order() {
    let gw = GatewayHarness::new()
        .with_config(|c| c.browser.outbound_queue = 16)
        .start()
        .await;
    let mut slow = WsClient::connect(gw.http_addr(), "").await;
    slow.subscribe("flood/#", json!({})).await;
    let mut fast = WsClient::connect(gw.http_addr(), "").await;
    fast.subscribe("flood/#", json!({})).await;
    let total = BATCHES * PER_BATCH;
    let reader = tokio::spawn(async move {
        let mut notices = Vec::new();
        let got: Vec<i64> = fast
            .msgs(total as usize, &mut notices)
            .await
            .iter()
            .map(n)
            .collect();
        (got, notices)
    });
    // `slow` reads nothing while everything is published.
    flood(gw.http_addr(), 1).await;
    let (fast_got, fast_notices) = reader.await.expect("fast reader");
    assert_eq!(fast_got, (0..total).collect::<Vec<_>>());
    assert!(fast_notices.is_empty(), "{fast_notices:?}");
    let mut notices = Vec::new();
    let got: Vec<i64> = slow
        .msgs(total as usize, &mut notices)
        .await
        .iter()
        .map(n)
        .collect();
    assert_eq!(
        got,
        (0..total).collect::<Vec<_>>(),
        "everything, once, in order"
    );
    assert!(
        notices.is_empty(),
        "no drop notice for a reliable subscription: {notices:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn qos0_slow_consumer_drops_oldest_and_is_told() {
    let gw = GatewayHarness::new()
        .with_config(|c| {
            c.browser.outbound_queue = 16;
            c.history.store_qos0 = false;
        })
        .start()
        .await;
    let mut slow = WsClient::connect(gw.http_addr(), "").await;
    slow.subscribe("flood/#", json!({"qos": 0})).await;
    flood(gw.http_addr(), 0).await;
    let total = BATCHES * PER_BATCH;
    let mut got = Vec::new();
    let mut dropped = 0u64;
    // Read until the last message arrives; count drop notices.
    loop {
        let f = slow.next().await;
        match f["op"].as_str() {
            Some("msg") => {
                let v = n(&f);
                got.push(v);
                if v == total - 1 {
                    break;
                }
            }
            Some("dropped") => {
                dropped += f["count"].as_u64().expect("count");
                assert_eq!(f["total"].as_u64(), Some(dropped));
            }
            other => panic!("unexpected frame {other:?}: {f}"),
        }
    }
    assert!(dropped > 0, "a slow qos 0 consumer must have lost some");
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "what arrives is in order"
    );
    assert_eq!(
        got.len() as u64 + dropped,
        total as u64,
        "every message delivered or counted"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_burst_larger_than_one_write_batch_arrives_without_waiting_for_a_heartbeat() {
    let gw = GatewayHarness::new()
        .with_config(|c| {
            c.browser.heartbeat = std::time::Duration::from_secs(3600);
            c.browser.idle_timeout = std::time::Duration::from_secs(7200);
        })
        .start()
        .await;
    let mut ws = WsClient::connect(gw.http_addr(), "").await;
    ws.subscribe("burst", json!({})).await;
    let messages: Vec<Value> = (0..1000)
        .map(|i| json!({"channel": "burst", "data": {"n": i}}))
        .collect();
    let (status, _) = post_json(
        gw.http_addr(),
        "/api/v1/publish/batch",
        &json!({"messages": messages}),
    )
    .await;
    assert_eq!(status, 200);
    let mut notices = Vec::new();
    let got: Vec<i64> = ws.msgs(1000, &mut notices).await.iter().map(n).collect();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    gw.stop().await;
}
