//! History is stored in blocks of many messages: reads in every direction and page size see
//! exactly the messages retention kept, a block goes with the write that removes its last
//! message (not before, not never), and all of it survives a reopen.

use super::*;
use crate::core::namespace::{HistoryPolicy, NamespaceRule};
use crate::log::block::{Block, ChanEntry, MAX_BLOCK_ENTRIES};
use crate::log::{EmbeddedLog, MessageLog};
use std::collections::{BTreeMap, BTreeSet};

fn policy(max_messages: u64, max_age_s: Option<u64>) -> HistoryPolicy {
    HistoryPolicy {
        max_messages,
        max_age: max_age_s.map(Duration::from_secs),
        store_qos0: true,
    }
}

/// Channels `a/<i>` with their own count limits; `cold` keeps everything for an hour.
fn rules() -> Arc<NamespaceRules> {
    let rule = |name: &str, filter: &str, max: u64| NamespaceRule {
        name: name.into(),
        filter: filter.into(),
        history: policy(max, Some(3600)),
    };
    Arc::new(NamespaceRules::new(
        vec![
            rule("small", "a/0", 3),
            rule("mid", "a/1", 40),
            rule("big", "a/2", 5000),
            rule("cold", "cold", 5000),
        ],
        HistoryPolicy::default(),
    ))
}

/// Submits `n` messages, one pipelined burst, round-robin over `channels`, so that the
/// batches (and blocks) mix channels. Payloads are "<channel>#<k>" with k counting per channel.
async fn interleaved(
    log: &EmbeddedLog,
    channels: &[&str],
    n: usize,
    next: &mut BTreeMap<String, u64>,
    ts_ms: u64,
) {
    let futs: Vec<_> = (0..n)
        .map(|i| {
            let ch = channels[i % channels.len()];
            let k = next.entry(ch.to_owned()).or_insert(0);
            let mut m = msg(ch, QoS::AtMostOnce, &format!("{ch}#{k}"));
            *k += 1;
            m.ts_ms = ts_ms;
            log.submit(m, None)
        })
        .collect();
    for f in futs {
        f.await.unwrap();
    }
}

/// Block keys in `msgs`, and the blocks the channel index points into.
fn stored_blocks(log: &EmbeddedLog) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let records: BTreeSet<u64> = log
        .store
        .msgs
        .iter()
        .map(|g| {
            let (k, v) = g.into_inner().unwrap();
            let key = crate::log::keys::decode_seq(&k).unwrap();
            let block = Block::parse(&v[..]).unwrap();
            assert_eq!(
                block.seq(block.len() - 1),
                key,
                "a block's key is its last seq"
            );
            key
        })
        .collect();
    let referenced = log
        .store
        .chan
        .iter()
        .map(|g| {
            let e: ChanEntry = crate::log::store::decode(&g.value().unwrap()).unwrap();
            assert!(!e.items.is_empty(), "an empty channel-index entry was kept");
            e.block
        })
        .collect();
    (records, referenced)
}

