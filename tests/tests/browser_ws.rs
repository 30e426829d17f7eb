//! The JSON WebSocket protocol at `/ws`, driven with tokio-tungstenite against a real
//! gateway: subscribe options, encodings, resume, resets, publishing, bad input, slow
//! consumers and presence.

#[path = "browser_ws/input.rs"]
mod input;
#[path = "browser_ws/presence.rs"]
mod presence;
#[path = "browser_ws/publish.rs"]
mod publish;
#[path = "browser_ws/slow.rs"]
mod slow;

use e2e_tests::GatewayHarness;
use e2e_tests::mqtt::{V4, v4_options};
use e2e_tests::ws::{WsClient, numbers};
use rumqttc::QoS;
use serde_json::json;
use std::net::SocketAddr;

/// Publishes `n` numbered QoS 1 messages over MQTT, `topic_of(i)` choosing the topic, and
/// waits for every PUBACK (so they are durable and released).
pub async fn mqtt_numbers(
    mqtt: SocketAddr,
    id: &str,
    range: std::ops::Range<i64>,
    topic_of: impl Fn(i64) -> String,
) {
    let (mut dev, _) = V4::connect(v4_options(mqtt, id)).await;
    for i in range.clone() {
        dev.client
            .publish(topic_of(i), QoS::AtLeastOnce, false, i.to_string())
            .await
            .expect("publish queued");
    }
    for _ in range {
        dev.puback().await;
    }
    dev.disconnect().await;
}

