//! A bridge through outages of its remote: Mosquitto (with persistence) is stopped in the
//! middle of a numbered stream and started again; every message arrives, in order; at QoS
//! 2, exactly once.

use e2e_tests::GatewayHarness;
use e2e_tests::bridge::{
    bridge_config, check_stream, collect, counter, register_verifier, wait_status,
};
use e2e_tests::mosquitto::Mosquitto;
use e2e_tests::mqtt::{V4, v4_options};
use rumqttc::QoS;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(20);
const MESSAGES: u32 = 300;

async fn outage(qos: QoS) {
    let mut m = Mosquitto::builder().persistence(true).start().await;
    register_verifier(m.addr(), "verifier", "num/#").await;
    let q = qos as u8;
    let cfg = bridge_config(&format!(
        r#"
name = "site"
address = "{addr}"
client_id = "gw-outage"
reconnect_min = "100ms"
reconnect_max = "500ms"
max_inflight = 16

[[bridge.out]]
local = "num/#"
qos = 2
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

    let (publisher, _) = V4::connect(v4_options(gw.mqtt_addr(), "numbered")).await;
    let client = publisher.client.clone();
    let stream = tokio::spawn(async move {
        for n in 0..MESSAGES {
            client
                .publish(format!("num/{}", n % 7), qos, false, n.to_string())
                .await
                .expect("publish");
            // A paced stream, so that the outage falls in its middle.
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
    });

    wait_status(gw.http_addr(), "site", PATIENCE, "a third forwarded", |s| {
        counter(s, "forwarded_out") >= u64::from(MESSAGES / 3)
    })
    .await;
    m.stop().await;
    wait_status(
        gw.http_addr(),
        "site",
        PATIENCE,
        "noticing the outage",
        |s| s["state"] != "connected",
    )
    .await;
    stream.await.expect("publisher");
    let down = wait_status(gw.http_addr(), "site", PATIENCE, "lagging", |s| {
        counter(s, "lag") > 0
    })
    .await;
    assert!(
        counter(&down, "forwarded_out") < u64::from(MESSAGES),
        "{down:#}"
    );
    m.restart().await;
    let s = wait_status(
        gw.http_addr(),
        "site",
        PATIENCE,
        "everything forwarded",
        |s| counter(s, "lag") == 0 && counter(s, "inflight") == 0,
    )
    .await;
    assert!(counter(&s, "reconnects") >= 1, "{s:#}");
    assert_eq!(counter(&s, "skipped_lag"), 0);

    let got = collect(m.addr(), "verifier", MESSAGES as usize).await;
    check_stream(&got, MESSAGES, q == 2);
    if q == 2 {
        assert_eq!(got.len(), MESSAGES as usize);
    }
    publisher.disconnect().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_remote_outage_qos1_loses_nothing_in_order() {
    outage(QoS::AtLeastOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_remote_outage_qos2_exactly_once_in_order() {
    outage(QoS::ExactlyOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_inbound_qos2_exactly_once_across_connection_drops() {
    // The bridge reaches Mosquitto through a relay that the test cuts, again and again,
    // while Mosquitto delivers a QoS 2 stream: exchanges are cut at every stage and resumed
    // in the kept session (PUBLISH sent again with DUP, PUBREL sent again).
    let m = Mosquitto::builder()
        .config_line("max_inflight_messages 8")
        .start()
        .await;
    let relay = e2e_tests::proxy::Proxy::start(m.addr()).await;
    let cfg = bridge_config(&format!(
        r#"
name = "site"
address = "{addr}"
protocol = "3.1.1"
client_id = "gw-inbound"
reconnect_min = "20ms"
reconnect_max = "50ms"

[[bridge.in]]
remote = "up/#"
local = "from-site/{{1}}"
qos = 2
"#,
        addr = relay.addr()
    ));
    let gw = GatewayHarness::new()
        .with_config(|c| c.bridge.push(cfg))
        .start()
        .await;
    wait_status(gw.http_addr(), "site", PATIENCE, "subscribed", |s| {
        s["state"] == "connected"
    })
    .await;
    let (mut local, _) = V4::connect(v4_options(gw.mqtt_addr(), "local-sub")).await;
    local.subscribe("from-site/#", QoS::ExactlyOnce).await;

    let n = 2000u32;
    let mut o = v4_options(m.addr(), "remote-pub");
    o.set_inflight(8);
    let (publisher, _) = V4::connect(o).await;
    let client = publisher.client.clone();
    // The second half waits for the first cut, so the stream is cut in the middle however
    // fast it flows.
    let (first_cut_tx, first_cut) = tokio::sync::oneshot::channel::<()>();
    let feed = tokio::spawn(async move {
        for i in 0..n {
            if i == n / 2 {
                first_cut.await.expect("first cut");
                break;
            }
            client
                .publish("up/x", QoS::ExactlyOnce, false, i.to_string())
                .await
                .expect("publish");
        }
        for i in n / 2..n {
            client
                .publish("up/x", QoS::ExactlyOnce, false, i.to_string())
                .await
                .expect("publish");
        }
    });

    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut cuts_mid_stream = 0;
    // The first cut as soon as messages flow through a connected bridge.
    loop {
        let s = e2e_tests::bridge::status(gw.http_addr(), "site").await;
        if s["state"] == "connected" && counter(&s, "forwarded_in") > 0 && relay.cut() > 0 {
            cuts_mid_stream += 1;
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing flowed through the bridge: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first_cut_tx.send(()).expect("feeder waiting");
    // Then a cut every 100 ms until everything is stored.
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = e2e_tests::bridge::status(gw.http_addr(), "site").await;
        if counter(&s, "forwarded_in") >= u64::from(n) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not everything arrived: {s:#}"
        );
        if s["state"] == "connected" && relay.cut() > 0 && counter(&s, "forwarded_in") > 0 {
            cuts_mid_stream += 1;
        }
    }
    feed.await.expect("publisher");
    assert!(cuts_mid_stream >= 1, "the stream was never cut");

    let mut got = Vec::new();
    while got.len() < n as usize {
        let Some(p) = local.try_next_publish(PATIENCE).await else {
            break;
        };
        let v: u32 = std::str::from_utf8(&p.payload)
            .ok()
            .and_then(|t| t.parse().ok())
            .expect("numbered payload");
        got.push(v);
    }
    assert!(
        local
            .try_next_publish(Duration::from_millis(300))
            .await
            .is_none(),
        "nothing beyond the {n} messages"
    );
    check_stream(&got, n, true);
    let s = e2e_tests::bridge::status(gw.http_addr(), "site").await;
    assert_eq!(counter(&s, "forwarded_in"), u64::from(n), "{s:#}");
    assert!(counter(&s, "reconnects") >= 1, "{s:#}");
    publisher.kill();
    local.disconnect().await;
    gw.stop().await;
}
