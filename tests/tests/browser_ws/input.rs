//! Bad input: every case gets an `error` with its code, and the connection keeps working.

use e2e_tests::GatewayHarness;
use e2e_tests::ws::WsClient;
use serde_json::json;

#[tokio::test]
async fn each_bad_frame_gets_its_code_and_the_connection_goes_on() {
    let gw = GatewayHarness::new()
        .with_config(|c| c.browser.max_frame_size = 4096)
        .start()
        .await;
    let mut ws = WsClient::connect(gw.http_addr(), "").await;
    let mut other = Vec::new();
    ws.send_text("{not json").await;
    assert_eq!(ws.next().await["code"], "bad_json");
    ws.send_text(&format!(r#"{{"op":"ping","pad":"{}"}}"#, "x".repeat(5000)))
        .await;
    assert_eq!(ws.next().await["code"], "frame_too_large");
    let cases = [
        (json!({"op": "fly"}), "unknown_op"),
        (json!({"id": 1}), "bad_request"),
        (
            json!({"op": "subscribe", "filter": "a/#/b"}),
            "invalid_filter",
        ),
        (
            json!({"op": "subscribe", "filter": "$share/g/a"}),
            "invalid_filter",
        ),
        (
            json!({"op": "subscribe", "filter": "a", "since": "yesterday"}),
            "bad_position",
        ),
        (
            json!({"op": "subscribe", "filter": "a", "rewind": 3, "since": "1-1"}),
            "bad_request",
        ),
        (
            json!({"op": "unsubscribe", "filter": "never"}),
            "not_subscribed",
        ),
        (
            json!({"op": "publish", "channel": "a/+", "data": 1}),
            "invalid_channel",
        ),
        (
            json!({"op": "publish", "channel": "", "data": 1}),
            "invalid_channel",
        ),
        (
            json!({"op": "publish", "channel": "$SYS/x", "data": 1}),
            "forbidden_channel",
        ),
        (
            json!({"op": "publish", "channel": "a", "data": 1, "qos": 3}),
            "bad_request",
        ),
        (
            json!({"op": "publish", "channel": "a", "data": 1, "encoding": "utf8"}),
            "bad_payload",
        ),
        (
            json!({"op": "publish", "channel": "a", "data": "%%", "encoding": "base64"}),
            "bad_payload",
        ),
        (
            json!({"op": "publish", "channel": "a", "data": 1, "colour": "red"}),
            "bad_json",
        ),
        (
            json!({"op": "presence", "filter": "+/+/#/x"}),
            "invalid_filter",
        ),
    ];
    for (frame, code) in cases {
        let r = ws.request(frame.clone(), &mut other).await;
        assert_eq!(
            (r["op"].clone(), r["code"].clone()),
            (json!("error"), json!(code)),
            "{frame} → {r}"
        );
        assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A position from the future of this log.
    let epoch = ws.welcome["epoch"].as_str().expect("epoch").to_owned();
    let r = ws
        .request(
            json!({"op": "subscribe", "filter": "a", "since": format!("{epoch}-999999999")}),
            &mut other,
        )
        .await;
    assert_eq!(r["code"], "bad_position", "{r}");
    // Binary frames are refused, politely.
    use futures_util::SinkExt;
    ws.socket
        .send(tokio_tungstenite::tungstenite::Message::Binary(
            vec![1u8, 2, 3].into(),
        ))
        .await
        .expect("send");
    assert_eq!(ws.next().await["code"], "bad_json");
    // Still alive and well.
    ws.send(json!({"op": "ping", "id": 99})).await;
    assert_eq!(ws.next().await, json!({"op": "pong", "id": 99}));
    let (ok, _) = ws.subscribe("a", json!({})).await;
    assert_eq!(ok["op"], "ok");
    let r = ws
        .request(
            json!({"op": "publish", "channel": "a", "data": {"x": 1}}),
            &mut other,
        )
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    let mut notices = Vec::new();
    let m = ws.msgs(1, &mut notices).await;
    assert_eq!(m[0]["data"], json!({"x": 1}));
    assert!(other.iter().all(|f| f["op"] != "error"), "{other:?}");
    gw.stop().await;
}

#[tokio::test]
async fn ping_gets_pong_with_its_id_and_too_many_subscriptions_is_refused() {
    let gw = GatewayHarness::new()
        .with_config(|c| c.browser.max_subscriptions = 2)
        .start()
        .await;
    let mut ws = WsClient::connect(gw.http_addr(), "").await;
    ws.send(json!({"op": "ping", "id": "p1"})).await;
    assert_eq!(ws.next().await, json!({"op": "pong", "id": "p1"}));
    ws.subscribe("a", json!({})).await;
    ws.subscribe("b", json!({})).await;
    let (again, _) = ws.subscribe("a", json!({"rewind": 1})).await;
    assert_eq!(
        again["op"], "ok",
        "re-subscribing replaces, it does not add"
    );
    let (r, _) = ws.subscribe("c", json!({})).await;
    assert_eq!(r["code"], "too_many_subscriptions");
    gw.stop().await;
}
