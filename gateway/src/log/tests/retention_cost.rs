//! Retention must cost what it removes, not what was removed before: every eviction scan
//! starts at the channel's oldest live entry (below it the store keeps deleted entries as
//! tombstones, which a scan from the start of the channel would walk on every write), and the
//! in-memory counts, heads and lowest sequence number stay equal to what the store holds.

use super::*;
use crate::core::namespace::HistoryPolicy;
use crate::log::block::ChanEntry;
use crate::log::retention::count_slack;
use crate::log::{DedupeKey, EmbeddedLog, MessageLog};
use std::sync::atomic::Ordering::Relaxed;

fn policy(max_messages: u64, max_age_s: Option<u64>) -> HistoryPolicy {
    HistoryPolicy {
        max_messages,
        max_age: max_age_s.map(Duration::from_secs),
        store_qos0: true,
    }
}

/// Appends `n` messages to `channel` as one pipelined burst (a few group commits).
async fn burst(log: &EmbeddedLog, channel: &str, n: usize, ts_ms: u64) {
    let futs: Vec<_> = (0..n)
        .map(|i| {
            let mut m = msg(channel, QoS::AtLeastOnce, &i.to_string());
            m.ts_ms = ts_ms;
            log.submit(m, None)
        })
        .collect();
    for f in futs {
        f.await.unwrap();
    }
}

/// The channel-index entries of the store, read past the log's own bookkeeping.
fn stored_entries(log: &EmbeddedLog, prefix: &[u8]) -> Vec<ChanEntry> {
    log.store
        .chan
        .prefix(prefix)
        .map(|g| crate::log::store::decode(&g.value().unwrap()).unwrap())
        .collect()
}

/// The lowest sequence number in the store's channel index.
fn stored_lowest(log: &EmbeddedLog) -> Option<u64> {
    stored_entries(log, b"")
        .iter()
        .filter_map(|e| e.items.first().map(|it| it.seq))
        .min()
}

/// Messages of `channel` in the store's channel index.
fn stored_count(log: &EmbeddedLog, channel: &str) -> u64 {
    stored_entries(log, &crate::log::keys::chan_prefix(channel))
        .iter()
        .map(|e| e.items.len() as u64)
        .sum()
}

/// `first_seq` agrees with the store.
fn assert_first_seq_matches_store(log: &EmbeddedLog) {
    let expected = stored_lowest(log).unwrap_or(log.released() + 1);
    assert_eq!(log.first_seq(), expected);
}

#[tokio::test]
async fn eviction_scans_start_at_the_oldest_live_entry() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_with("hot", policy(40, Some(3600)));
    let (log, _feed) = open(dir.path(), rules.clone());
    // A channel that never moves keeps the global lowest far below the hot channel's head.
    let cold = log
        .append(msg("cold", QoS::AtLeastOnce, "c"), None)
        .await
        .unwrap()
        .position()
        .seq;
    let t0 = crate::core::message::now_ms();
    for round in 0..60u64 {
        burst(&log, "hot", 25, t0 + round * 1000).await;
        if round % 10 == 9 {
            // Age retention too: everything written more than an hour before "now".
            log.sweep(t0 + 3_600_000 + (round - 5) * 1000)
                .await
                .unwrap();
        }
        assert_first_seq_matches_store(&log);
        assert_eq!(log.first_seq(), cold);
    }
    let written = 60 * 25;
    let hot_left = stored_count(&log, "hot");
    assert!(hot_left <= 40 + count_slack(40), "{hot_left} left");
    let probe = &log.store.probe;
    let scans = probe.scans.load(Relaxed);
    assert!(scans > 10, "only {scans} eviction scans ran");
    assert_eq!(
        probe.below_head.load(Relaxed),
        0,
        "a scan started below the head"
    );
    // Each scan reads what it deletes plus at most the entry it stops at.
    let removed = written - hot_left;
    assert!(probe.visited.load(Relaxed) <= removed + scans);
    log.close().await;
    drop(log);

    // Rebuilt at open: the heads are where the store says, and scans keep starting there.
    let (log, _feed) = open(dir.path(), rules);
    assert_first_seq_matches_store(&log);
    for _ in 0..8 {
        burst(&log, "hot", 25, crate::core::message::now_ms()).await;
    }
    assert!(log.store.probe.scans.load(Relaxed) > 0);
    assert_eq!(log.store.probe.below_head.load(Relaxed), 0);
    assert!(stored_count(&log, "hot") <= 40 + count_slack(40));
    assert_eq!(log.first_seq(), cold);
}

