//! MQTT 5 behaviour with rumqttc v5 clients against an in-process gateway: properties pass
//! through unchanged, topic aliases, subscription identifiers, no-local, retain-as-published,
//! retain handling, message expiry, the client's receive maximum and maximum packet size,
//! assigned client ids, server keep-alive, will delay, session expiry and takeover.

use bytes::Bytes;
use e2e_tests::GatewayHarness;
use e2e_tests::mqtt::{V5, v5_options};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnectProperties, DisconnectReasonCode, Filter, LastWill, LastWillProperties, Packet,
    PublishProperties, RetainForwardRule, SubscribeProperties,
};
use std::time::Duration;

#[tokio::test]
async fn properties_pass_through_unchanged() {
    let gw = GatewayHarness::new().start().await;
    let (mut sub, _) = V5::connect(v5_options(gw.mqtt_addr(), "sub")).await;
    sub.client
        .subscribe("props/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    sub.suback().await;
    let (publ, _) = V5::connect(v5_options(gw.mqtt_addr(), "pub")).await;
    let props = PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"\x01\x02corr")),
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "v2".into())],
        ..Default::default()
    };
    publ.client
        .publish_with_properties(
            "props/a",
            QoS::AtLeastOnce,
            false,
            "{\"t\":1}",
            props.clone(),
        )
        .await
        .unwrap();
    let p = sub.next_publish().await;
    let got = p.properties.expect("properties present");
    assert_eq!(got.payload_format_indicator, Some(1));
    assert_eq!(got.content_type, props.content_type);
    assert_eq!(got.response_topic, props.response_topic);
    assert_eq!(got.correlation_data, props.correlation_data);
    assert_eq!(
        got.user_properties, props.user_properties,
        "order and duplicates kept"
    );
    gw.stop().await;
}