#[tokio::test]
async fn messages_carry_channel_position_and_each_encoding() {
    let gw = GatewayHarness::new().start().await;
    let mut ws = WsClient::connect(gw.http_addr(), "").await;
    let (ok, _) = ws.subscribe("site/+/temp", json!({})).await;
    assert_eq!(ok["op"], "ok", "{ok}");
    let (dev, _) = V4::connect(v4_options(gw.mqtt_addr(), "dev")).await;
    let c = &dev.client;
    c.publish("site/a/temp", QoS::AtLeastOnce, false, r#"{"t":21.5}"#)
        .await
        .expect("publish");
    c.publish("other/x", QoS::AtLeastOnce, false, "skip")
        .await
        .expect("publish");
    c.publish("site/b/temp", QoS::AtMostOnce, false, "warm")
        .await
        .expect("publish");
    c.publish("site/c/temp", QoS::AtLeastOnce, false, vec![0xffu8, 0, 1])
        .await
        .expect("publish");
    let mut notices = Vec::new();
    let m = ws.msgs(3, &mut notices).await;
    assert_eq!(m[0]["channel"], "site/a/temp");
    assert_eq!(
        (m[0]["encoding"].clone(), m[0]["data"].clone()),
        (json!("json"), json!({"t": 21.5}))
    );
    assert_eq!(
        (m[0]["qos"].clone(), m[0]["retain"].clone()),
        (json!(1), json!(false))
    );
    assert!(m[0]["ts"].as_u64().is_some_and(|t| t > 0));
    assert_eq!(
        (m[1]["encoding"].clone(), m[1]["data"].clone()),
        (json!("utf8"), json!("warm"))
    );
    assert_eq!(m[1]["qos"], 0);
    assert_eq!(
        (m[2]["encoding"].clone(), m[2]["data"].clone()),
        (json!("base64"), json!("/wAB"))
    );
    let pos: Vec<(u64, u64)> = m
        .iter()
        .map(|f| {
            let (e, s) = f["pos"]
                .as_str()
                .and_then(|p| p.split_once('-'))
                .expect("pos");
            (e.parse().expect("epoch"), s.parse().expect("seq"))
        })
        .collect();
    assert!(
        pos.windows(2).all(|w| w[0].0 == w[1].0 && w[0].1 < w[1].1),
        "{pos:?}"
    );
    assert_eq!(
        ws.welcome["epoch"].as_str(),
        Some(pos[0].0.to_string().as_str())
    );
    assert!(notices.is_empty(), "{notices:?}");
    dev.disconnect().await;
    gw.stop().await;
}

#[tokio::test]
async fn rewind_across_a_wildcard_then_live() {
    let gw = GatewayHarness::new().start().await;
    mqtt_numbers(gw.mqtt_addr(), "dev", 0..30, |i| match i % 3 {
        0 => "site/a/temp".into(),
        1 => "site/b/temp".into(),
        _ => "other/c/temp".into(),
    })
    .await;
    let mut ws = WsClient::connect(gw.http_addr(), "").await;
    let (ok, _) = ws.subscribe("site/+/temp", json!({"rewind": 5})).await;
    assert_eq!(ok["op"], "ok", "{ok}");
    let mut notices = Vec::new();
    let got = numbers(&ws.msgs(5, &mut notices).await);
    assert_eq!(
        got,
        vec![22, 24, 25, 27, 28],
        "the last five matching, in order"
    );
    mqtt_numbers(gw.mqtt_addr(), "dev", 30..32, |_| "site/z/temp".into()).await;
    assert_eq!(numbers(&ws.msgs(2, &mut notices).await), vec![30, 31]);
    // More than history holds: everything matching.
    let mut all = WsClient::connect(gw.http_addr(), "").await;
    all.subscribe("other/#", json!({"rewind": 1000})).await;
    let got = numbers(&all.msgs(10, &mut notices).await);
    assert_eq!(got, (0..30).filter(|i| i % 3 == 2).collect::<Vec<_>>());
    assert!(notices.is_empty(), "{notices:?}");
    gw.stop().await;
}

#[tokio::test]
async fn resume_with_one_position_across_a_wildcard_and_a_second_filter() {
    let gw = GatewayHarness::new().start().await;
    let mut ws = WsClient::connect(gw.http_addr(), "").await;
    ws.subscribe("plant/+/temp", json!({})).await;
    ws.subscribe("alarms", json!({})).await;
    let topic = |i: i64| match i % 3 {
        0 => "plant/l1/temp".to_string(),
        1 => "plant/l2/temp".to_string(),
        _ => "alarms".to_string(),
    };
    mqtt_numbers(gw.mqtt_addr(), "dev", 0..9, topic).await;
    let mut notices = Vec::new();
    let first = ws.msgs(9, &mut notices).await;
    assert_eq!(numbers(&first), (0..9).collect::<Vec<_>>());
    let last = first[4]["pos"].as_str().expect("pos").to_owned();
    drop(ws);
    mqtt_numbers(gw.mqtt_addr(), "dev", 9..20, topic).await;
    let mut again = WsClient::connect(gw.http_addr(), "").await;
    let (_, mut got) = again
        .subscribe("plant/+/temp", json!({"since": last}))
        .await;
    let (_, early) = again.subscribe("alarms", json!({"since": last})).await;
    got.extend(early);
    let n = got.len();
    got.extend(again.msgs(15 - n, &mut notices).await);
    // The second subscription's history comes after what the first had already sent; each
    // filter's own messages are in order, and together they are 5..20, each once.
    let per = |f: &dyn Fn(&str) -> bool| -> Vec<i64> {
        let sel: Vec<serde_json::Value> = got
            .iter()
            .filter(|m| f(m["channel"].as_str().unwrap_or("")))
            .cloned()
            .collect();
        numbers(&sel)
    };
    let plant = per(&|c: &str| c.starts_with("plant/"));
    let alarms = per(&|c: &str| c == "alarms");
    assert_eq!(plant, (5..20).filter(|i| i % 3 != 2).collect::<Vec<_>>());
    assert_eq!(alarms, (5..20).filter(|i| i % 3 == 2).collect::<Vec<_>>());
    assert!(
        again
            .try_next(std::time::Duration::from_millis(300))
            .await
            .is_none()
    );
    assert!(notices.is_empty(), "{notices:?}");
    gw.stop().await;
}

#[tokio::test]
async fn rewind_seconds_and_retained_first() {
    let gw = GatewayHarness::new().start().await;
    let (mut dev, _) = V4::connect(v4_options(gw.mqtt_addr(), "dev")).await;
    for (t, v) in [("cfg/a", "1"), ("cfg/b", "2")] {
        dev.client
            .publish(t, QoS::AtLeastOnce, true, v)
            .await
            .expect("publish");
        dev.puback().await;
    }
    mqtt_numbers(gw.mqtt_addr(), "dev2", 0..3, |_| "log/x".into()).await;
    let mut ws = WsClient::connect(gw.http_addr(), "").await;
    let (ok, early) = ws.subscribe("cfg/+", json!({"retained": true})).await;
    assert_eq!(ok["op"], "ok");
    let mut notices = Vec::new();
    let mut retained = early;
    retained.extend(ws.msgs(2 - retained.len(), &mut notices).await);
    let mut pairs: Vec<(String, bool)> = retained
        .iter()
        .map(|m| {
            (
                m["channel"].as_str().unwrap_or("").to_owned(),
                m["retain"] == true,
            )
        })
        .collect();
    pairs.sort();
    assert_eq!(pairs, vec![("cfg/a".into(), true), ("cfg/b".into(), true)]);
    dev.client
        .publish("cfg/a", QoS::AtLeastOnce, false, "3")
        .await
        .expect("publish");
    let live = ws.msgs(1, &mut notices).await;
    assert_eq!(
        (live[0]["data"].clone(), live[0]["retain"].clone()),
        (json!(3), json!(false))
    );
    let mut recent = WsClient::connect(gw.http_addr(), "").await;
    recent
        .subscribe("log/#", json!({"rewind_seconds": 3600}))
        .await;
    assert_eq!(numbers(&recent.msgs(3, &mut notices).await), vec![0, 1, 2]);
    let mut none = WsClient::connect(gw.http_addr(), "").await;
    none.subscribe("log/#", json!({"rewind_seconds": 0})).await;
    assert!(
        none.try_next(std::time::Duration::from_millis(300))
            .await
            .is_none()
    );
    dev.disconnect().await;
    gw.stop().await;
}

#[tokio::test]
async fn reset_names_what_retention_evicted_and_the_epoch_change() {
    let gw = GatewayHarness::new()
        .with_config(|c| c.history.max_messages = 5)
        .start()
        .await;
    let mut ws = WsClient::connect(gw.http_addr(), "").await;
    ws.subscribe("t", json!({})).await;
    mqtt_numbers(gw.mqtt_addr(), "dev", 0..1, |_| "t".into()).await;
    let mut notices = Vec::new();
    let seen = ws.msgs(1, &mut notices).await;
    let last = seen[0]["pos"].as_str().expect("pos").to_owned();
    drop(ws);
    mqtt_numbers(gw.mqtt_addr(), "dev", 1..40, |_| "t".into()).await;
    let mut again = WsClient::connect(gw.http_addr(), "").await;
    let (ok, mut early) = again.subscribe("t", json!({"since": last})).await;
    assert_eq!(ok["op"], "ok");
    if early.is_empty() {
        early.push(again.next().await);
    }
    let reset = &early[0];
    assert_eq!(reset["op"], "reset", "{reset}");
    assert_eq!(
        (reset["filter"].clone(), reset["reason"].clone()),
        (json!("t"), json!("retention"))
    );
    let (epoch, seq) = last.split_once('-').expect("pos");
    let from_seq: u64 = seq.parse::<u64>().expect("seq") + 1;
    assert_eq!(reset["from"], json!(format!("{epoch}-{from_seq}")));
    let to = reset["to"].as_str().expect("to");
    let mut rest: Vec<serde_json::Value> = early[1..].to_vec();
    let need = rest.iter().filter(|f| f["op"] == "msg").count();
    let _ = need;
    rest.extend(
        again
            .msgs(5usize.saturating_sub(rest.len()), &mut notices)
            .await,
    );
    let got = numbers(&rest);
    assert!(got.len() >= 5 && *got.last().unwrap_or(&0) <= 39, "{got:?}");
    let first_pos = rest[0]["pos"].as_str().expect("pos");
    let first_seq: u64 = first_pos
        .split_once('-')
        .expect("pos")
        .1
        .parse()
        .expect("seq");
    let to_seq: u64 = to.split_once('-').expect("pos").1.parse().expect("seq");
    assert_eq!(
        to_seq + 1,
        first_seq,
        "the reset ends right before the first message kept"
    );
    // A position from another life of the log.
    let mut other = WsClient::connect(gw.http_addr(), "").await;
    let foreign = format!("{}-3", epoch.parse::<u64>().expect("epoch").wrapping_add(1));
    let (ok, mut early) = other.subscribe("t", json!({"since": foreign})).await;
    assert_eq!(ok["op"], "ok");
    if early.is_empty() {
        early.push(other.next().await);
    }
    assert_eq!(
        (early[0]["op"].clone(), early[0]["reason"].clone()),
        (json!("reset"), json!("epoch"))
    );
    assert_eq!(early[0]["from"], json!(foreign.replace("-3", "-4")));
    gw.stop().await;
}

#[tokio::test]
async fn wildcard_resume_names_the_one_channel_retention_trimmed_and_keeps_the_others() {
    let gw = GatewayHarness::new()
        .with_config(|c| c.history.max_messages = 5)
        .start()
        .await;
    let mut ws = WsClient::connect(gw.http_addr(), "").await;
    ws.subscribe("w/#", json!({})).await;
    mqtt_numbers(gw.mqtt_addr(), "dev", 0..1, |_| "w/quiet".into()).await;
    let mut notices = Vec::new();
    let seen = ws.msgs(1, &mut notices).await;
    let last = seen[0]["pos"].as_str().expect("pos").to_owned();
    drop(ws);
    // While the dashboard is away, one channel overflows its history; the quiet channel
    // keeps its first message, so the log as a whole still reaches back past `last`.
    mqtt_numbers(gw.mqtt_addr(), "dev", 100..140, |_| "w/hot".into()).await;
    mqtt_numbers(gw.mqtt_addr(), "dev", 1..2, |_| "w/quiet".into()).await;

    let mut again = WsClient::connect(gw.http_addr(), "").await;
    let (ok, early) = again.subscribe("w/#", json!({"since": last})).await;
    assert_eq!(ok["op"], "ok", "{ok}");
    let mut frames = early;
    while !frames.iter().any(|f| f["op"] == "msg" && f["data"] == 1) {
        frames.push(again.next().await);
    }
    let resets: Vec<&serde_json::Value> = frames.iter().filter(|f| f["op"] == "reset").collect();
    assert_eq!(
        resets.len(),
        1,
        "one reset, for the trimmed channel: {frames:?}"
    );
    let reset = resets[0];
    assert_eq!(
        (&reset["filter"], &reset["channel"], &reset["reason"]),
        (&json!("w/#"), &json!("w/hot"), &json!("retention"))
    );
    let seq_of = |p: &serde_json::Value| -> u64 {
        let s = p.as_str().expect("position");
        s.split_once('-')
            .expect("epoch-seq")
            .1
            .parse()
            .expect("seq")
    };
    let last_seq = seq_of(&json!(last));
    assert_eq!(seq_of(&reset["from"]), last_seq + 1);
    let msgs: Vec<serde_json::Value> = frames
        .iter()
        .filter(|f| f["op"] == "msg")
        .cloned()
        .collect();
    let got = numbers(&msgs);
    // The newest hot messages the channel kept, in order, then the quiet one: nothing of the
    // quiet channel is lost, and of the hot channel only what the reset names.
    // (Count retention trims in steps as batches commit, so how many it keeps varies.)
    let hot = &got[..got.len() - 1];
    assert!((5..40).contains(&hot.len()), "{got:?}");
    let expected: Vec<i64> = (140 - hot.len() as i64..140).collect();
    assert_eq!(hot, &expected[..]);
    assert_eq!(got.last(), Some(&1));
    assert_eq!(
        seq_of(&reset["to"]) + 1,
        seq_of(&msgs[0]["pos"]),
        "the reset ends right before the oldest hot message kept"
    );

    // REST history says the same.
    let path = format!("/api/v1/history?filter=w/%23&since={last}&limit=100");
    let (status, body) = e2e_tests::http::get_json(gw.http_addr(), &path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resets"][0]["channel"], "w/hot", "{body}");
    assert_eq!(body["messages"].as_array().map(Vec::len), Some(msgs.len()));
    gw.stop().await;
}
