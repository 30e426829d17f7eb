//! MQTT over WebSocket at `/mqtt`: the subprotocol handshake, and real rumqttc clients (v4
//! and v5, WebSocket transport) publishing and receiving through the gateway, including
//! between a WebSocket client and a TCP client.

mod common;

use common::{PATIENCE, get, test_config};
use gateway::server::Gateway;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, Transport};
use std::net::SocketAddr;
use std::time::Duration;

const UPGRADE: [&str; 4] = [
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
];

#[tokio::test]
async fn upgrade_without_the_mqtt_subprotocol_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gw = Gateway::start(test_config(dir.path()))
        .await
        .expect("gateway starts");

    let none = get(gw.http_addr(), "/mqtt", &UPGRADE).await;
    assert_eq!(none.status, 400, "{}", none.body);
    assert!(none.body.contains("mqtt"), "{}", none.body);

    let mut other = UPGRADE.to_vec();
    other.push("Sec-WebSocket-Protocol: graphql-ws");
    assert_eq!(get(gw.http_addr(), "/mqtt", &other).await.status, 400);

    let mut mqtt = UPGRADE.to_vec();
    mqtt.push("Sec-WebSocket-Protocol: mqttv3.1, mqtt");
    let ok = get(gw.http_addr(), "/mqtt", &mqtt).await;
    assert_eq!(ok.status, 101);
    assert_eq!(ok.header("sec-websocket-protocol"), Some("mqtt"));

    gw.shutdown().await;
}

fn ws_options(id: &str, http: SocketAddr) -> MqttOptions {
    let mut o = MqttOptions::new(id, format!("ws://{http}/mqtt"), http.port());
    o.set_transport(Transport::Ws);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

/// Polls `events` until `pick` returns a value, or fails after [`PATIENCE`].
async fn wait_for<T>(
    events: &mut EventLoop,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let fut = async {
        loop {
            match events.poll().await {
                Ok(ev) => {
                    if let Some(v) = pick(&ev) {
                        return v;
                    }
                }
                Err(e) => panic!("connection failed while waiting for {what}: {e}"),
            }
        }
    };
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn suback(ev: &Event) -> Option<()> {
    matches!(ev, Event::Incoming(Packet::SubAck(_))).then_some(())
}

fn publish(ev: &Event) -> Option<(String, Vec<u8>, QoS)> {
    match ev {
        Event::Incoming(Packet::Publish(p)) => Some((p.topic.clone(), p.payload.to_vec(), p.qos)),
        _ => None,
    }
}

#[tokio::test]
async fn rumqttc_v4_over_websocket_round_trip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gw = Gateway::start(test_config(dir.path()))
        .await
        .expect("gateway starts");

    let (client, mut events) = AsyncClient::new(ws_options("ws-v4", gw.http_addr()), 16);
    client
        .subscribe("ws/+/temp", QoS::AtLeastOnce)
        .await
        .expect("queue subscribe");
    wait_for(&mut events, "SUBACK", suback).await;

    // Larger than one outbound chunk, so it spans several WebSocket frames or reads.
    let big = vec![b'x'; 40_000];
    client
        .publish("ws/a/temp", QoS::AtLeastOnce, false, "21.5")
        .await
        .expect("queue publish");
    client
        .publish("ws/b/temp", QoS::AtLeastOnce, false, big.clone())
        .await
        .expect("queue publish");

    let first = wait_for(&mut events, "first message", publish).await;
    assert_eq!(
        first,
        ("ws/a/temp".into(), b"21.5".to_vec(), QoS::AtLeastOnce)
    );
    let second = wait_for(&mut events, "second message", publish).await;
    assert_eq!(second, ("ws/b/temp".into(), big, QoS::AtLeastOnce));

    let metrics = get(gw.admin_addr(), "/metrics", &[]).await;
    assert!(
        metrics.body.contains("gateway_mqtt_ws_connections 1"),
        "{}",
        metrics.body
    );

    client.disconnect().await.expect("queue disconnect");
    gw.shutdown().await;
}

#[tokio::test]
async fn websocket_and_tcp_clients_see_each_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gw = Gateway::start(test_config(dir.path()))
        .await
        .expect("gateway starts");

    // A v5 client over WebSocket subscribes...
    let mut o = rumqttc::v5::MqttOptions::new(
        "ws-v5",
        format!("ws://{}/mqtt", gw.http_addr()),
        gw.http_addr().port(),
    );
    o.set_transport(Transport::Ws);
    let (ws_client, mut ws_events) = rumqttc::v5::AsyncClient::new(o, 16);
    ws_client
        .subscribe("plant1/+/temp", rumqttc::v5::mqttbytes::QoS::ExactlyOnce)
        .await
        .expect("queue subscribe");
    let fut = async {
        loop {
            match ws_events.poll().await {
                Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::SubAck(_))) => {
                    break;
                }
                Ok(_) => {}
                Err(e) => panic!("v5 WebSocket connection failed: {e}"),
            }
        }
    };
    tokio::time::timeout(PATIENCE, fut).await.expect("SUBACK");

    // ...and a v4 client over TCP publishes.
    let mqtt = gw.mqtt_addr();
    let (tcp_client, mut tcp_events) = AsyncClient::new(
        MqttOptions::new("tcp-v4", mqtt.ip().to_string(), mqtt.port()),
        16,
    );
    tcp_client
        .publish("plant1/line3/temp", QoS::ExactlyOnce, false, "22.0")
        .await
        .expect("queue publish");
    let publisher = tokio::spawn(async move {
        // Drive the publisher until its QoS 2 exchange completes.
        loop {
            match tcp_events.poll().await {
                Ok(Event::Incoming(Packet::PubComp(_))) => return,
                Ok(_) => {}
                Err(e) => panic!("TCP publisher failed: {e}"),
            }
        }
    });

    let fut = async {
        loop {
            match ws_events.poll().await {
                Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::Publish(
                    p,
                ))) => {
                    return p;
                }
                Ok(_) => {}
                Err(e) => panic!("v5 WebSocket connection failed: {e}"),
            }
        }
    };
    let p = tokio::time::timeout(PATIENCE, fut)
        .await
        .expect("message over WebSocket");
    assert_eq!(&p.topic[..], b"plant1/line3/temp");
    assert_eq!(&p.payload[..], b"22.0");
    assert_eq!(p.qos, rumqttc::v5::mqttbytes::QoS::ExactlyOnce);
    tokio::time::timeout(PATIENCE, publisher)
        .await
        .expect("publisher finished")
        .expect("publisher task");

    gw.shutdown().await;
}
