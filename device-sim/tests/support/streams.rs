//! Crafted stamped streams for `verify`: published in order by an rumqttc MQTT 5 client at
//! QoS 1, with whatever gaps, duplicates and reorderings the test wrote into them.

use std::net::SocketAddr;
use std::time::Duration;

use device_sim::stamp::Stamp;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::json;

/// One message of a crafted stream.
#[derive(Debug, Clone, Copy)]
pub enum Crafted<'a> {
    /// Stamped in the JSON payload.
    Payload(&'a str, u64),
    /// Stamped in MQTT 5 user properties (the payload is not JSON).
    Props(&'a str, u64),
    /// No stamp at all.
    Unstamped,
}

/// Publishes `stream` in order to `topic/<device>` at QoS 1 (MQTT 5), `pace` apart, and
/// waits until every PUBACK is in.
pub async fn publish_stream(
    broker: SocketAddr,
    topic: &str,
    stream: &[Crafted<'_>],
    pace: Duration,
) {
    let id = format!("pub-{}-{}", std::process::id(), topic.replace('/', "-"));
    let mut opts = MqttOptions::new(id, broker.ip().to_string(), broker.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = AsyncClient::new(opts, 1000);
    let expected = stream.len();
    let poller = tokio::spawn(async move {
        let mut acks = 0;
        while acks < expected {
            match el.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acks += 1,
                Ok(_) => {}
                Err(e) => panic!("publisher connection failed: {e}"),
            }
        }
    });
    for m in stream {
        let (channel, payload, props) = match *m {
            Crafted::Payload(dev, seq) => {
                let mut obj = serde_json::Map::new();
                obj.insert("temp".into(), json!(21.5));
                Stamp::now(dev, seq).insert_into(&mut obj);
                let body = serde_json::Value::Object(obj).to_string();
                (format!("{topic}/{dev}"), body.into_bytes(), None)
            }
            Crafted::Props(dev, seq) => {
                let props = PublishProperties {
                    user_properties: Stamp::now(dev, seq).user_properties(),
                    ..PublishProperties::default()
                };
                (
                    format!("{topic}/{dev}"),
                    b"\xff\x00raw".to_vec(),
                    Some(props),
                )
            }
            Crafted::Unstamped => (format!("{topic}/plain"), b"21.5".to_vec(), None),
        };
        let sent = match props {
            Some(p) => {
                client
                    .publish_with_properties(channel, QoS::AtLeastOnce, false, payload, p)
                    .await
            }
            None => {
                client
                    .publish(channel, QoS::AtLeastOnce, false, payload)
                    .await
            }
        };
        sent.unwrap_or_else(|e| panic!("publish: {e}"));
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
    }
    match tokio::time::timeout(Duration::from_secs(20), poller).await {
        Ok(Ok(())) => {}
        other => panic!("not every PUBACK arrived: {other:?}"),
    }
    let _ = client.disconnect().await;
}

/// `count` messages per device, interleaved round-robin, all stamped in the payload.
pub fn clean_stream<'a>(devices: &[&'a str], count: u64) -> Vec<Crafted<'a>> {
    let mut out = Vec::new();
    for seq in 1..=count {
        for dev in devices {
            out.push(Crafted::Payload(dev, seq));
        }
    }
    out
}
