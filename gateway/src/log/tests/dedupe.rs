//! De-duplication keys: within a batch, across batches, across reopen, forgetting and TTL.

use super::*;
use crate::log::{Appended, DedupeKey, MessageLog};

fn key(s: &str) -> Option<DedupeKey> {
    Some(DedupeKey(s.as_bytes().to_vec()))
}

#[tokio::test]
async fn a_known_key_returns_the_first_position_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), default_rules());
    let first = log
        .append(msg("d", QoS::ExactlyOnce, "one"), key("k1"))
        .await
        .unwrap();
    let Appended::New(p) = first else {
        panic!("first append was {first:?}")
    };
    let again = log
        .append(msg("d", QoS::ExactlyOnce, "one-retry"), key("k1"))
        .await
        .unwrap();
    assert_eq!(again, Appended::Duplicate(p));
    assert_eq!(payloads(&log.read(0, 10).unwrap()), vec!["one"]);
}

#[tokio::test]
async fn the_same_key_twice_in_one_batch_is_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), default_rules());
    // Both are queued before the writer runs, so they share a batch.
    let a = log.submit(msg("d", QoS::ExactlyOnce, "a"), key("same"));
    let b = log.submit(msg("d", QoS::ExactlyOnce, "b"), key("same"));
    let c = log.submit(msg("d", QoS::ExactlyOnce, "c"), key("other"));
    let (a, b, c) = (a.await.unwrap(), b.await.unwrap(), c.await.unwrap());
    let Appended::New(pa) = a else {
        panic!("first was {a:?}")
    };
    assert_eq!(b, Appended::Duplicate(pa));
    assert!(matches!(c, Appended::New(_)));
    assert_eq!(payloads(&log.read(0, 10).unwrap()), vec!["a", "c"]);
}

#[tokio::test]
async fn keys_survive_reopen_until_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), default_rules());
    let p = log
        .append(msg("d", QoS::ExactlyOnce, "x"), key("mqtt:c1:7"))
        .await
        .unwrap()
        .position();
    log.close().await;
    drop(log);

    let (log, _feed) = open(dir.path(), default_rules());
    let again = log
        .append(msg("d", QoS::ExactlyOnce, "x"), key("mqtt:c1:7"))
        .await
        .unwrap();
    assert_eq!(again, Appended::Duplicate(p));
    log.forget_dedupe(DedupeKey(b"mqtt:c1:7".to_vec()))
        .await
        .unwrap();
    log.close().await;
    drop(log);

    let (log, _feed) = open(dir.path(), default_rules());
    let fresh = log
        .append(msg("d", QoS::ExactlyOnce, "y"), key("mqtt:c1:7"))
        .await
        .unwrap();
    assert!(
        matches!(fresh, Appended::New(q) if q.seq > p.seq),
        "{fresh:?}"
    );
}

#[tokio::test]
async fn forget_then_reuse_in_one_batch_keeps_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), default_rules());
    log.append(msg("d", QoS::ExactlyOnce, "old"), key("k"))
        .await
        .unwrap();
    // `join!` polls in order, so the forget is queued first and the append right behind it,
    // before the writer gets to run: one batch.
    let forget = log.forget_dedupe(DedupeKey(b"k".to_vec()));
    let new = async {
        log.submit(msg("d", QoS::ExactlyOnce, "new"), key("k"))
            .await
    };
    let (forgot, new) = tokio::join!(forget, new);
    forgot.unwrap();
    let Appended::New(p) = new.unwrap() else {
        panic!("reused key was not new")
    };
    log.close().await;
    drop(log);

    let (log, _feed) = open(dir.path(), default_rules());
    let again = log
        .append(msg("d", QoS::ExactlyOnce, "retry"), key("k"))
        .await
        .unwrap();
    assert_eq!(again, Appended::Duplicate(p));
}

#[tokio::test]
async fn keys_older_than_the_ttl_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), default_rules());
    log.append(msg("d", QoS::AtLeastOnce, "x"), key("ws:m1"))
        .await
        .unwrap();
    let now = crate::core::message::now_ms();
    // Within the TTL nothing is forgotten.
    let r = log.sweep(now + 60_000).await.unwrap();
    assert_eq!(r.dedupe_expired, 0);
    assert!(matches!(
        log.append(msg("d", QoS::AtLeastOnce, "x"), key("ws:m1"))
            .await
            .unwrap(),
        Appended::Duplicate(_)
    ));
    let ttl_ms = LogOptions::default().dedupe_ttl.as_millis() as u64;
    let r = log.sweep(now + ttl_ms + 60_000).await.unwrap();
    assert_eq!(r.dedupe_expired, 1);
    assert!(matches!(
        log.append(msg("d", QoS::AtLeastOnce, "x"), key("ws:m1"))
            .await
            .unwrap(),
        Appended::New(_)
    ));
}
