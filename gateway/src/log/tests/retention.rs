//! History retention by count (as messages are written) and by age (the sweep), and
//! `first_seq` after eviction.

use super::*;
use crate::core::namespace::HistoryPolicy;
use crate::log::MessageLog;
use crate::log::retention::count_slack;

fn policy(max_messages: u64, max_age_s: Option<u64>) -> HistoryPolicy {
    HistoryPolicy {
        max_messages,
        max_age: max_age_s.map(Duration::from_secs),
        store_qos0: true,
    }
}

#[tokio::test]
async fn count_is_enforced_as_messages_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), rules_with("small/#", policy(5, None)));
    let mut small = Vec::new();
    for i in 0..12 {
        small.push(
            log.append(msg("small/x", QoS::AtLeastOnce, &i.to_string()), None)
                .await
                .unwrap()
                .position()
                .seq,
        );
        log.append(msg("big", QoS::AtLeastOnce, &i.to_string()), None)
            .await
            .unwrap();
    }
    let kept = log.read_channel("small/x", 0, 100).unwrap();
    assert_newest(&payloads(&kept), 12, 5);
    assert_eq!(log.read_channel("big", 0, 100).unwrap().len(), 12);
    // The oldest entry left is the first `big` message; then `big` is trimmed too.
    assert_eq!(log.first_seq(), small[0] + 1);
    log.close().await;
    drop(log);

    // The per-channel count is rebuilt at open and keeps being enforced.
    let (log, _feed) = open(dir.path(), rules_with("small/#", policy(5, None)));
    log.append(msg("small/x", QoS::AtLeastOnce, "12"), None)
        .await
        .unwrap();
    let kept = log.read_channel("small/x", 0, 100).unwrap();
    assert_newest(&payloads(&kept), 13, 5);
    // Written one at a time, a channel never holds more than its limit plus the slack.
    for i in 13..40 {
        log.append(msg("small/x", QoS::AtLeastOnce, &i.to_string()), None)
            .await
            .unwrap();
        let kept = log.read_channel("small/x", 0, 100).unwrap();
        assert_newest(&payloads(&kept), i + 1, 5);
    }
}

/// Asserts that `kept` holds the newest of the payloads `0..written`, in order, and between
/// `max` and `max` plus the count slack of them.
fn assert_newest(kept: &[String], written: u32, max: u64) {
    let n = kept.len() as u64;
    assert!(
        (max..=max + count_slack(max)).contains(&n),
        "{n} entries kept with a limit of {max}: {kept:?}"
    );
    let expected: Vec<String> = (written - n as u32..written)
        .map(|i| i.to_string())
        .collect();
    assert_eq!(kept, expected);
}

#[tokio::test]
async fn a_batch_larger_than_the_limit_is_trimmed_by_the_next_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), rules_with("c", policy(3, None)));
    let futs: Vec<_> = (0..10)
        .map(|i| log.submit(msg("c", QoS::AtLeastOnce, &i.to_string()), None))
        .collect();
    let mut last = 0;
    for f in futs {
        last = f.await.unwrap().position().seq;
    }
    let r = log.sweep(crate::core::message::now_ms()).await.unwrap();
    assert_eq!(r.evicted, 7);
    assert_eq!(
        payloads(&log.read_channel("c", 0, 100).unwrap()),
        vec!["7", "8", "9"]
    );
    assert_eq!(log.first_seq(), last - 2);
}

