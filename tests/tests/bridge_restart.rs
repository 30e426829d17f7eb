//! A gateway restart while its bridge lags behind (the remote is down): the bridge resumes
//! from its durable cursor and nothing is lost.

use e2e_tests::GatewayHarness;
use e2e_tests::bridge::{
    bridge_config, check_stream, collect, counter, register_verifier, wait_status,
};
use e2e_tests::mosquitto::Mosquitto;
use e2e_tests::mqtt::{V4, v4_options};
use rumqttc::QoS;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_gateway_restart_while_lagging_resumes_from_cursor() {
    let mut m = Mosquitto::builder().persistence(true).start().await;
    register_verifier(m.addr(), "verifier", "data/#").await;
    let cfg = bridge_config(&format!(
        r#"
name = "site"
address = "{addr}"
client_id = "gw-restart"
reconnect_min = "100ms"
reconnect_max = "300ms"

[[bridge.out]]
local = "data/#"
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

    // The first half goes through while the remote is up.
    let half = 100u32;
    let (publisher, _) = V4::connect(v4_options(gw.mqtt_addr(), "pub")).await;
    for n in 0..half {
        publisher
            .client
            .publish("data/x", QoS::AtLeastOnce, false, n.to_string())
            .await
            .expect("publish");
    }
    wait_status(
        gw.http_addr(),
        "site",
        PATIENCE,
        "first half forwarded",
        |s| counter(s, "forwarded_out") == u64::from(half),
    )
    .await;

    // The remote goes away; the second half waits in the log.
    m.stop().await;
    for n in half..2 * half {
        publisher
            .client
            .publish("data/x", QoS::AtLeastOnce, false, n.to_string())
            .await
            .expect("publish");
    }
    // Wait until the publisher's last message is in the log: the lag covers all of them.
    let before = wait_status(gw.http_addr(), "site", PATIENCE, "lagging", |s| {
        counter(s, "lag") >= u64::from(half)
    })
    .await;
    publisher.disconnect().await;

    let gw = gw.restart().await;
    let after = wait_status(gw.http_addr(), "site", PATIENCE, "restarted", |s| {
        s["state"] != "connected"
    })
    .await;
    assert_eq!(
        counter(&after, "cursor"),
        counter(&before, "cursor"),
        "the cursor resumed where it was: {after:#}"
    );
    assert!(counter(&after, "lag") >= u64::from(half), "{after:#}");

    m.restart().await;
    let done = wait_status(gw.http_addr(), "site", PATIENCE, "caught up", |s| {
        counter(s, "lag") == 0 && s["state"] == "connected"
    })
    .await;
    assert_eq!(counter(&done, "forwarded_out"), u64::from(half), "{done:#}");

    let got = collect(m.addr(), "verifier", 2 * half as usize).await;
    check_stream(&got, 2 * half, false);
    gw.stop().await;
}
