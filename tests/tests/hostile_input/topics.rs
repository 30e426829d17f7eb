//! Topics that look odd but are valid (non-ASCII, empty levels, very deep): accepted and
//! delivered unchanged; and a `$SYS` topic published by a client: refused.

use super::ending::{describe, hello, publish, uid};
use super::{AT_ONCE, ROUND_TRIP};
use e2e_tests::mqtt::{V5, v5_options};
use e2e_tests::raw::{Raw, connect_v4, publish_v4, publish_v5, subscribe_one};
use std::net::SocketAddr;
use std::time::Duration;

/// Each topic is published at QoS 1 by a raw 3.1.1 and then a raw MQTT 5 client, must be
/// acknowledged with success, and must reach an MQTT 5 subscriber whose filters match each
/// topic exactly once, byte for byte and in order.
pub async fn odd_topics_are_delivered(addr: SocketAddr) -> Result<(), String> {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{Filter, SubscribeReasonCode};
    let deep = [&["deep"][..], &["l"; 199]].concat().join("/");
    let topics = [
        "été/x",
        "温度/1",
        "🔥/💧",
        "a//b",
        "/",
        "\u{FEFF}bom/x",
        deep.as_str(),
    ];
    let filters = [
        "été/+",
        "温度/#",
        "🔥/+",
        "a/+/b",
        "/",
        "\u{FEFF}bom/x",
        "deep/#",
    ];
    let (mut sub, _) = V5::connect(v5_options(addr, &uid("odd-sub"))).await;
    let wanted = filters.iter().map(|f| Filter::new(*f, QoS::AtLeastOnce));
    sub.client
        .subscribe_many(wanted)
        .await
        .map_err(|e| e.to_string())?;
    let ack = sub.suback().await;
    if ack
        .return_codes
        .iter()
        .any(|c| *c != SubscribeReasonCode::Success(QoS::AtLeastOnce))
    {
        return Err(format!(
            "subscriptions to odd filters refused: {:?}",
            ack.return_codes
        ));
    }
    for v5 in [false, true] {
        let mut publ = Raw::handshake(addr, &hello(v5, &uid("odd-pub"), 0)).await?;
        for (pkid, topic) in (1u16..).zip(topics) {
            let bytes = if v5 {
                publish_v5(topic.as_bytes(), 1, pkid, &[], b"odd")
            } else {
                publish_v4(topic.as_bytes(), 1, false, pkid, b"odd")
            };
            publ.send(&bytes).await;
            match publ.read_packet(AT_ONCE).await {
                Some((0x40, b))
                    if b.get(..2) == Some(&pkid.to_be_bytes()[..])
                        && b.get(2).is_none_or(|c| *c == 0) => {}
                other => {
                    return Err(format!(
                        "PUBLISH to {topic:?} (v5: {v5}) not acknowledged: {other:?}"
                    ));
                }
            }
        }
        for topic in topics {
            let Some(p) = sub.try_next_publish(ROUND_TRIP).await else {
                return Err(format!("{topic:?} (v5: {v5}) not delivered"));
            };
            if p.topic[..] != *topic.as_bytes() {
                let got = String::from_utf8_lossy(&p.topic);
                return Err(format!("expected {topic:?}, got {got:?}"));
            }
        }
    }
    sub.disconnect().await;
    Ok(())
}

/// A `$SYS` topic published by a client is refused (the connection closed, or MQTT 5 an error
/// reason) or at least never reaches a `$SYS/#` subscriber.
pub async fn sys_publish_is_refused(addr: SocketAddr, v5: bool) -> Result<(), String> {
    let mut watcher = Raw::handshake(addr, &connect_v4(&uid("sys-watch"), 0)).await?;
    watcher.send(&subscribe_one(false, 1, b"$SYS/#", 0)).await;
    match watcher.read_packet(AT_ONCE).await {
        Some((0x90, _)) => {}
        other => return Err(format!("no SUBACK for $SYS/#: {other:?}")),
    }
    let mut publ = Raw::handshake(addr, &hello(v5, &uid("sys-pub"), 0)).await?;
    publ.send(&publish(v5, b"$SYS/x", 1, &[], b"spoof")).await;
    let end = publ.ending(Duration::from_secs(2)).await;
    let refused = match &end.packets[..] {
        [] => end.closed,
        [(0xE0, b)] => end.closed && v5 && b.first().is_some_and(|c| *c >= 0x80),
        [(0x40, _)] => !end.closed,
        _ => false,
    };
    if !refused {
        let sent = describe(&end.packets);
        return Err(format!(
            "unexpected answer: {sent} (closed: {})",
            end.closed
        ));
    }
    match watcher.read_packet(Duration::from_secs(1)).await {
        Some((first, _)) if first >> 4 == 3 => {
            Err("a client's $SYS/x publish was delivered".into())
        }
        _ => Ok(()),
    }
}
