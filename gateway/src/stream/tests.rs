//! The engine against a real log and broker: retention overtaking a stream while it catches
//! up is reported, never silent.
// A failed unwrap here is a failed test, with the error in its message.
#![allow(clippy::unwrap_used)]

use super::{Event, Start, Stream, StreamHub, SubscribeSpec};
use crate::broker::Broker;
use crate::config::Config;
use crate::core::namespace::{HistoryPolicy, NamespaceRule, NamespaceRules};
use crate::core::{Message, MessageProps, QoS};
use crate::log::{EmbeddedLog, LogOptions, MessageLog};
use std::collections::BTreeSet;
use std::sync::Arc;

fn msg(topic: &str, n: u32) -> Message {
    Message {
        topic: topic.into(),
        payload: bytes::Bytes::from(n.to_string()),
        qos: QoS::AtLeastOnce,
        retain: false,
        props: MessageProps::default(),
        ts_ms: crate::core::message::now_ms(),
        origin: None,
    }
}

#[tokio::test]
async fn retention_overtaking_catch_up_is_a_reset_for_that_channel_only() {
    let dir = tempfile::tempdir().unwrap();
    let hot = HistoryPolicy {
        max_messages: 4,
        ..HistoryPolicy::default()
    };
    let rule = NamespaceRule {
        name: "hot".into(),
        filter: "w/hot".into(),
        history: hot,
    };
    let rules = Arc::new(NamespaceRules::new(vec![rule], HistoryPolicy::default()));
    let (log, feed) = EmbeddedLog::open(dir.path(), rules, LogOptions::default()).unwrap();
    let dyn_log: Arc<dyn MessageLog> = log.clone();
    let broker = Broker::start(dyn_log, feed, Config::default().mqtt);
    let hub = StreamHub::start(broker, &Config::default());

    let mut seqs: Vec<(String, u64)> = Vec::new();
    let mut append = async |topic: &str, n: u32| {
        let seq = log
            .append(msg(topic, n), None)
            .await
            .unwrap()
            .position()
            .seq;
        seqs.push((topic.to_owned(), seq));
    };
    append("w/quiet", 0).await;
    for n in 0..3 {
        append("w/hot", n).await;
    }
    let mut stream = Stream::new(hub.clone());
    stream
        .subscribe(&SubscribeSpec {
            filter: "w/#".into(),
            start: Start::Rewind(100),
            retained: false,
            qos: QoS::AtLeastOnce,
        })
        .unwrap();
    // The stream is catching up and has taken two messages when the hot channel overflows.
    let mut events = stream.next_events(2).unwrap();
    assert_eq!(events.len(), 2);
    for n in 3..30 {
        append("w/hot", n).await;
    }
    append("w/quiet", 1).await;
    for _ in 0..100 {
        if !stream.has_pending() {
            break;
        }
        events.extend(stream.next_events(3).unwrap());
    }

    let mut delivered = BTreeSet::new();
    let mut lost: Vec<(Option<String>, u64, u64)> = Vec::new();
    for e in &events {
        match e {
            Event::Msg { msg, .. } => {
                assert!(
                    delivered.insert(msg.pos.seq),
                    "delivered twice: {}",
                    msg.pos
                );
            }
            Event::Reset(r) => {
                assert_eq!(r.reason, "retention");
                lost.push((r.channel.clone(), r.from.seq, r.to.unwrap().seq));
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert!(
        !lost.is_empty(),
        "retention overtook the stream: a reset is due"
    );
    for (topic, seq) in &seqs {
        let covered = lost.iter().any(|(c, from, to)| {
            c.as_deref().is_none_or(|c| c == topic) && (*from..=*to).contains(seq)
        });
        assert!(
            delivered.contains(seq) || covered,
            "{topic} #{seq} neither delivered nor named by a reset: {lost:?}"
        );
        if topic == "w/quiet" {
            assert!(delivered.contains(seq), "the quiet channel loses nothing");
        }
    }
    assert!(
        lost.iter().all(|(c, _, _)| c.as_deref() == Some("w/hot")),
        "{lost:?}"
    );
    let order: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Msg { msg, .. } => Some(msg.pos.seq),
            _ => None,
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in order: {order:?}");
    drop(stream);
    log.close().await;
}