#[tokio::test]
async fn topic_alias_from_client() {
    let gw = GatewayHarness::new().start().await;
    let (mut sub, _) = V5::connect(v5_options(gw.mqtt_addr(), "sub")).await;
    sub.client
        .subscribe("alias/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    sub.suback().await;
    let (publ, _) = V5::connect(v5_options(gw.mqtt_addr(), "pub")).await;
    let with_alias = PublishProperties {
        topic_alias: Some(3),
        ..Default::default()
    };
    publ.client
        .publish_with_properties(
            "alias/long/topic",
            QoS::AtLeastOnce,
            false,
            "1",
            with_alias.clone(),
        )
        .await
        .unwrap();
    publ.client
        .publish_with_properties("", QoS::AtLeastOnce, false, "2", with_alias)
        .await
        .unwrap();
    for want in ["1", "2"] {
        let p = sub.next_publish().await;
        assert_eq!(&p.topic[..], b"alias/long/topic");
        assert_eq!(&p.payload[..], want.as_bytes());
    }
    gw.stop().await;
}

#[tokio::test]
async fn subscription_identifiers_no_local_retain_as_published() {
    let gw = GatewayHarness::new().start().await;
    let (mut me, _) = V5::connect(v5_options(gw.mqtt_addr(), "me")).await;
    let f = Filter {
        nolocal: true,
        ..Filter::new("nl/#", QoS::AtLeastOnce)
    };
    me.client
        .subscribe_many_with_properties(
            vec![f],
            SubscribeProperties {
                id: Some(7),
                user_properties: vec![],
            },
        )
        .await
        .unwrap();
    me.suback().await;
    let f = Filter {
        preserve_retain: true,
        ..Filter::new("rap/#", QoS::AtLeastOnce)
    };
    me.client
        .subscribe_many_with_properties(
            vec![f],
            SubscribeProperties {
                id: Some(9),
                user_properties: vec![],
            },
        )
        .await
        .unwrap();
    me.suback().await;
    me.client
        .publish("nl/own", QoS::AtLeastOnce, false, "mine")
        .await
        .unwrap();
    me.client
        .publish("rap/x", QoS::AtLeastOnce, true, "kept")
        .await
        .unwrap();
    let (other, _) = V5::connect(v5_options(gw.mqtt_addr(), "other")).await;
    other
        .client
        .publish("nl/theirs", QoS::AtLeastOnce, false, "theirs")
        .await
        .unwrap();
    let mut got = vec![];
    for _ in 0..2 {
        let p = me.next_publish().await;
        got.push(p);
    }
    assert!(
        me.try_next_publish(Duration::from_millis(500))
            .await
            .is_none(),
        "own nl/ publish not echoed"
    );
    let rap = got
        .iter()
        .find(|p| &p.topic[..] == b"rap/x")
        .expect("rap/x delivered");
    assert!(
        rap.retain,
        "retain-as-published keeps the flag on live delivery"
    );
    assert_eq!(
        rap.properties
            .as_ref()
            .map(|p| p.subscription_identifiers.clone()),
        Some(vec![9])
    );
    let nl = got
        .iter()
        .find(|p| &p.topic[..] == b"nl/theirs")
        .expect("other's publish delivered");
    assert!(!nl.retain);
    assert_eq!(
        nl.properties
            .as_ref()
            .map(|p| p.subscription_identifiers.clone()),
        Some(vec![7])
    );
    gw.stop().await;
}

#[tokio::test]
async fn retain_handling_options() {
    let gw = GatewayHarness::new().start().await;
    let (mut publ, _) = V5::connect(v5_options(gw.mqtt_addr(), "pub")).await;
    publ.client
        .publish("rh/a", QoS::AtLeastOnce, true, "r")
        .await
        .unwrap();
    publ.puback().await;
    let (mut s, _) = V5::connect(v5_options(gw.mqtt_addr(), "s")).await;
    s.client.subscribe("rh/#", QoS::AtLeastOnce).await.unwrap();
    s.suback().await;
    assert!(s.next_publish().await.retain);
    // 1 = only for a new subscription: re-subscribing sends nothing.
    let f = Filter {
        retain_forward_rule: RetainForwardRule::OnNewSubscribe,
        ..Filter::new("rh/#", QoS::AtLeastOnce)
    };
    s.client.subscribe_many(vec![f]).await.unwrap();
    s.suback().await;
    assert!(
        s.try_next_publish(Duration::from_millis(500))
            .await
            .is_none()
    );
    // 2 = never.
    let f = Filter {
        retain_forward_rule: RetainForwardRule::Never,
        ..Filter::new("rh/+", QoS::AtLeastOnce)
    };
    s.client.subscribe_many(vec![f]).await.unwrap();
    s.suback().await;
    assert!(
        s.try_next_publish(Duration::from_millis(500))
            .await
            .is_none()
    );
    // 0 = on every subscribe: re-subscribing sends it again.
    s.client.subscribe("rh/#", QoS::AtLeastOnce).await.unwrap();
    s.suback().await;
    assert!(s.next_publish().await.retain);
    gw.stop().await;
}

#[tokio::test]
async fn message_expiry_is_counted_down_and_enforced() {
    let gw = GatewayHarness::new().start().await;
    let (mut publ, _) = V5::connect(v5_options(gw.mqtt_addr(), "pub")).await;
    let props = |s| PublishProperties {
        message_expiry_interval: Some(s),
        ..Default::default()
    };
    publ.client
        .publish_with_properties("exp/short", QoS::AtLeastOnce, true, "s", props(1))
        .await
        .unwrap();
    publ.client
        .publish_with_properties("exp/long", QoS::AtLeastOnce, true, "l", props(100))
        .await
        .unwrap();
    publ.puback().await;
    publ.puback().await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (mut s, _) = V5::connect(v5_options(gw.mqtt_addr(), "s")).await;
    s.client.subscribe("exp/#", QoS::AtLeastOnce).await.unwrap();
    s.suback().await;
    let p = s.next_publish().await;
    assert_eq!(
        &p.topic[..],
        b"exp/long",
        "the expired retained message is not sent"
    );
    let left = p
        .properties
        .and_then(|p| p.message_expiry_interval)
        .expect("expiry sent");
    assert!(
        (95..100).contains(&left),
        "remaining lifetime, not the original: {left}"
    );
    assert!(
        s.try_next_publish(Duration::from_millis(300))
            .await
            .is_none()
    );
    gw.stop().await;
}

#[tokio::test]
async fn client_receive_maximum_limits_inflight() {
    let gw = GatewayHarness::new().start().await;
    let mut o = v5_options(gw.mqtt_addr(), "slow");
    o.set_receive_maximum(Some(2));
    o.set_manual_acks(true);
    let (mut s, _) = V5::connect(o).await;
    s.client.subscribe("rm/#", QoS::AtLeastOnce).await.unwrap();
    s.suback().await;
    let (publ, _) = V5::connect(v5_options(gw.mqtt_addr(), "pub")).await;
    for i in 0..5u8 {
        publ.client
            .publish("rm/x", QoS::AtLeastOnce, false, vec![i])
            .await
            .unwrap();
    }
    let a = s.next_publish().await;
    let b = s.next_publish().await;
    assert!(
        s.try_next_publish(Duration::from_millis(500))
            .await
            .is_none(),
        "window of 2 is full"
    );
    s.client.ack(&a).await.unwrap();
    let c = s.next_publish().await;
    assert_eq!((a.payload[0], b.payload[0], c.payload[0]), (0, 1, 2));
    gw.stop().await;
}

#[tokio::test]
async fn client_maximum_packet_size_skips_large_messages() {
    let gw = GatewayHarness::new().start().await;
    let mut o = v5_options(gw.mqtt_addr(), "small");
    let mut cp = ConnectProperties::new();
    cp.max_packet_size = Some(128);
    o.set_connect_properties(cp);
    let (mut s, _) = V5::connect(o).await;
    s.client.subscribe("mp/#", QoS::AtLeastOnce).await.unwrap();
    s.suback().await;
    let (publ, _) = V5::connect(v5_options(gw.mqtt_addr(), "pub")).await;
    publ.client
        .publish("mp/big", QoS::AtLeastOnce, false, vec![0u8; 1000])
        .await
        .unwrap();
    publ.client
        .publish("mp/small", QoS::AtLeastOnce, false, "ok")
        .await
        .unwrap();
    let p = s.next_publish().await;
    assert_eq!(&p.topic[..], b"mp/small");
    gw.stop().await;
}

#[tokio::test]
async fn assigned_client_id_and_server_keep_alive() {
    let gw = GatewayHarness::new()
        .with_config(|c| c.mqtt.max_keep_alive = 20)
        .start()
        .await;
    let mut o = v5_options(gw.mqtt_addr(), "");
    o.set_keep_alive(Duration::from_secs(60));
    o.set_clean_start(true);
    let (_c, ack) = V5::connect(o).await;
    let props = ack.properties.expect("CONNACK properties");
    let id = props
        .assigned_client_identifier
        .expect("an id was assigned");
    assert!(!id.is_empty());
    assert_eq!(props.server_keep_alive, Some(20));
    assert!(props.receive_max.is_some());
    gw.stop().await;
}

#[tokio::test]
async fn will_delay_is_cancelled_by_reconnect() {
    let gw = GatewayHarness::new().start().await;
    let (mut watcher, _) = V5::connect(v5_options(gw.mqtt_addr(), "watcher")).await;
    watcher
        .client
        .subscribe("wd/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    watcher.suback().await;
    let will = |delay| {
        LastWill::new(
            "wd/dev",
            "offline",
            QoS::AtLeastOnce,
            false,
            Some(LastWillProperties {
                delay_interval: Some(delay),
                ..blank_will_props()
            }),
        )
    };
    let session = |o: &mut rumqttc::v5::MqttOptions| {
        let mut cp = ConnectProperties::new();
        cp.session_expiry_interval = Some(60);
        o.set_connect_properties(cp);
        o.set_clean_start(false);
    };
    let mut o = v5_options(gw.mqtt_addr(), "dev");
    o.set_last_will(will(2));
    session(&mut o);
    let (dev, _) = V5::connect(o.clone()).await;
    dev.kill();
    // Back within the delay: no will.
    let (dev, _) = V5::connect(o.clone()).await;
    assert!(
        watcher
            .try_next_publish(Duration::from_millis(2600))
            .await
            .is_none()
    );
    dev.kill();
    // Not back: the will arrives after the delay.
    let p = watcher
        .try_next_publish(Duration::from_secs(6))
        .await
        .expect("will after delay");
    assert_eq!(&p.payload[..], b"offline");
    gw.stop().await;
}

fn blank_will_props() -> LastWillProperties {
    LastWillProperties {
        delay_interval: None,
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        user_properties: vec![],
    }
}

#[tokio::test]
async fn session_expiry_ends_offline_session() {
    let gw = GatewayHarness::new().start().await;
    let mut o = v5_options(gw.mqtt_addr(), "exp");
    let mut cp = ConnectProperties::new();
    cp.session_expiry_interval = Some(1);
    o.set_connect_properties(cp);
    o.set_clean_start(false);
    let (c, _) = V5::connect(o.clone()).await;
    c.disconnect().await;
    let (c, ack) = V5::connect(o.clone()).await;
    assert!(ack.session_present, "reconnect within expiry resumes");
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let (_c, ack) = V5::connect(o).await;
    assert!(!ack.session_present, "the session expired");
    gw.stop().await;
}

#[tokio::test]
async fn takeover_and_shutdown_send_reason_codes() {
    let gw = GatewayHarness::new().start().await;
    let (mut first, _) = V5::connect(v5_options(gw.mqtt_addr(), "dup")).await;
    let (mut second, _) = V5::connect(v5_options(gw.mqtt_addr(), "dup")).await;
    assert_eq!(
        disconnect_reason(&mut first).await,
        format!("{:?}", DisconnectReasonCode::SessionTakenOver)
    );
    let stop = tokio::spawn(gw.stop());
    assert_eq!(
        disconnect_reason(&mut second).await,
        format!("{:?}", DisconnectReasonCode::ServerShuttingDown)
    );
    stop.await.unwrap();
}

/// The reason code of the DISCONNECT the server sends (rumqttc reports it as an error whose
/// text names the code), or what happened instead.
async fn disconnect_reason(c: &mut V5) -> String {
    loop {
        match c.next_packet().await {
            Ok(Packet::Disconnect(d)) => return format!("{:?}", d.reason_code),
            Ok(_) => continue,
            Err(e) => {
                for code in [
                    DisconnectReasonCode::SessionTakenOver,
                    DisconnectReasonCode::ServerShuttingDown,
                ] {
                    if e.contains(&format!("{code:?}")) {
                        return format!("{code:?}");
                    }
                }
                return e;
            }
        }
    }
}

#[tokio::test]
async fn shared_qos0_encoding_is_per_protocol_version() {
    use e2e_tests::mqtt::{V4, v4_options};
    let gw = GatewayHarness::new().start().await;
    let (mut s5, _) = V5::connect(v5_options(gw.mqtt_addr(), "s5")).await;
    s5.client.subscribe("enc/#", QoS::AtMostOnce).await.unwrap();
    s5.suback().await;
    let (mut s4, _) = V4::connect(v4_options(gw.mqtt_addr(), "s4")).await;
    s4.subscribe("enc/#", rumqttc::QoS::AtMostOnce).await;
    let (publ, _) = V5::connect(v5_options(gw.mqtt_addr(), "pub")).await;
    let props = PublishProperties {
        user_properties: vec![("unit".into(), "C".into())],
        ..Default::default()
    };
    for i in 0..3u8 {
        publ.client
            .publish_with_properties("enc/t", QoS::AtMostOnce, false, vec![i], props.clone())
            .await
            .unwrap();
    }
    for i in 0..3u8 {
        let p5 = s5.next_publish().await;
        assert_eq!(&p5.payload[..], &[i]);
        assert_eq!(
            p5.properties.map(|p| p.user_properties),
            Some(props.user_properties.clone())
        );
        let p4 = s4.next_publish().await;
        assert_eq!((&p4.topic[..], &p4.payload[..]), ("enc/t", &[i][..]));
    }
    gw.stop().await;
}

#[tokio::test]
async fn session_expiry_counts_on_across_a_restart() {
    let gw = GatewayHarness::new().start().await;
    let mut o = v5_options(gw.mqtt_addr(), "short-lived");
    let mut cp = ConnectProperties::new();
    cp.session_expiry_interval = Some(2);
    o.set_connect_properties(cp);
    o.set_clean_start(false);
    let (c, _) = V5::connect(o).await;
    c.disconnect().await;
    let gw = gw.restart().await;
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let mut o = v5_options(gw.mqtt_addr(), "short-lived");
    let mut cp = ConnectProperties::new();
    cp.session_expiry_interval = Some(2);
    o.set_connect_properties(cp);
    o.set_clean_start(false);
    let (_c, ack) = V5::connect(o).await;
    assert!(
        !ack.session_present,
        "the restored timer ended the session while offline"
    );
    gw.stop().await;
}
