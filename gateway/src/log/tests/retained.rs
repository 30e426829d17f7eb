//! The retained table: set, replace, delete by empty payload, filters, expiry, reopen.

use super::*;
use crate::log::MessageLog;

#[tokio::test]
async fn retained_is_set_replaced_and_deleted_by_an_empty_retained_message() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut feed) = open(dir.path(), default_rules());
    log.append(retained_msg("home/lamp", "on"), None)
        .await
        .unwrap();
    assert_eq!(payloads(&log.retained("home/lamp").unwrap()), vec!["on"]);
    log.append(retained_msg("home/lamp", "off"), None)
        .await
        .unwrap();
    log.append(retained_msg("home/door", "shut"), None)
        .await
        .unwrap();
    let mut got = payloads(&log.retained("home/+").unwrap());
    got.sort();
    assert_eq!(got, vec!["off", "shut"]);

    let del = log
        .append(retained_msg("home/lamp", ""), None)
        .await
        .unwrap()
        .position();
    assert_eq!(payloads(&log.retained("#").unwrap()), vec!["shut"]);
    // The empty message took a position and was released, but is not history.
    assert_eq!(log.released(), del.seq);
    assert!(log.read(del.seq, 10).unwrap().is_empty());
    assert_eq!(
        payloads(&log.read(0, 10).unwrap()),
        vec!["on", "off", "shut"]
    );
    let mut fed = Vec::new();
    while let Ok(batch) = feed.try_recv() {
        fed.extend(seqs(&batch));
    }
    assert_eq!(fed.last(), Some(&del.seq));
    // Retention of history does not touch the retained copy.
    log.close().await;
    drop(log);

    let (log, _feed) = open(dir.path(), default_rules());
    let r = log.retained("home/#").unwrap();
    assert_eq!(payloads(&r), vec!["shut"]);
    assert!(r[0].msg.retain);
    assert!(log.retained("home/lamp").unwrap().is_empty());
}

#[tokio::test]
async fn expired_retained_messages_are_not_served_and_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), default_rules());
    let mut old = retained_msg("s/old", "stale");
    old.props.message_expiry_interval = Some(5);
    old.ts_ms -= 10_000;
    let mut fresh = retained_msg("s/new", "fresh");
    fresh.props.message_expiry_interval = Some(3600);
    log.append(old, None).await.unwrap();
    log.append(fresh, None).await.unwrap();
    assert_eq!(payloads(&log.retained("s/#").unwrap()), vec!["fresh"]);
    let r = log.sweep(crate::core::message::now_ms()).await.unwrap();
    assert_eq!(r.retained_expired, 1);
    assert_eq!(payloads(&log.retained("s/#").unwrap()), vec!["fresh"]);
}

#[tokio::test]
async fn retained_filters_respect_levels_and_dollar_topics() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), default_rules());
    for t in ["a", "a/b", "ab", "$SYS/x"] {
        log.append(retained_msg(t, t), None).await.unwrap();
    }
    let mut all = payloads(&log.retained("#").unwrap());
    all.sort();
    assert_eq!(all, vec!["a", "a/b", "ab"]);
    let mut under_a = payloads(&log.retained("a/#").unwrap());
    under_a.sort();
    assert_eq!(under_a, vec!["a", "a/b"]);
    assert_eq!(payloads(&log.retained("$SYS/+").unwrap()), vec!["$SYS/x"]);
}
