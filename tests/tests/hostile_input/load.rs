//! Attacks by volume rather than content: a slowloris (sockets that never send CONNECT, or
//! drip it too slowly) and a flood of QoS 0 publishes towards a subscriber that never reads,
//! while other clients keep getting round trips.

use super::ending::{End, describe, expect_end, uid};
use super::{AT_ONCE, BY_TIMER, ROUND_TRIP};
use e2e_tests::mqtt::{V4, V5, v4_options, v5_options};
use e2e_tests::raw::{Raw, connect_v4, publish_v4, subscribe_one};
use std::net::SocketAddr;
use std::time::Duration;

/// Connects a 3.1.1 subscriber and publisher and checks one QoS 1 message gets through within
/// [`ROUND_TRIP`].
pub async fn round_trip_v4(addr: SocketAddr, tag: &str) -> Result<(), String> {
    use rumqttc::{QoS, SubscribeReasonCode};
    let topic = format!("rt/{tag}");
    let (mut sub, _) = V4::connect(v4_options(addr, &uid(&format!("{tag}-sub")))).await;
    let ack = sub.subscribe(&topic, QoS::AtLeastOnce).await;
    if ack.return_codes != [SubscribeReasonCode::Success(QoS::AtLeastOnce)] {
        return Err(format!(
            "{tag}: subscription refused: {:?}",
            ack.return_codes
        ));
    }
    let (publ, _) = V4::connect(v4_options(addr, &uid(&format!("{tag}-pub")))).await;
    let payload = tag.as_bytes().to_vec();
    publ.client
        .publish(&topic, QoS::AtLeastOnce, false, payload)
        .await
        .map_err(|e| e.to_string())?;
    let Some(p) = sub.try_next_publish(ROUND_TRIP).await else {
        return Err(format!("{tag}: no round trip within {ROUND_TRIP:?}"));
    };
    if p.topic != topic || p.payload[..] != *tag.as_bytes() {
        return Err(format!("{tag}: wrong message {p:?}"));
    }
    sub.disconnect().await;
    publ.disconnect().await;
    Ok(())
}

/// The same with MQTT 5 clients.
pub async fn round_trip_v5(addr: SocketAddr, tag: &str) -> Result<(), String> {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode;
    let topic = format!("rt/{tag}");
    let (mut sub, _) = V5::connect(v5_options(addr, &uid(&format!("{tag}-sub")))).await;
    sub.client
        .subscribe(&topic, QoS::AtLeastOnce)
        .await
        .map_err(|e| e.to_string())?;
    let ack = sub.suback().await;
    if ack.return_codes != [SubscribeReasonCode::Success(QoS::AtLeastOnce)] {
        return Err(format!(
            "{tag}: subscription refused: {:?}",
            ack.return_codes
        ));
    }
    let (publ, _) = V5::connect(v5_options(addr, &uid(&format!("{tag}-pub")))).await;
    let payload = tag.as_bytes().to_vec();
    publ.client
        .publish(&topic, QoS::AtLeastOnce, false, payload)
        .await
        .map_err(|e| e.to_string())?;
    let Some(p) = sub.try_next_publish(ROUND_TRIP).await else {
        return Err(format!("{tag}: no round trip within {ROUND_TRIP:?}"));
    };
    if p.topic[..] != *topic.as_bytes() || p.payload[..] != *tag.as_bytes() {
        return Err(format!("{tag}: wrong message {p:?}"));
    }
    sub.disconnect().await;
    publ.disconnect().await;
    Ok(())
}

/// Sends a valid CONNECT one byte every 250 ms: the connect timeout (1 s) counts from the
/// socket's opening, not from the last byte, so the server closes before CONNECT completes.
async fn drip_connect(addr: SocketAddr) -> Result<(), String> {
    let mut raw = Raw::open(addr).await;
    let hello = connect_v4(&uid("drip"), 0);
    for byte in &hello {
        raw.send(std::slice::from_ref(byte)).await;
        if raw.closed_within(Duration::from_millis(250)).await {
            return Ok(());
        }
    }
    let end = raw.ending(AT_ONCE).await;
    let ms = hello.len() * 250;
    Err(format!(
        "a CONNECT dripped over {ms} ms was served: {}",
        describe(&end.packets)
    ))
}

/// 50 sockets that send nothing and 3 that drip a CONNECT, while clients keep working; all of
/// them are closed after the connect timeout, without an answer.
pub async fn slowloris(addr: SocketAddr) -> Result<(), String> {
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(Raw::open(addr).await);
    }
    let drips: Vec<_> = (0..3).map(|_| tokio::spawn(drip_connect(addr))).collect();
    round_trip_v4(addr, "during-slowloris").await?;
    for (i, raw) in idle.iter_mut().enumerate() {
        let closed = expect_end(raw, BY_TIMER, &[End::Silent]).await;
        closed.map_err(|e| format!("idle socket {i}: {e}"))?;
    }
    for d in drips {
        d.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// One client sends 5,000 QoS 0 publishes as fast as it can while a subscriber to them never
/// reads; meanwhile another client's round trip completes, and afterwards the flooder's
/// PINGREQ is answered (its connection was served, not dropped).
pub async fn flood(addr: SocketAddr) -> Result<(), String> {
    let mut lazy = Raw::handshake(addr, &connect_v4(&uid("flood-lazy"), 0)).await?;
    lazy.send(&subscribe_one(false, 1, b"flood/#", 0)).await;
    match lazy.read_packet(AT_ONCE).await {
        Some((0x90, _)) => {}
        other => return Err(format!("no SUBACK for the lazy subscriber: {other:?}")),
    }
    let mut flooder = Raw::handshake(addr, &connect_v4(&uid("flooder"), 0)).await?;
    let one = publish_v4(b"flood/x", 0, false, 0, &[b'f'; 100]);
    let burst = one.repeat(5000);
    let (head, tail) = burst.split_at(one.len() * 1000);
    flooder.send(head).await;
    let tail = tail.to_vec();
    let flooding = tokio::spawn(async move {
        flooder.send(&tail).await;
        flooder
    });
    round_trip_v4(addr, "during-flood").await?;
    let mut flooder = flooding.await.map_err(|e| e.to_string())?;
    flooder.send(&[0xC0, 0x00]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match flooder.read_packet(left).await {
            Some((0xD0, _)) => break,
            Some(_) => continue,
            None => return Err("the flooder's PINGREQ was not answered within 30 s".into()),
        }
    }
    drop(lazy);
    Ok(())
}