/// Every way of reading agrees, and what each channel holds is the newest part of what was
/// written to it, with nothing missing in between.
fn check_reads(log: &EmbeddedLog, written: &BTreeMap<String, u64>) -> Vec<u64> {
    let all = log.read(0, usize::MAX).unwrap();
    let all_seqs = seqs(&all);
    assert!(all_seqs.windows(2).all(|w| w[0] < w[1]), "out of order");
    let mut back = seqs(&log.read_back(u64::MAX, usize::MAX).unwrap());
    back.reverse();
    assert_eq!(back, all_seqs, "read_back disagrees with read");
    // Pages of odd sizes, forwards and backwards, add up to the same.
    for page in [1, 7, 333, MAX_BLOCK_ENTRIES + 1] {
        let mut fwd = Vec::new();
        let mut from = 0;
        loop {
            let got = seqs(&log.read(from, page).unwrap());
            let Some(last) = got.last() else { break };
            from = last + 1;
            fwd.extend(got);
        }
        assert_eq!(fwd, all_seqs, "pages of {page}");
        let mut rev = Vec::new();
        let mut to = u64::MAX;
        loop {
            let got = seqs(&log.read_back(to, page).unwrap());
            let Some(last) = got.last() else { break };
            if *last == 0 {
                rev.extend(got);
                break;
            }
            to = last - 1;
            rev.extend(got);
        }
        rev.reverse();
        assert_eq!(rev, all_seqs, "pages of {page}, newest first");
    }
    let mut union = Vec::new();
    for (ch, n) in written {
        let got = log.read_channel(ch, 0, usize::MAX).unwrap();
        let kept = payloads(&got);
        let first = n - kept.len() as u64;
        let expected: Vec<String> = (first..*n).map(|k| format!("{ch}#{k}")).collect();
        assert_eq!(
            kept, expected,
            "{ch} is not the newest part of what was written"
        );
        // Read from the middle, a page at a time.
        if let Some(mid) = got.get(got.len() / 2) {
            let tail = log.read_channel(ch, mid.pos.seq, 5).unwrap();
            assert_eq!(
                seqs(&tail),
                seqs(&got[got.len() / 2..])
                    .into_iter()
                    .take(5)
                    .collect::<Vec<_>>()
            );
        }
        union.extend(seqs(&got));
    }
    union.sort_unstable();
    assert_eq!(union, all_seqs, "channels and history disagree");
    all_seqs
}

#[tokio::test]
async fn blocks_hold_many_messages_and_go_with_their_last_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut _feed) = open(dir.path(), rules());
    let mut written = BTreeMap::new();
    let t0 = crate::core::message::now_ms();

    // One message in `cold` first: it keeps its block alive while the rest of it is trimmed.
    interleaved(&log, &["cold"], 1, &mut written, t0).await;
    let chans = ["a/0", "a/1", "a/2"];
    for round in 0..12u64 {
        interleaved(&log, &chans, 700, &mut written, t0 + round).await;
        let kept = check_reads(&log, &written);
        let (records, referenced) = stored_blocks(&log);
        assert_eq!(
            records, referenced,
            "round {round}: orphan or dangling blocks"
        );
        // Many messages per record: far fewer records than messages kept.
        assert!(
            (records.len() as u64) * 4 < kept.len() as u64,
            "round {round}: {} records for {} messages",
            records.len(),
            kept.len()
        );
        if round == 5 {
            log.close().await;
            drop(log);
            (log, _feed) = open(dir.path(), rules());
            assert_eq!(
                check_reads(&log, &written),
                kept,
                "reads changed across a reopen"
            );
        }
    }
    // The first block holds `cold`'s message and a/0's trimmed first ones: it stays for
    // `cold`, and reads leave out what retention removed from it.
    // One message per group commit: blocks of one, which the writer does not count.
    for i in 0..12u64 {
        interleaved(&log, &["a/0"], 1, &mut written, t0 + 20 + i).await;
        let (records, referenced) = stored_blocks(&log);
        assert_eq!(
            records, referenced,
            "single message {i}: orphan or dangling blocks"
        );
    }
    log.sweep(t0 + 100).await.unwrap();
    check_reads(&log, &written);
    let first_block = *stored_blocks(&log).0.first().unwrap();
    assert_eq!(log.read(0, 1).unwrap()[0].msg.topic, "cold");
    assert_eq!(log.read_channel("a/0", 0, 10).unwrap().len(), 3);
    assert_eq!(log.read_channel("a/1", 0, 100).unwrap().len(), 40);

    // Age retention empties everything but `cold`... then `cold` too: no record is left.
    log.sweep(t0 + 1000 * 3600 + 100).await.unwrap();
    written.retain(|ch, _| ch == "cold");
    let (records, referenced) = stored_blocks(&log);
    assert_eq!(records, referenced);
    assert!(records.is_empty() || records.first() == Some(&first_block));
    log.close().await;
    drop(log);
    let (log, _feed) = open(dir.path(), rules());
    log.sweep(t0 + 2 * 1000 * 3600).await.unwrap();
    let (records, referenced) = stored_blocks(&log);
    assert!(
        records.is_empty() && referenced.is_empty(),
        "{records:?} left"
    );
    assert!(log.read(0, usize::MAX).unwrap().is_empty());
}
