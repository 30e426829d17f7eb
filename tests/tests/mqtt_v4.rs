//! MQTT 3.1.1 behaviour with rumqttc clients against an in-process gateway: QoS round trips,
//! QoS downgrade, retained messages, wills, persistent sessions (also across a restart),
//! session takeover and shared subscriptions.

use e2e_tests::GatewayHarness;
use e2e_tests::mqtt::{V4, v4_options};
use rumqttc::QoS;
use std::time::Duration;

#[tokio::test]
async fn qos_round_trips_and_downgrade() {
    let gw = GatewayHarness::new().start().await;
    let (mut sub, _) = V4::connect(v4_options(gw.mqtt_addr(), "sub")).await;
    sub.subscribe("rt/#", QoS::ExactlyOnce).await;
    let (mut low, _) = V4::connect(v4_options(gw.mqtt_addr(), "low")).await;
    low.subscribe("rt/#", QoS::AtMostOnce).await;
    let (publ, _) = V4::connect(v4_options(gw.mqtt_addr(), "pub")).await;
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        publ.client
            .publish(format!("rt/{i}"), qos, false, vec![i as u8; 3])
            .await
            .unwrap();
        let p = sub.next_publish().await;
        assert_eq!(p.topic, format!("rt/{i}"));
        assert_eq!(p.qos, qos, "subscriber granted QoS 2 gets the publish QoS");
        assert_eq!(&p.payload[..], &[i as u8; 3]);
        let p = low.next_publish().await;
        assert_eq!(
            p.qos,
            QoS::AtMostOnce,
            "never upgraded above the granted QoS"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn retained_set_replace_and_delete() {
    let gw = GatewayHarness::new().start().await;
    let (mut publ, _) = V4::connect(v4_options(gw.mqtt_addr(), "pub")).await;
    for (topic, retain, payload) in [
        ("ret/a", true, "one"),
        ("ret/a", true, "two"),
        ("ret/b", true, "bee"),
        ("ret/b", false, ""),
    ] {
        // An empty payload that is NOT retained must not delete.
        publ.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .unwrap();
        publ.puback().await;
    }
    let (mut check, _) = V4::connect(v4_options(gw.mqtt_addr(), "check")).await;
    check.subscribe("ret/#", QoS::AtLeastOnce).await;
    let mut got = vec![];
    while let Some(p) = check.try_next_publish(Duration::from_secs(2)).await {
        assert!(p.retain);
        got.push((
            p.topic.clone(),
            String::from_utf8_lossy(&p.payload).to_string(),
        ));
        if got.len() == 2 {
            break;
        }
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            ("ret/a".into(), "two".into()),
            ("ret/b".into(), "bee".into())
        ]
    );
    check.disconnect().await;

    publ.client
        .publish("ret/a", QoS::AtLeastOnce, true, "")
        .await
        .unwrap();
    publ.puback().await;
    let (mut again, _) = V4::connect(v4_options(gw.mqtt_addr(), "again")).await;
    again.subscribe("ret/#", QoS::AtLeastOnce).await;
    let p = again.next_publish().await;
    assert_eq!(
        p.topic, "ret/b",
        "ret/a was deleted by the empty retained publish"
    );
    assert!(
        again
            .try_next_publish(Duration::from_millis(500))
            .await
            .is_none()
    );
    gw.stop().await;
}

#[tokio::test]
async fn will_is_published_on_abrupt_close_only() {
    let gw = GatewayHarness::new().start().await;
    let (mut watcher, _) = V4::connect(v4_options(gw.mqtt_addr(), "watcher")).await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;

    let mut o = v4_options(gw.mqtt_addr(), "dev-1");
    o.set_last_will(rumqttc::LastWill::new(
        "wills/dev-1",
        "gone",
        QoS::AtLeastOnce,
        false,
    ));
    let (dev, _) = V4::connect(o).await;
    dev.kill();
    let p = watcher.next_publish().await;
    assert_eq!(p.topic, "wills/dev-1");
    assert_eq!(&p.payload[..], b"gone");

    let mut o = v4_options(gw.mqtt_addr(), "dev-2");
    o.set_last_will(rumqttc::LastWill::new(
        "wills/dev-2",
        "gone",
        QoS::AtLeastOnce,
        false,
    ));
    let (dev, _) = V4::connect(o).await;
    dev.disconnect().await;
    assert!(
        watcher
            .try_next_publish(Duration::from_secs(1))
            .await
            .is_none(),
        "a normal DISCONNECT discards the will"
    );
    gw.stop().await;
}

#[tokio::test]
async fn persistent_session_queues_while_offline_and_survives_restart() {
    let gw = GatewayHarness::new().start().await;
    let mut o = v4_options(gw.mqtt_addr(), "durable");
    o.set_clean_session(false);
    let (mut s, ack) = V4::connect(o.clone()).await;
    assert!(!ack.session_present);
    s.subscribe("q/#", QoS::AtLeastOnce).await;
    s.disconnect().await;

    let (mut publ, _) = V4::connect(v4_options(gw.mqtt_addr(), "pub")).await;
    for i in 0..20u32 {
        publ.client
            .publish("q/x", QoS::AtLeastOnce, false, i.to_be_bytes().to_vec())
            .await
            .unwrap();
        publ.puback().await;
    }
    publ.disconnect().await;
    let gw = gw.restart().await;

    let mut o = v4_options(gw.mqtt_addr(), "durable");
    o.set_clean_session(false);
    let (mut s, ack) = V4::connect(o).await;
    assert!(ack.session_present, "the session survived the restart");
    for i in 0..20u32 {
        let p = s.next_publish().await;
        assert_eq!(&p.payload[..], &i.to_be_bytes(), "in order, none missing");
    }
    assert!(
        s.try_next_publish(Duration::from_millis(500))
            .await
            .is_none(),
        "no duplicates"
    );
    gw.stop().await;
}

#[tokio::test]
async fn clean_session_discards_stored_session() {
    let gw = GatewayHarness::new().start().await;
    let mut o = v4_options(gw.mqtt_addr(), "c1");
    o.set_clean_session(false);
    let (mut s, _) = V4::connect(o.clone()).await;
    s.subscribe("cs/#", QoS::AtLeastOnce).await;
    s.disconnect().await;
    let (s, ack) = V4::connect(v4_options(gw.mqtt_addr(), "c1")).await;
    assert!(!ack.session_present);
    s.disconnect().await;
    let (s, ack) = V4::connect(o).await;
    assert!(
        !ack.session_present,
        "the clean connection ended the stored session"
    );
    s.disconnect().await;
    gw.stop().await;
}

#[tokio::test]
async fn second_connection_takes_over_the_client_id() {
    let gw = GatewayHarness::new().start().await;
    let (mut first, _) = V4::connect(v4_options(gw.mqtt_addr(), "same")).await;
    let (mut second, _) = V4::connect(v4_options(gw.mqtt_addr(), "same")).await;
    // The first connection is closed by the server.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match first.events.recv().await {
                Some(Err(_)) | None => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true));
    second.subscribe("t/#", QoS::AtMostOnce).await;
    second.disconnect().await;
    gw.stop().await;
}

