//! Bridges against a real Mosquitto: two-way forwarding with topic remapping (MQTT 5 and
//! 3.1.1), the status API, and isolation: bad sections, an unreachable remote and a remote
//! that sends nonsense leave the gateway serving.

use e2e_tests::GatewayHarness;
use e2e_tests::bridge::{bridge_config, counter, status, wait_status};
use e2e_tests::mosquitto::Mosquitto;
use e2e_tests::mqtt::{V4, V5, v4_options, v5_options};
use rumqttc::QoS;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(15);

async fn two_way(protocol: &str) {
    let m = Mosquitto::builder().start().await;
    let cfg = bridge_config(&format!(
        r#"
name = "site"
address = "{addr}"
protocol = "{protocol}"
client_id = "gw-{protocol}"
reconnect_min = "100ms"
reconnect_max = "1s"

[[bridge.out]]
local = "plant/+/temp"
remote = "site/{{1}}/temperature"
qos = 1

[[bridge.in]]
remote = "site/cmd/#"
local = "cmd/{{1}}"
qos = 1
"#,
        addr = m.address()
    ));
    let gw = GatewayHarness::new()
        .with_config(|c| c.bridge.push(cfg))
        .start()
        .await;
    wait_status(gw.http_addr(), "site", PATIENCE, "connected", |s| {
        s["state"] == "connected"
    })
    .await;

    let (mut remote, _) = V5::connect(v5_options(m.addr(), "remote-sub")).await;
    remote
        .client
        .subscribe("site/#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    remote.suback().await;
    let (mut local, _) = V4::connect(v4_options(gw.mqtt_addr(), "local-sub")).await;
    local.subscribe("cmd/#", QoS::AtLeastOnce).await;
    let (publisher, _) = V4::connect(v4_options(gw.mqtt_addr(), "local-pub")).await;

    // Out: a topic no rule matches first, then one that is renamed; order is kept, so if
    // the first were forwarded it would arrive first.
    publisher
        .client
        .publish("plant/line3/hum", QoS::AtLeastOnce, false, "55")
        .await
        .expect("publish");
    publisher
        .client
        .publish("plant/line3/temp", QoS::AtLeastOnce, false, "21.5")
        .await
        .expect("publish");
    let p = remote.next_publish().await;
    assert_eq!(&p.topic[..], b"site/line3/temperature");
    assert_eq!(&p.payload[..], b"21.5");
    if protocol == "5" {
        let props = p.properties.expect("properties");
        assert!(
            props
                .user_properties
                .iter()
                .any(|(k, v)| k == "bridge-origin" && v == "gw-5"),
            "the origin property is set: {:?}",
            props.user_properties
        );
    }

    // In: renamed and stored locally.
    remote
        .client
        .publish(
            "site/cmd/valve/open",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            "1",
        )
        .await
        .expect("publish");
    let p = local.next_publish().await;
    assert_eq!(p.topic, "cmd/valve/open");
    assert_eq!(&p.payload[..], b"1");

    // The cursor also passes over messages no out rule takes (here the inbound one), so an
    // idle bridge shows no lag.
    let s = wait_status(gw.http_addr(), "site", PATIENCE, "counters, no lag", |s| {
        counter(s, "forwarded_out") == 1
            && counter(s, "forwarded_in") == 1
            && counter(s, "lag") == 0
    })
    .await;
    assert_eq!(s["protocol"], protocol);
    assert_eq!(s["remote"], m.address());
    publisher.disconnect().await;
    local.disconnect().await;
    remote.disconnect().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_two_way_forwarding_with_remapping_mqtt5() {
    two_way("5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_two_way_forwarding_with_remapping_mqtt311() {
    two_way("3.1.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_failures_stay_in_the_bridge() {
    // A "remote" that answers every connection with text that is not MQTT.
    let nonsense = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let nonsense_addr = nonsense.local_addr().expect("addr");
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter_task = accepted.clone();
    let server = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = nonsense.accept().await {
            counter_task.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = s
                .write_all(b"\x20\x02\x00\x00\x20\x02\x00\x00garbage")
                .await;
        }
    });
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");

    let rule = "[[bridge.out]]\nlocal = \"x/#\"\n";
    let bridges = vec![
        bridge_config(&format!(
            "name = \"bad-filter\"\naddress = \"{closed}\"\nclient_id = \"a\"\n\
             [[bridge.out]]\nlocal = \"x/#/y\"\n"
        )),
        bridge_config(&format!(
            "name = \"unreachable\"\naddress = \"{closed}\"\nclient_id = \"b\"\n\
             reconnect_min = \"100ms\"\nreconnect_max = \"200ms\"\n{rule}"
        )),
        bridge_config(&format!(
            "name = \"nonsense\"\naddress = \"{nonsense_addr}\"\nclient_id = \"c\"\n\
             reconnect_min = \"50ms\"\nreconnect_max = \"100ms\"\n{rule}"
        )),
        bridge_config(&format!(
            "name = \"unreachable\"\naddress = \"{closed}\"\nclient_id = \"d\"\n{rule}"
        )),
    ];
    let gw = GatewayHarness::new()
        .with_config(|c| c.bridge = bridges)
        .start()
        .await;

    let bad = status(gw.http_addr(), "bad-filter").await;
    assert_eq!(bad["state"], "down");
    let why = bad["last_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("invalid configuration") && why.contains("out[0]"),
        "{why}"
    );

    let s = wait_status(gw.http_addr(), "unreachable", PATIENCE, "an error", |s| {
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot reach"))
    })
    .await;
    assert_ne!(s["state"], "connected");
    let all = e2e_tests::bridge::statuses(gw.http_addr()).await;
    assert_eq!(all.len(), 4);
    assert!(
        all[3]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("used by an earlier bridge")),
        "{:#}",
        all[3]
    );

    wait_status(
        gw.http_addr(),
        "nonsense",
        PATIENCE,
        "a protocol error",
        |s| s["state"] != "connected" && s["last_error"].as_str().is_some_and(|e| !e.is_empty()),
    )
    .await;
    // It keeps retrying.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while accepted.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bridge did not retry"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Meanwhile the gateway serves MQTT as usual.
    let (mut sub, _) = V4::connect(v4_options(gw.mqtt_addr(), "sub")).await;
    sub.subscribe("x/#", QoS::AtLeastOnce).await;
    let (publisher, _) = V4::connect(v4_options(gw.mqtt_addr(), "pub")).await;
    publisher
        .client
        .publish("x/1", QoS::AtLeastOnce, false, "ok")
        .await
        .expect("publish");
    assert_eq!(sub.next_publish().await.topic, "x/1");
    publisher.disconnect().await;
    sub.disconnect().await;
    gw.stop().await;
    server.abort();
}
