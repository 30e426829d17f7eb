//! Publishing from the browser: acks with positions, `msg_id` de-duplication, QoS towards
//! MQTT subscribers, properties.

use e2e_tests::GatewayHarness;
use e2e_tests::mqtt::{V4, V5, v4_options, v5_options};
use e2e_tests::ws::WsClient;
use rumqttc::QoS;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn msg_id_retry_makes_one_message_and_mqtt_gets_min_qos() {
    let gw = GatewayHarness::new().start().await;
    let (mut q0, _) = V4::connect(v4_options(gw.mqtt_addr(), "q0")).await;
    q0.subscribe("cmd/#", QoS::AtMostOnce).await;
    let (mut q1, _) = V4::connect(v4_options(gw.mqtt_addr(), "q1")).await;
    q1.subscribe("cmd/#", QoS::AtLeastOnce).await;
    let mut watcher = WsClient::connect(gw.http_addr(), "").await;
    watcher.subscribe("cmd/#", json!({})).await;
    let mut ws = WsClient::connect(gw.http_addr(), "client_id=dash").await;
    let mut other = Vec::new();
    let publish = json!({"op": "publish", "channel": "cmd/dev1", "data": {"on": true}, "qos": 2, "msg_id": "m-1"});
    let first = ws.request(publish.clone(), &mut other).await;
    assert_eq!(
        (first["op"].clone(), first["duplicate"].clone()),
        (json!("ok"), json!(false)),
        "{first}"
    );
    let again = ws.request(publish.clone(), &mut other).await;
    assert_eq!(again["pos"], first["pos"]);
    assert_eq!(again["duplicate"], true);
    // The same msg_id over REST (a client that fell back) is still the same message.
    let (status, rest) = e2e_tests::http::post_json(
        gw.http_addr(),
        "/api/v1/publish",
        &json!({"channel": "cmd/dev1", "data": {"on": true}, "qos": 2, "msg_id": "m-1"}),
    )
    .await;
    assert_eq!(
        (status, rest["pos"].clone(), rest["duplicate"].clone()),
        (200, first["pos"].clone(), json!(true))
    );
    let p = q1.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), p.qos, &p.payload[..]),
        ("cmd/dev1", QoS::AtLeastOnce, &br#"{"on":true}"#[..])
    );
    let p = q0.next_publish().await;
    assert_eq!(p.qos, QoS::AtMostOnce);
    assert!(
        q1.try_next_publish(Duration::from_millis(300))
            .await
            .is_none(),
        "one message only"
    );
    let mut notices = Vec::new();
    let m = watcher.msgs(1, &mut notices).await;
    assert_eq!(
        (m[0]["pos"].clone(), m[0]["qos"].clone()),
        (first["pos"].clone(), json!(2))
    );
    assert!(watcher.try_next(Duration::from_millis(300)).await.is_none());
    gw.stop().await;
}

#[tokio::test]
async fn encodings_and_properties_reach_mqtt5() {
    let gw = GatewayHarness::new().start().await;
    let (mut dev, _) = V5::connect(v5_options(gw.mqtt_addr(), "dev5")).await;
    dev.client
        .subscribe("cmd/#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    dev.suback().await;
    let mut ws = WsClient::connect(gw.http_addr(), "").await;
    let mut other = Vec::new();
    let r = ws
        .request(
            json!({"op": "publish", "channel": "cmd/a", "data": "hello", "encoding": "utf8", "qos": 1,
                   "props": {"content_type": "text/plain", "response_topic": "reply/a",
                             "correlation_data": "AAE=", "user_properties": [["k", "v"], ["k", "w"]]}}),
            &mut other,
        )
        .await;
    assert_eq!(r["op"], "ok", "{r}");
    let p = dev.next_publish().await;
    assert_eq!(&p.payload[..], b"hello");
    let props = p.properties.expect("properties");
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(props.response_topic.as_deref(), Some("reply/a"));
    assert_eq!(props.correlation_data.as_deref(), Some(&[0u8, 1][..]));
    assert_eq!(
        props.user_properties,
        vec![
            ("k".to_string(), "v".to_string()),
            ("k".to_string(), "w".to_string())
        ]
    );
    let r = ws
        .request(json!({"op": "publish", "channel": "cmd/b", "data": "/wAB", "encoding": "base64", "qos": 0}), &mut other)
        .await;
    assert_eq!(r["op"], "ok", "qos 0 is acked on accept: {r}");
    let p = dev.next_publish().await;
    assert_eq!(&p.payload[..], &[0xff, 0, 1]);
    gw.stop().await;
}
