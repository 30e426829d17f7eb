//! Presence over the WebSocket: current members on watch, enter and leave from MQTT
//! connect/disconnect/will and from browsers that declare a client id.

use e2e_tests::GatewayHarness;
use e2e_tests::mqtt::{V4, v4_options};
use e2e_tests::ws::WsClient;
use serde_json::json;

async fn next_presence(ws: &mut WsClient) -> serde_json::Value {
    loop {
        let f = ws.next().await;
        if f["op"] == "presence" {
            return f;
        }
    }
}

#[tokio::test]
async fn members_then_enter_and_leave() {
    let gw = GatewayHarness::new().start().await;
    let (dev1, _) = V4::connect(v4_options(gw.mqtt_addr(), "plant1/dev1")).await;
    let _alice = WsClient::connect(gw.http_addr(), "client_id=ops/alice").await;
    let mut w = WsClient::connect(gw.http_addr(), "").await;
    let mut other = Vec::new();
    let ok = w
        .request(json!({"op": "presence", "filter": "plant1/#"}), &mut other)
        .await;
    assert_eq!(ok["op"], "ok", "{ok}");
    let snap = next_presence(&mut w).await;
    assert_eq!(snap["action"], "present");
    assert_eq!(snap["members"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        (
            snap["members"][0]["id"].clone(),
            snap["members"][0]["kind"].clone()
        ),
        (json!("plant1/dev1"), json!("mqtt"))
    );
    let (dev2, _) = V4::connect(v4_options(gw.mqtt_addr(), "plant1/dev2")).await;
    let e = next_presence(&mut w).await;
    assert_eq!(
        (e["action"].clone(), e["member"]["id"].clone()),
        (json!("enter"), json!("plant1/dev2"))
    );
    dev2.disconnect().await;
    let e = next_presence(&mut w).await;
    assert_eq!(
        (
            e["action"].clone(),
            e["member"]["id"].clone(),
            e["reason"].clone()
        ),
        (json!("leave"), json!("plant1/dev2"), json!("disconnect"))
    );
    // A device with a will that drops: leaves with reason "will".
    let mut o = v4_options(gw.mqtt_addr(), "plant1/dev3");
    o.set_last_will(rumqttc::LastWill::new(
        "plant1/dev3/status",
        "gone",
        rumqttc::QoS::AtLeastOnce,
        false,
    ));
    let (dev3, _) = V4::connect(o).await;
    assert_eq!(next_presence(&mut w).await["action"], "enter");
    dev3.kill();
    let e = next_presence(&mut w).await;
    assert_eq!(
        (e["action"].clone(), e["reason"].clone()),
        (json!("leave"), json!("will"))
    );
    // Browsers: watching "ops/+" sees alice, then bob come and go.
    let ok = w
        .request(json!({"op": "presence", "filter": "ops/+"}), &mut other)
        .await;
    assert_eq!(ok["op"], "ok");
    let snap = next_presence(&mut w).await;
    assert_eq!(snap["members"][0]["kind"], "browser");
    let mut bob = WsClient::connect(gw.http_addr(), "").await;
    let r = bob
        .request(json!({"op": "auth", "client_id": "ops/bob"}), &mut other)
        .await;
    assert_eq!(r["op"], "ok");
    let e = next_presence(&mut w).await;
    assert_eq!(
        (
            e["action"].clone(),
            e["member"]["id"].clone(),
            e["filter"].clone()
        ),
        (json!("enter"), json!("ops/bob"), json!("ops/+"))
    );
    drop(bob);
    let e = next_presence(&mut w).await;
    assert_eq!(
        (e["action"].clone(), e["member"]["id"].clone()),
        (json!("leave"), json!("ops/bob"))
    );
    let (status, list) =
        e2e_tests::http::get_json(gw.http_addr(), "/api/v1/presence?filter=%23").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["ops/alice", "plant1/dev1"]);
    dev1.disconnect().await;
    gw.stop().await;
}