#[tokio::test]
async fn age_is_enforced_by_the_sweep_at_the_time_given() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), rules_with("aged/#", policy(1000, Some(60))));
    let t0 = 1_700_000_000_000u64;
    let mut seqs_by_age = Vec::new();
    for (i, age_s) in [100u64, 90, 30, 10].iter().enumerate() {
        let mut m = msg("aged/x", QoS::AtLeastOnce, &i.to_string());
        m.ts_ms = t0 - age_s * 1000;
        seqs_by_age.push(log.append(m, None).await.unwrap().position().seq);
    }
    let mut forever = msg("other", QoS::AtLeastOnce, "keep");
    forever.ts_ms = t0 - 10_000_000;
    let keep = log.append(forever, None).await.unwrap().position().seq;

    let r = log.sweep(t0).await.unwrap();
    assert_eq!(r.evicted, 2);
    assert_eq!(
        payloads(&log.read_channel("aged/x", 0, 10).unwrap()),
        vec!["2", "3"]
    );
    assert_eq!(log.first_seq(), seqs_by_age[2]);

    let r = log.sweep(t0 + 3_600_000).await.unwrap();
    assert_eq!(r.evicted, 2);
    assert!(log.read_channel("aged/x", 0, 10).unwrap().is_empty());
    // Only the channel without an age limit is left.
    assert_eq!(log.first_seq(), keep);
    assert_eq!(seqs(&log.read(0, 10).unwrap()), vec![keep]);
}

#[tokio::test]
async fn first_seq_is_released_plus_one_once_history_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), rules_with("#", policy(1000, Some(1))));
    let mut m = msg("gone", QoS::AtLeastOnce, "x");
    m.ts_ms = 1_000;
    let p = log.append(m, None).await.unwrap().position();
    assert_eq!(log.first_seq(), p.seq);
    log.sweep(1_000_000).await.unwrap();
    assert_eq!(log.first_seq(), log.released() + 1);
    assert!(log.read(0, 10).unwrap().is_empty());
}

#[tokio::test]
async fn trim_marks_name_the_channels_that_lost_messages_after_a_position() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), rules_with("hot/#", policy(5, None)));
    let quiet = log
        .append(msg("quiet", QoS::AtLeastOnce, "q0"), None)
        .await
        .unwrap()
        .position()
        .seq;
    let generation = log.trim_generation();
    assert!(log.trimmed_after("#", 0).is_empty());
    let mut hot = Vec::new();
    for i in 0..20 {
        hot.push(
            log.append(msg("hot/a", QoS::AtLeastOnce, &i.to_string()), None)
                .await
                .unwrap()
                .position()
                .seq,
        );
    }
    log.append(msg("hot/b", QoS::AtLeastOnce, "b"), None)
        .await
        .unwrap();
    // The quiet channel keeps the log's lowest sequence number where it was.
    assert_eq!(log.first_seq(), quiet);
    assert_ne!(log.trim_generation(), generation, "retention ran");
    let head = log.read_channel("hot/a", 0, 1).unwrap()[0].pos.seq;
    let marks = log.trimmed_after("#", quiet);
    assert_eq!(marks, vec![("hot/a".to_owned(), head - 1)]);
    assert_eq!(log.trimmed_after("hot/+", quiet), marks);
    assert_eq!(log.trimmed_after("hot/a", quiet), marks);
    assert!(log.trimmed_after("hot/b", 0).is_empty());
    assert!(log.trimmed_after("quiet", 0).is_empty());
    // A reader already past the mark lost nothing.
    assert!(log.trimmed_after("#", head - 1).is_empty());
    log.close().await;
    drop(log);

    // Marks survive a restart.
    let (log, _feed) = open(dir.path(), rules_with("hot/#", policy(5, None)));
    assert_eq!(log.trimmed_after("#", quiet), marks);
    // Once retention has passed them globally, the sweep drops them: `first_seq` covers it.
    log.close().await;
    drop(log);
    let (log, _feed) = open(dir.path(), rules_with("#", policy(5, Some(1))));
    let later = crate::core::message::now_ms() + 86_400_000;
    log.sweep(later).await.unwrap();
    assert_eq!(log.first_seq(), log.released() + 1, "everything aged out");
    assert_eq!(log.trimmed_after("#", 0).len(), 3, "quiet, hot/a and hot/b");
    log.append(msg("fresh", QoS::AtLeastOnce, "f"), None)
        .await
        .unwrap();
    log.sweep(crate::core::message::now_ms()).await.unwrap();
    assert!(log.trimmed_after("#", 0).is_empty());
}
