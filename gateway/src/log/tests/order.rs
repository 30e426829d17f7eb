//! Sequencing, release order and group commit.

use super::*;
use crate::log::MessageLog;
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders_get_strictly_increasing_seqs_released_in_order() {
    const PRODUCERS: usize = 8;
    const EACH: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let (log, mut feed) = open(dir.path(), default_rules());

    let checker = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while seen.len() < PRODUCERS * EACH {
                let Some(batch) = feed.recv().await else {
                    break;
                };
                assert!(!batch.is_empty());
                let last = batch[batch.len() - 1].pos.seq;
                assert!(
                    log.released() >= last,
                    "batch handed over before `released` was raised"
                );
                seen.extend(batch.iter().map(|m| m.pos.seq));
            }
            seen
        })
    };
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..EACH {
                let qos = if i % 3 == 0 {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                };
                let m = msg(&format!("p/{p}"), qos, &format!("{p}-{i}"));
                mine.push(log.append(m, None).await.unwrap().position().seq);
            }
            mine
        }));
    }
    let mut all = HashSet::new();
    for t in tasks {
        let mine = within(t).await.unwrap();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "a producer's seqs went backwards"
        );
        all.extend(mine);
    }
    assert_eq!(all.len(), PRODUCERS * EACH, "a seq was handed out twice");

    let fed = within(checker).await.unwrap();
    assert!(
        fed.windows(2).all(|w| w[0] < w[1]),
        "feed out of order or repeated"
    );
    assert_eq!(fed.iter().copied().collect::<HashSet<_>>(), all);

    let history = log.read(0, 10_000).unwrap();
    assert_eq!(seqs(&history), fed);
    // Per channel, history is that producer's messages in the order it sent them.
    let p3: Vec<String> = (0..EACH).map(|i| format!("3-{i}")).collect();
    assert_eq!(payloads(&log.read_channel("p/3", 0, 10_000).unwrap()), p3);
}

#[tokio::test]
async fn group_commit_shares_one_fsync_and_qos0_does_not_wait_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), default_rules());
    // Serial reliable appends: one fsync each (the counter really counts).
    let before = log.fsync_count();
    for i in 0..5 {
        log.append(msg("g", QoS::AtLeastOnce, &i.to_string()), None)
            .await
            .unwrap();
    }
    assert_eq!(log.fsync_count() - before, 5);

    // 500 reliable appends queued together: far fewer fsyncs than appends.
    let before = log.fsync_count();
    let pending: Vec<_> = (0..500)
        .map(|i| log.submit(msg("g", QoS::ExactlyOnce, &i.to_string()), None))
        .collect();
    for p in pending {
        within(p).await.unwrap();
    }
    let used = log.fsync_count() - before;
    assert!(
        used <= 5,
        "{used} fsyncs for 500 queued appends: no group commit"
    );

    // QoS 0 appends are sequenced and released without any fsync.
    let before = log.fsync_count();
    for i in 0..20 {
        log.append(msg("g", QoS::AtMostOnce, &i.to_string()), None)
            .await
            .unwrap();
    }
    assert_eq!(log.fsync_count(), before);
    assert_eq!(log.read(0, 1000).unwrap().len(), 525);
}

#[tokio::test]
async fn submit_sequences_in_call_order_before_being_awaited() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), default_rules());
    let futs: Vec<_> = (0..100)
        .map(|i| log.submit(msg("s", QoS::AtLeastOnce, &i.to_string()), None))
        .collect();
    let mut got = Vec::new();
    // Await in reverse: order is fixed at submit time, not at await time.
    for f in futs.into_iter().rev() {
        got.push(f.await.unwrap().position().seq);
    }
    got.reverse();
    assert!(got.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn flush_is_durable_and_first_seq_tracks_history() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), default_rules());
    assert_eq!(log.released(), 0);
    assert_eq!(log.first_seq(), 1);
    let p = log
        .append(msg("f", QoS::AtMostOnce, "x"), None)
        .await
        .unwrap()
        .position();
    let before = log.fsync_count();
    log.flush().await.unwrap();
    assert_eq!(log.fsync_count(), before + 1);
    assert_eq!(log.first_seq(), p.seq);
    assert_eq!(log.read(p.seq + 1, 10).unwrap().len(), 0);
}