#[tokio::test]
async fn shared_subscription_round_robin() {
    let gw = GatewayHarness::new().start().await;
    let (mut a, _) = V4::connect(v4_options(gw.mqtt_addr(), "a")).await;
    a.subscribe("$share/workers/jobs/#", QoS::AtLeastOnce).await;
    let (mut b, _) = V4::connect(v4_options(gw.mqtt_addr(), "b")).await;
    b.subscribe("$share/workers/jobs/#", QoS::AtLeastOnce).await;
    let (publ, _) = V4::connect(v4_options(gw.mqtt_addr(), "p")).await;
    for i in 0..10u8 {
        publ.client
            .publish("jobs/x", QoS::AtLeastOnce, false, vec![i])
            .await
            .unwrap();
    }
    let mut seen = vec![];
    let mut counts = [0; 2];
    for _ in 0..10 {
        tokio::select! {
            p = a.next_publish() => { counts[0] += 1; seen.push(p.payload[0]); }
            p = b.next_publish() => { counts[1] += 1; seen.push(p.payload[0]); }
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        (0..10).collect::<Vec<u8>>(),
        "each job delivered once in the group"
    );
    assert_eq!(counts, [5, 5], "round robin across the two members");
    gw.stop().await;
}

#[tokio::test]
async fn offline_backlog_is_bounded_keeping_the_newest() {
    let gw = GatewayHarness::new()
        .with_config(|c| c.mqtt.max_offline_messages = 5)
        .start()
        .await;
    let mut o = v4_options(gw.mqtt_addr(), "bounded");
    o.set_clean_session(false);
    let (mut s, _) = V4::connect(o.clone()).await;
    s.subscribe("b/#", QoS::AtLeastOnce).await;
    s.disconnect().await;
    let (mut publ, _) = V4::connect(v4_options(gw.mqtt_addr(), "pub")).await;
    for i in 0..12u8 {
        publ.client
            .publish("b/x", QoS::AtLeastOnce, false, vec![i])
            .await
            .unwrap();
        publ.puback().await;
        // Traffic the session does not subscribe to does not count against its backlog.
        publ.client
            .publish("other/x", QoS::AtLeastOnce, false, vec![i])
            .await
            .unwrap();
        publ.puback().await;
    }
    let (mut s, ack) = V4::connect(o).await;
    assert!(ack.session_present);
    let mut got = vec![];
    while let Some(p) = s.try_next_publish(Duration::from_secs(1)).await {
        got.push(p.payload[0]);
    }
    assert_eq!(got, vec![7, 8, 9, 10, 11], "the newest five, in order");
    gw.stop().await;
}

#[tokio::test]
async fn a_burst_larger_than_one_write_is_delivered_without_waiting_for_more() {
    let gw = GatewayHarness::new().start().await;
    let (mut sub, _) = V4::connect(v4_options(gw.mqtt_addr(), "burst-sub")).await;
    sub.subscribe("burst/#", QoS::AtMostOnce).await;
    let (publ, _) = V4::connect(v4_options(gw.mqtt_addr(), "burst-pub")).await;
    // About 1 MB in one burst, many times the connection's write batch; then silence.
    let n = 5_000u32;
    for i in 0..n {
        let mut payload = i.to_be_bytes().to_vec();
        payload.resize(200, 0);
        publ.client
            .publish("burst/x", QoS::AtMostOnce, false, payload)
            .await
            .unwrap();
    }
    let mut next = 0u32;
    while next < n {
        let p = sub
            .try_next_publish(Duration::from_secs(3))
            .await
            .unwrap_or_else(|| panic!("stalled after {next} of {n} messages"));
        assert_eq!(
            u32::from_be_bytes([p.payload[0], p.payload[1], p.payload[2], p.payload[3]]),
            next
        );
        next += 1;
    }
    gw.stop().await;
}
