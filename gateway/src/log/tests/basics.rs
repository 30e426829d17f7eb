//! Epoch, reopening, sessions, format versioning, visibility and closing.

use super::*;
use crate::core::namespace::HistoryPolicy;
use crate::log::block::{BlockBuilder, ChanEntry, ChanItem};
use crate::log::store::{self, META_FORMAT, Store};
use crate::log::{LogError, MessageLog, keys};

#[tokio::test]
async fn epoch_is_stable_across_reopen_and_new_for_a_new_dir() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let (log, _feed) = open(d1.path(), default_rules());
    let e1 = log.epoch();
    assert_ne!(e1, 0);
    log.close().await;
    drop(log);
    let (log, _feed) = open(d1.path(), default_rules());
    assert_eq!(log.epoch(), e1);
    let (other, _feed2) = open(d2.path(), default_rules());
    assert_ne!(other.epoch(), e1);
}

#[tokio::test]
async fn after_reopen_seqs_continue_above_everything_released() {
    let dir = tempfile::tempdir().unwrap();
    // QoS 0 messages on `live/#` are not stored, so the store's last key is not the answer.
    let no_qos0 = HistoryPolicy {
        store_qos0: false,
        ..Default::default()
    };
    let rules = rules_with("live/#", no_qos0);
    let (log, _feed) = open(dir.path(), rules.clone());
    log.append(msg("kept", QoS::AtLeastOnce, "a"), None)
        .await
        .unwrap();
    let mut last = 0;
    for i in 0..20 {
        last = log
            .append(msg("live/x", QoS::AtMostOnce, &i.to_string()), None)
            .await
            .unwrap()
            .position()
            .seq;
    }
    assert_eq!(log.released(), last);
    log.close().await;
    drop(log);

    let (log, _feed) = open(dir.path(), rules);
    assert!(log.released() >= last);
    let next = log
        .append(msg("kept", QoS::AtMostOnce, "b"), None)
        .await
        .unwrap()
        .position()
        .seq;
    assert!(next > last, "seq {next} reused at or below {last}");
    // History still reads in order across the restart gap.
    assert_eq!(payloads(&log.read(0, 100).unwrap()), vec!["a", "b"]);
}

#[tokio::test]
async fn sessions_are_stored_listed_deleted_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), default_rules());
    log.session_store("dev-1", b"one".to_vec()).await.unwrap();
    log.session_store("dev-2", b"two".to_vec()).await.unwrap();
    log.session_store("dev-1", b"one-v2".to_vec())
        .await
        .unwrap();
    log.session_store("dev-3", b"three".to_vec()).await.unwrap();
    log.session_delete("dev-3").await.unwrap();
    assert_eq!(log.session_load("dev-1").unwrap(), Some(b"one-v2".to_vec()));
    assert_eq!(log.session_load("dev-3").unwrap(), None);
    log.close().await;
    drop(log);

    let (log, _feed) = open(dir.path(), default_rules());
    let mut list = log.session_list().unwrap();
    list.sort();
    assert_eq!(
        list,
        vec![
            ("dev-1".to_string(), b"one-v2".to_vec()),
            ("dev-2".to_string(), b"two".to_vec())
        ]
    );
}

#[tokio::test]
async fn an_unknown_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), default_rules());
    log.close().await;
    drop(log);
    {
        let s = Store::open(dir.path()).unwrap();
        s.meta
            .insert(META_FORMAT, store::encode(&99u32).unwrap())
            .unwrap();
    }
    match EmbeddedLog::open(dir.path(), default_rules(), LogOptions::default()) {
        Err(LogError::Incompatible(m)) => assert!(m.contains("99"), "{m}"),
        Err(e) => panic!("expected Incompatible, got {e}"),
        Ok(_) => panic!("expected Incompatible, got an open log"),
    }
}

#[tokio::test]
async fn reads_never_return_unreleased_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), default_rules());
    let mut first = retained_msg("t", "released");
    first.retain = true;
    let p = log.append(first, None).await.unwrap().position();
    // Put an entry in the store behind the writer's back, as a commit not yet released would
    // be: above `released`, it must stay invisible to every read.
    let hidden = p.seq + 1;
    let m = retained_msg("t", "hidden");
    let sm = StoredMessage {
        pos: crate::core::Position {
            epoch: log.epoch(),
            seq: hidden,
        },
        msg: m.clone(),
        wire: Default::default(),
    };
    let mut block = BlockBuilder::default();
    block.push(hidden, &m).unwrap();
    log.store
        .msgs
        .insert(keys::seq_key(hidden), block.finish())
        .unwrap();
    let entry = ChanEntry {
        block: hidden,
        items: vec![ChanItem {
            seq: hidden,
            ts_ms: m.ts_ms,
        }],
    };
    log.store
        .chan
        .insert(keys::chan_key("t", hidden), store::encode(&entry).unwrap())
        .unwrap();
    log.store
        .retained
        .insert("t", store::encode(&sm).unwrap())
        .unwrap();

    assert_eq!(log.released(), p.seq);
    assert_eq!(seqs(&log.read(0, 10).unwrap()), vec![p.seq]);
    assert_eq!(seqs(&log.read_channel("t", 0, 10).unwrap()), vec![p.seq]);
    assert!(
        log.retained("t").unwrap().is_empty(),
        "an unreleased retained copy was served"
    );
}

#[tokio::test]
async fn close_drains_queued_writes_then_refuses_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), default_rules());
    let pending: Vec<_> = (0..50)
        .map(|i| log.submit(msg("c", QoS::AtLeastOnce, &i.to_string()), None))
        .collect();
    log.close().await;
    for p in pending {
        assert!(matches!(p.await, Ok(crate::log::Appended::New(_))));
    }
    assert!(matches!(
        log.append(msg("c", QoS::AtLeastOnce, "late"), None).await,
        Err(LogError::Closed)
    ));
    assert!(matches!(log.flush().await, Err(LogError::Closed)));
    assert_eq!(log.read(0, 100).unwrap().len(), 50);
}