#[test]
fn only_small_qos0_batches_under_the_reservation_skip_the_blocking_thread() {
    use crate::log::DedupeKey;
    use crate::log::batch::without_sync;
    use crate::log::state::WriterState;
    use crate::log::store::Store;
    use crate::log::writer::{AppendReply, Done, Request};

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut state = WriterState::load(store, default_rules(), 60_000).unwrap();
    let append = |qos, dedupe: Option<&str>| Request::Append {
        msg: Box::new(msg("a", qos, "x")),
        dedupe: dedupe.map(|k| DedupeKey(k.as_bytes().to_vec())),
        reply: AppendReply::Once(tokio::sync::oneshot::channel().0),
    };
    let flush = || Request::Flush {
        reply: Done::Once(tokio::sync::oneshot::channel().0),
    };

    // A fresh store has reserved nothing yet: its first batch makes the mark durable.
    assert_eq!(state.reserved, 0);
    assert!(!without_sync(&state, &[append(QoS::AtMostOnce, None)]));
    state.reserved = state.last_seq() + 100;

    assert!(without_sync(&state, &[append(QoS::AtMostOnce, None)]));
    assert!(without_sync(
        &state,
        &[append(QoS::AtMostOnce, None), append(QoS::AtMostOnce, None)]
    ));
    assert!(!without_sync(
        &state,
        &[
            append(QoS::AtMostOnce, None),
            append(QoS::AtLeastOnce, None)
        ]
    ));
    assert!(!without_sync(&state, &[append(QoS::ExactlyOnce, None)]));
    assert!(!without_sync(&state, &[append(QoS::AtMostOnce, Some("k"))]));
    assert!(!without_sync(
        &state,
        &[append(QoS::AtMostOnce, None), flush()]
    ));
    // Sequence numbers about to pass the reserved mark: the raised mark is fsynced.
    state.reserved = state.last_seq() + 1;
    assert!(without_sync(&state, &[append(QoS::AtMostOnce, None)]));
    assert!(!without_sync(
        &state,
        &[append(QoS::AtMostOnce, None), append(QoS::AtMostOnce, None)]
    ));
}

#[tokio::test]
async fn queued_submissions_answer_in_order_with_their_tags_and_closed_once_the_log_stops() {
    use crate::log::{AnswerQueue, DedupeKey, LogError};
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), default_rules());
    let mut answers = AnswerQueue::default();
    let key = || DedupeKey(b"c\0 7".to_vec());
    // QoS 0 and 1 interleaved, a QoS 2 retry that is a duplicate, and the key forgotten.
    for tag in 0..300u64 {
        let qos = if tag % 2 == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        log.submit_queued(msg("q/a", qos, &tag.to_string()), None, answers.ticket(tag));
    }
    let qos2 = || msg("q/b", QoS::ExactlyOnce, "once");
    log.submit_queued(qos2(), Some(key()), answers.ticket(300));
    log.submit_queued(qos2(), Some(key()), answers.ticket(301));
    log.forget_dedupe_queued(key(), answers.ticket(302));

    let mut got = Vec::new();
    while got.len() < 303 {
        within(answers.recv_many(&mut got, 1000)).await;
    }
    let tags: Vec<u64> = got.iter().map(|a| a.tag).collect();
    assert_eq!(tags, (0..303).collect::<Vec<_>>(), "answers out of order");
    assert!(got.iter().all(|a| a.result.is_ok()), "{got:?}");
    // 300 messages plus one QoS 2 message: the retry was not stored again.
    let stored = log.read(0, 1000).unwrap();
    assert_eq!(stored.len(), 301);
    assert_eq!(payloads(&stored[300..]), ["once"]);

    log.close().await;
    log.submit_queued(
        msg("q/a", QoS::AtLeastOnce, "late"),
        None,
        answers.ticket(7),
    );
    log.forget_dedupe_queued(key(), answers.ticket(8));
    let mut late = Vec::new();
    while late.len() < 2 {
        within(answers.recv_many(&mut late, 10)).await;
    }
    let closed: Vec<_> = late
        .iter()
        .map(|a| (a.tag, matches!(a.result, Err(LogError::Closed))))
        .collect();
    assert_eq!(closed, [(7, true), (8, true)]);
}

#[tokio::test]
async fn counted_submissions_are_written_in_order_and_uncounted_even_once_the_log_stops() {
    use crate::log::Backlog;
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), default_rules());
    let backlog = Backlog::new(100);
    for i in 0..250 {
        log.submit_counted(msg("c/a", QoS::AtMostOnce, &i.to_string()), backlog.add());
    }
    assert!(backlog.len() <= 250);
    within(async {
        while !backlog.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    })
    .await;
    let want: Vec<String> = (0..250).map(|i| i.to_string()).collect();
    assert_eq!(payloads(&log.read_channel("c/a", 0, 1000).unwrap()), want);

    log.close().await;
    log.submit_counted(msg("c/a", QoS::AtMostOnce, "late"), backlog.add());
    assert_eq!(backlog.len(), 0, "a refused append is uncounted at once");
}
