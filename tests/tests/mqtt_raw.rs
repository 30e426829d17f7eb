//! Protocol details checked with hand-built packets: a QoS 2 retry is never delivered twice,
//! keep-alive closes silent connections at 1.5 × the interval, CONNECT must come in time.

use e2e_tests::GatewayHarness;
use e2e_tests::mqtt::{V4, v4_options};
use e2e_tests::raw::{Raw, packet, publish_v4};
use rumqttc::QoS;
use std::time::{Duration, Instant};

#[tokio::test]
async fn qos2_retry_is_delivered_once() {
    let gw = GatewayHarness::new().start().await;
    let (mut sub, _) = V4::connect(v4_options(gw.mqtt_addr(), "sub")).await;
    sub.subscribe("q2/#", QoS::ExactlyOnce).await;
    let mut raw = Raw::connect(gw.mqtt_addr(), "raw-pub", 0).await;
    raw.send(&publish_v4(b"q2/x", 2, false, 7, b"once")).await;
    raw.send(&publish_v4(b"q2/x", 2, true, 7, b"once")).await;
    for _ in 0..2 {
        let (first, body) = raw
            .read_packet(Duration::from_secs(5))
            .await
            .expect("PUBREC");
        assert_eq!((first, body), (0x50, vec![0, 7]));
    }
    raw.send(&packet(0x62, &[0, 7])).await;
    let (first, body) = raw
        .read_packet(Duration::from_secs(5))
        .await
        .expect("PUBCOMP");
    assert_eq!((first, body), (0x70, vec![0, 7]));
    let p = sub.next_publish().await;
    assert_eq!(&p.payload[..], b"once");
    assert!(
        sub.try_next_publish(Duration::from_millis(500))
            .await
            .is_none(),
        "the retry was not delivered"
    );

    // After PUBCOMP the packet id is free again: a new message with id 7 is a new message.
    raw.send(&publish_v4(b"q2/x", 2, false, 7, b"twice")).await;
    assert!(raw.read_packet(Duration::from_secs(5)).await.is_some());
    assert_eq!(&sub.next_publish().await.payload[..], b"twice");
    gw.stop().await;
}

#[tokio::test]
async fn keep_alive_closes_silent_client_after_one_and_a_half_intervals() {
    let gw = GatewayHarness::new().start().await;
    let mut raw = Raw::connect(gw.mqtt_addr(), "quiet", 1).await;
    let t = Instant::now();
    assert!(raw.closed_within(Duration::from_secs(5)).await, "closed");
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "not before 1.5 × keep-alive: {waited:?}"
    );

    // Keep-alive 0 means none: still open after 2 s.
    let mut raw = Raw::connect(gw.mqtt_addr(), "none", 0).await;
    assert!(!raw.closed_within(Duration::from_secs(2)).await);
    gw.stop().await;
}

#[tokio::test]
async fn connect_must_arrive_in_time() {
    let gw = GatewayHarness::new()
        .with_config(|c| c.mqtt.connect_timeout = Duration::from_millis(500))
        .start()
        .await;
    let mut raw = Raw::open(gw.mqtt_addr()).await;
    assert!(
        raw.closed_within(Duration::from_secs(5)).await,
        "idle socket closed"
    );
    gw.stop().await;
}

#[tokio::test]
async fn packets_sent_with_the_connect_are_handled_at_once() {
    let gw = GatewayHarness::new().start().await;
    let (mut sub, _) = V4::connect(v4_options(gw.mqtt_addr(), "watch")).await;
    sub.subscribe("pipe/#", QoS::AtMostOnce).await;
    // CONNECT, PUBLISH, PINGREQ and DISCONNECT in one write.
    let mut raw = Raw::open(gw.mqtt_addr()).await;
    let mut bytes = e2e_tests::raw::connect_v4("pipelined", 60);
    bytes.extend(publish_v4(b"pipe/x", 0, false, 0, b"early"));
    bytes.extend(packet(0xC0, &[]));
    bytes.extend(packet(0xE0, &[]));
    raw.send(&bytes).await;
    let (first, _) = raw
        .read_packet(Duration::from_secs(5))
        .await
        .expect("CONNACK");
    assert_eq!(first, 0x20);
    let (first, _) = raw
        .read_packet(Duration::from_secs(5))
        .await
        .expect("PINGRESP");
    assert_eq!(
        first, 0xD0,
        "the PINGREQ was answered without waiting for more bytes"
    );
    assert_eq!(&sub.next_publish().await.payload[..], b"early");
    assert!(
        raw.closed_within(Duration::from_secs(5)).await,
        "DISCONNECT was seen"
    );
    gw.stop().await;
}
