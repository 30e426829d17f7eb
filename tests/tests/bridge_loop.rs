//! A two-way bridge whose in and out rules cover the same topics produces no loop: with
//! MQTT 5 (no-local, origin property, origin of inbound messages) every message crosses
//! once each way it should; with MQTT 3.1.1 the origin rule on topics keeps the remote's
//! echo of what the bridge published from coming back.

use e2e_tests::GatewayHarness;
use e2e_tests::bridge::{bridge_config, counter, status, wait_status};
use e2e_tests::mosquitto::Mosquitto;
use e2e_tests::mqtt::{V4, v4_options};
use rumqttc::QoS;
use std::collections::BTreeMap;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(15);

type Tally = BTreeMap<(String, String), u32>;

/// Reads publishes until `until` arrived, counting (topic, payload) pairs; `Err` with what
/// arrived when it does not come.
async fn tally_until(c: &mut V4, until: &str) -> Result<Tally, Tally> {
    let mut seen = BTreeMap::new();
    loop {
        let Some(p) = c.try_next_publish(PATIENCE).await else {
            return Err(seen);
        };
        let payload = String::from_utf8_lossy(&p.payload).to_string();
        let done = p.topic == until;
        *seen.entry((p.topic, payload)).or_insert(0) += 1;
        if done {
            return Ok(seen);
        }
    }
}

async fn no_loop(protocol: &str) {
    let m = Mosquitto::builder().start().await;
    let cfg = bridge_config(&format!(
        r#"
name = "both"
address = "{addr}"
protocol = "{protocol}"
client_id = "gw-loop"
reconnect_min = "100ms"

[[bridge.out]]
local = "loop/#"

[[bridge.in]]
remote = "loop/#"
"#,
        addr = m.address()
    ));
    let gw = GatewayHarness::new()
        .with_config(|c| c.bridge.push(cfg))
        .start()
        .await;
    wait_status(gw.http_addr(), "both", PATIENCE, "connected", |s| {
        s["state"] == "connected"
    })
    .await;

    let (mut local_sub, _) = V4::connect(v4_options(gw.mqtt_addr(), "local-sub")).await;
    local_sub.subscribe("loop/#", QoS::AtLeastOnce).await;
    let (mut remote_sub, _) = V4::connect(v4_options(m.addr(), "remote-sub")).await;
    remote_sub.subscribe("loop/#", QoS::AtLeastOnce).await;
    let (local_pub, _) = V4::connect(v4_options(gw.mqtt_addr(), "local-pub")).await;
    let (remote_pub, _) = V4::connect(v4_options(m.addr(), "remote-pub")).await;

    local_pub
        .client
        .publish("loop/a", QoS::AtLeastOnce, false, "from local")
        .await
        .expect("publish");
    remote_pub
        .client
        .publish("loop/b", QoS::AtLeastOnce, false, "from remote")
        .await
        .expect("publish");
    // A last message from the local side: by the time it has reached both subscribers, a
    // loop would have shown (and would keep going, which the counters below would show).
    wait_status(gw.http_addr(), "both", PATIENCE, "a and b crossed", |s| {
        counter(s, "forwarded_out") >= 1 && (protocol == "3.1.1" || counter(s, "forwarded_in") >= 1)
    })
    .await;
    local_pub
        .client
        .publish("loop/end", QoS::AtLeastOnce, false, "end")
        .await
        .expect("publish");

    let at_remote = match tally_until(&mut remote_sub, "loop/end").await {
        Ok(t) => t,
        Err(t) => panic!(
            "loop/end did not reach the remote; got {t:?}; bridge: {:#}\nmosquitto:\n{}",
            status(gw.http_addr(), "both").await,
            m.log()
        ),
    };
    let at_local = match tally_until(&mut local_sub, "loop/end").await {
        Ok(t) => t,
        Err(t) => panic!(
            "loop/end did not reach the local side; got {t:?}; bridge: {:#}",
            status(gw.http_addr(), "both").await
        ),
    };
    let key = |t: &str, p: &str| (t.to_string(), p.to_string());
    assert_eq!(
        at_remote.get(&key("loop/a", "from local")),
        Some(&1),
        "{at_remote:?}"
    );
    assert_eq!(
        at_remote.get(&key("loop/b", "from remote")),
        Some(&1),
        "{at_remote:?}"
    );
    assert_eq!(
        at_local.get(&key("loop/a", "from local")),
        Some(&1),
        "{at_local:?}"
    );
    match protocol {
        "5" => assert_eq!(
            at_local.get(&key("loop/b", "from remote")),
            Some(&1),
            "{at_local:?}"
        ),
        // 3.1.1: remote topics the bridge publishes to belong to the local side.
        _ => assert_eq!(
            at_local.get(&key("loop/b", "from remote")),
            None,
            "{at_local:?}"
        ),
    }

    // Nothing more arrives on either side, and the counters stay put.
    assert!(
        remote_sub
            .try_next_publish(Duration::from_millis(500))
            .await
            .is_none()
    );
    assert!(
        local_sub
            .try_next_publish(Duration::from_millis(100))
            .await
            .is_none()
    );
    let s = wait_status(gw.http_addr(), "both", PATIENCE, "settled", |s| {
        counter(s, "forwarded_out") >= 2
            && match protocol {
                "5" => counter(s, "forwarded_in") >= 1,
                _ => counter(s, "loops_prevented") >= 3,
            }
    })
    .await;
    assert_eq!(counter(&s, "forwarded_out"), 2, "a and end: {s:#}");
    match protocol {
        "5" => assert_eq!(counter(&s, "forwarded_in"), 1, "b: {s:#}"),
        _ => {
            assert_eq!(counter(&s, "forwarded_in"), 0, "{s:#}");
            // The echoes of a and end, and b.
            assert_eq!(counter(&s, "loops_prevented"), 3, "{s:#}");
        }
    }
    for c in [local_pub, remote_pub, local_sub, remote_sub] {
        c.disconnect().await;
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_two_way_overlapping_topics_no_loop_mqtt5() {
    no_loop("5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_two_way_overlapping_topics_no_loop_mqtt311() {
    no_loop("3.1.1").await;
}
