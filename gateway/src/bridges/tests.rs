//! Tests of the bridge source and sink over a real embedded log.

use super::{LogSink, LogSource};
use crate::broker::Broker;
use crate::config::MqttConfig;
use crate::core::message::now_ms;
use crate::core::namespace::NamespaceRules;
use crate::core::topic::TopicLimits;
use crate::core::{Message, MessageProps, QoS};
use crate::log::{EmbeddedLog, LogOptions, MessageLog};
use bridge::{Accepted, BridgeMessage, BridgeSink, BridgeSource, Props, SinkError};
use std::sync::Arc;
use std::time::Duration;

struct Fixture {
    log: Arc<EmbeddedLog>,
    broker: Arc<Broker>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let rules = Arc::new(NamespaceRules::new(Vec::new(), Default::default()));
    let (log, feed) = EmbeddedLog::open(dir.path(), rules, LogOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let dyn_log: Arc<dyn MessageLog> = log.clone();
    let broker = Broker::start(dyn_log, feed, MqttConfig::default());
    Fixture {
        log,
        broker,
        _dir: dir,
    }
}

fn msg(topic: &str, expiry: Option<u32>, ts_ms: u64) -> Message {
    Message {
        topic: topic.into(),
        payload: bytes::Bytes::from_static(b"p"),
        qos: QoS::AtLeastOnce,
        retain: false,
        props: MessageProps {
            message_expiry_interval: expiry,
            ..MessageProps::default()
        },
        ts_ms,
        origin: None,
    }
}

impl Fixture {
    fn source(&self, filters: &[&str]) -> LogSource {
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        LogSource::new(
            "b",
            &filters,
            self.log.clone(),
            &self.broker,
            &TopicLimits::default(),
        )
    }

    async fn append(&self, m: Message) -> u64 {
        match self.log.append(m, None).await {
            Ok(a) => a.position().seq,
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn source_reads_matching_unexpired_messages_and_passes_the_rest() {
    let f = fixture();
    let src = f.source(&["a/#"]);
    assert_eq!(src.committed(), Ok(None));
    let s1 = f.append(msg("a/1", None, now_ms())).await;
    f.append(msg("b/1", None, now_ms())).await;
    // Published ten seconds ago with one second to live: expired.
    f.append(msg("a/old", Some(1), now_ms() - 10_000)).await;
    let s4 = f.append(msg("a/2", Some(60), now_ms())).await;
    let batch = src.read(s1, 100).unwrap_or_else(|e| panic!("{e}"));
    let seqs: Vec<u64> = batch.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![s1, s4]);
    assert_eq!(batch.next, s4 + 1);
    assert_eq!(batch.missing, 0);
    let expiry = batch.messages[1].msg.props.message_expiry_interval;
    assert!(expiry.is_some_and(|e| e > 0 && e <= 60), "{expiry:?}");
    assert_eq!(src.head(), s4 + 1);

    // A short read covers only what it returned.
    let batch = src.read(s1, 1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(batch.next, s1 + 1);
    // Nothing new: no progress.
    let batch = src.read(s4 + 1, 10).unwrap_or_else(|e| panic!("{e}"));
    assert!(batch.messages.is_empty());
    assert_eq!(batch.next, s4 + 1);
}

#[tokio::test]
async fn source_cursor_is_durable_and_tied_to_the_store() {
    let f = fixture();
    let src = f.source(&["#"]);
    src.commit(42).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(src.committed(), Ok(Some(42)));
    let other = LogSource::new(
        "other",
        &[],
        f.log.clone(),
        &f.broker,
        &TopicLimits::default(),
    );
    assert_eq!(
        other.committed(),
        Ok(None),
        "each bridge has its own cursor"
    );
}

#[tokio::test]
async fn source_wakes_for_a_matching_message() {
    let f = fixture();
    let src = Arc::new(f.source(&["a/#"]));
    let from = src.head();
    let waiter = {
        let src = src.clone();
        tokio::spawn(async move { src.wait(from).await })
    };
    f.append(msg("a/1", None, now_ms())).await;
    // Well under the idle wake-up: the outbox signal ends the wait.
    tokio::time::timeout(Duration::from_millis(900), waiter)
        .await
        .unwrap_or_else(|_| panic!("no wake-up"))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn sink_stores_deduplicates_and_refuses_bad_topics() {
    let f = fixture();
    let sink = LogSink::new("b", f.log.clone(), TopicLimits::default());
    let m = |topic: &str| BridgeMessage {
        topic: topic.into(),
        payload: bytes::Bytes::from_static(b"x"),
        qos: bridge::QoS::ExactlyOnce,
        retain: false,
        props: Props::default(),
        origin: Some("bridge:b".into()),
    };
    let key = b"bridge\0b\0k".to_vec();
    assert_eq!(
        sink.submit(m("in/1"), Some(key.clone())).await,
        Ok(Accepted::New)
    );
    assert_eq!(
        sink.submit(m("in/1"), Some(key.clone())).await,
        Ok(Accepted::Duplicate)
    );
    sink.forget(key.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sink.submit(m("in/2"), Some(key)).await, Ok(Accepted::New));
    assert!(matches!(
        sink.submit(m("in/+"), None).await,
        Err(SinkError::Rejected(_))
    ));
    let stored = f.log.read(1, 10).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].msg.origin.as_deref(), Some("bridge:b"));

    assert_eq!(sink.load_session(), Ok(None));
    sink.store_session(vec![1, 2, 3])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sink.load_session(), Ok(Some(vec![1, 2, 3])));
}