#[tokio::test]
async fn counts_heads_and_lowest_follow_the_store_through_mixed_retention() {
    let dir = tempfile::tempdir().unwrap();
    let limits = [("a", 3u64), ("b", 17), ("c/x", 1), ("d", 64)];
    let rules = {
        let rule = |(name, max): (&str, u64)| crate::core::namespace::NamespaceRule {
            name: name.into(),
            filter: name.into(),
            history: policy(max, Some(50)),
        };
        Arc::new(NamespaceRules::new(
            limits.iter().copied().map(rule).collect(),
            HistoryPolicy::default(),
        ))
    };
    let (mut log, mut _feed) = open(dir.path(), rules.clone());
    let t0 = 1_700_000_000_000u64;
    // A fixed pseudo-random walk over channels, burst sizes, sweeps and reopens.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    for step in 0..120u64 {
        let (ch, max) = limits[next(4) as usize];
        let n = 1 + next(max.min(8)) as usize;
        burst(&log, ch, n, t0 + step * 1000).await;
        assert!(stored_count(&log, ch) <= max + count_slack(max) + n as u64);
        match next(10) {
            0 => {
                log.sweep(t0 + step * 1000).await.unwrap();
                for (ch, max) in limits {
                    assert!(
                        stored_count(&log, ch) <= max,
                        "{ch} over its limit after a sweep"
                    );
                }
            }
            1 => {
                // Ages out what was written more than 40 steps before this one.
                log.sweep(t0 + step * 1000 + 10_000).await.unwrap();
            }
            2 => {
                log.close().await;
                drop(log);
                (log, _feed) = open(dir.path(), rules.clone());
            }
            _ => {}
        }
        assert_first_seq_matches_store(&log);
        assert_eq!(log.store.probe.below_head.load(Relaxed), 0, "step {step}");
    }
    // Everything ages out; the history is empty and `first_seq` says so.
    log.sweep(t0 + 10_000_000).await.unwrap();
    assert_eq!(stored_lowest(&log), None);
    assert_first_seq_matches_store(&log);
    burst(&log, "a", 2, crate::core::message::now_ms()).await;
    assert_first_seq_matches_store(&log);
}

#[tokio::test]
async fn dedupe_keys_written_below_an_earlier_sweep_still_expire() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _feed) = open(dir.path(), default_rules());
    let key = |s: &str| Some(DedupeKey(s.as_bytes().to_vec()));
    let ttl_ms = LogOptions::default().dedupe_ttl.as_millis() as u64;
    let now = crate::core::message::now_ms();
    log.append(msg("d", QoS::AtLeastOnce, "1"), key("k1"))
        .await
        .unwrap();
    // A sweep far in the future (as if the clock jumped ahead, then back) expires k1 ...
    let r = log.sweep(now + ttl_ms + 86_400_000).await.unwrap();
    assert_eq!(r.dedupe_expired, 1);
    // ... and a key written afterwards, with an older time than that sweep reached, is
    // still found by the next sweep that has it past the TTL.
    log.append(msg("d", QoS::AtLeastOnce, "2"), key("k2"))
        .await
        .unwrap();
    let r = log.sweep(now + ttl_ms + 60_000).await.unwrap();
    assert_eq!(r.dedupe_expired, 1);
    // A sweep that finds nothing new does not expire it twice.
    let r = log.sweep(now + ttl_ms + 120_000).await.unwrap();
    assert_eq!(r.dedupe_expired, 0);
}
