//! The REST API: publish (single, batch), history, retained, channels, sessions, OpenAPI,
//! and JSON errors with stable codes.

use e2e_tests::GatewayHarness;
use e2e_tests::http::{get_json, post_json, request};
use e2e_tests::mqtt::{V4, v4_options};
use serde_json::json;

#[tokio::test]
async fn publish_history_both_ways_and_paging() {
    let gw = GatewayHarness::new().start().await;
    let http = gw.http_addr();
    let (s, one) = post_json(
        http,
        "/api/v1/publish",
        &json!({"channel": "h/a", "data": 0}),
    )
    .await;
    assert_eq!(s, 200, "{one}");
    assert!(one["pos"].is_string());
    let msgs: Vec<serde_json::Value> = (1..10)
        .map(|i| json!({"channel": if i % 2 == 0 { "h/a" } else { "h/b" }, "data": i}))
        .chain([
            json!({"channel": "$SYS/x", "data": 1}),
            json!({"channel": "h/a"}),
        ])
        .collect();
    let (s, b) = post_json(http, "/api/v1/publish/batch", &json!({"messages": msgs})).await;
    assert_eq!(s, 200);
    let res = b["results"].as_array().expect("results");
    assert_eq!(res.len(), 11);
    assert_eq!(
        (res[9]["code"].clone(), res[10]["code"].clone()),
        (json!("forbidden_channel"), json!("bad_request"))
    );
    let data = |v: &serde_json::Value| -> Vec<i64> {
        v["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| m["data"].as_i64().expect("n"))
            .collect()
    };
    let (_, h) = get_json(http, "/api/v1/history?channel=h%2Fa").await;
    assert_eq!(data(&h), vec![0, 2, 4, 6, 8]);
    assert_eq!(h["next"], json!(null));
    let (_, h) = get_json(http, "/api/v1/history?filter=h%2F%2B&limit=4").await;
    assert_eq!(data(&h), vec![0, 1, 2, 3]);
    let next = h["next"].as_str().expect("next page").to_owned();
    let (_, h) = get_json(
        http,
        &format!("/api/v1/history?filter=h%2F%2B&since={next}"),
    )
    .await;
    assert_eq!(data(&h), vec![4, 5, 6, 7, 8, 9]);
    let (_, h) = get_json(
        http,
        "/api/v1/history?filter=h%2F%23&direction=backward&limit=3",
    )
    .await;
    assert_eq!(data(&h), vec![9, 8, 7], "newest first");
    let before = h["next"].as_str().expect("next").to_owned();
    let (_, h) = get_json(
        http,
        &format!("/api/v1/history?filter=h%2F%23&direction=backward&limit=3&before={before}"),
    )
    .await;
    assert_eq!(data(&h), vec![6, 5, 4]);
    let (_, h) = get_json(
        http,
        "/api/v1/history?channel=h%2Fb&direction=backward&limit=2",
    )
    .await;
    assert_eq!(data(&h), vec![9, 7]);
    gw.stop().await;
}

#[tokio::test]
async fn retained_channels_sessions_and_openapi() {
    let gw = GatewayHarness::new().start().await;
    let http = gw.http_addr();
    let (s, _) = post_json(
        http,
        "/api/v1/publish",
        &json!({"channel": "cfg/x", "data": "on", "encoding": "utf8", "retain": true}),
    )
    .await;
    assert_eq!(s, 200);
    let (_, r) = get_json(http, "/api/v1/retained?filter=cfg%2F%23").await;
    assert_eq!(r["messages"][0]["channel"], "cfg/x");
    assert_eq!(
        (
            r["messages"][0]["data"].clone(),
            r["messages"][0]["retain"].clone()
        ),
        (json!("on"), json!(true))
    );
    // A persistent MQTT session with a subscription.
    let mut o = v4_options(gw.mqtt_addr(), "keeper");
    o.set_clean_session(false);
    let (mut keeper, _) = V4::connect(o).await;
    keeper.subscribe("cfg/#", rumqttc::QoS::AtLeastOnce).await;
    for i in 0..3 {
        post_json(
            http,
            "/api/v1/publish",
            &json!({"channel": "cfg/y", "data": i}),
        )
        .await;
    }
    for _ in 0..3 {
        keeper.next_publish().await;
    }
    let (_, ch) = get_json(http, "/api/v1/channels").await;
    let list = ch["channels"].as_array().expect("channels");
    let y = list
        .iter()
        .find(|c| c["channel"] == "cfg/y")
        .expect("cfg/y listed");
    assert_eq!(
        (y["messages"].clone(), y["subscribers"].clone()),
        (json!(3), json!(1))
    );
    assert!(y["rate"].as_f64().is_some_and(|r| r > 0.0));
    keeper.disconnect().await;
    let mut k = json!(null);
    for _ in 0..200 {
        let (_, sessions) = get_json(http, "/api/v1/sessions").await;
        k = sessions["sessions"]
            .as_array()
            .expect("sessions")
            .iter()
            .find(|s| s["client_id"] == "keeper")
            .cloned()
            .unwrap_or_default();
        if k["connected"] == false {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        (
            k["connected"].clone(),
            k["subscriptions"][0]["filter"].clone()
        ),
        (json!(false), json!("cfg/#"))
    );
    let (s, api) = get_json(http, "/api/v1/openapi.json").await;
    assert_eq!(s, 200);
    assert!(api["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert!(api["paths"]["/api/v1/history"].is_object());
    gw.stop().await;
}

#[tokio::test]
async fn errors_are_json_with_stable_codes() {
    let gw = GatewayHarness::new()
        .with_config(|c| c.browser.max_frame_size = 2048)
        .start()
        .await;
    let http = gw.http_addr();
    let cases: Vec<(&str, &str, Option<String>, u16, &str)> = vec![
        ("GET", "/api/v1/nope", None, 404, "not_found"),
        (
            "POST",
            "/api/v1/publish",
            Some("{oops".into()),
            400,
            "bad_json",
        ),
        (
            "POST",
            "/api/v1/publish",
            Some(json!({"channel": "$x", "data": 1}).to_string()),
            403,
            "forbidden_channel",
        ),
        (
            "POST",
            "/api/v1/publish",
            Some(json!({"channel": "a", "data": "x".repeat(3000)}).to_string()),
            413,
            "frame_too_large",
        ),
        (
            "GET",
            "/api/v1/history?filter=a%2F%23%2Fb",
            None,
            400,
            "invalid_filter",
        ),
        (
            "GET",
            "/api/v1/history?channel=a%2F%2B",
            None,
            400,
            "invalid_channel",
        ),
        (
            "GET",
            "/api/v1/history?channel=a&since=1",
            None,
            400,
            "bad_position",
        ),
        (
            "GET",
            "/api/v1/history?channel=a&limit=0",
            None,
            400,
            "bad_request",
        ),
        ("GET", "/api/v1/retained", None, 400, "bad_request"),
    ];
    for (method, path, body, status, code) in cases {
        let r = request(http, method, path, body.as_deref(), &[]).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert_eq!(r.json()["code"], code, "{method} {path}");
        assert!(r.header("content-type").is_some_and(|c| c.contains("json")));
    }
    gw.stop().await;
}

#[tokio::test]
async fn client_js_is_served_as_a_module() {
    let gw = GatewayHarness::new().start().await;
    let r = request(gw.http_addr(), "GET", "/client.js", None, &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.contains("javascript"))
    );
    assert!(r.body.contains("export class GatewayClient"));
    let d = request(gw.http_addr(), "GET", "/client.d.ts", None, &[]).await;
    assert!(d.body.contains("export declare class GatewayClient"));
    gw.stop().await;
}
