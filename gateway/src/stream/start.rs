//! Turning a [`Start`] into the first sequence number to examine, and detecting lost
//! continuity.
//!
//! - `since` continues right after the given position. When the position is from another
//!   epoch of the log, or retention removed history after it, [`Reset`]s name what is
//!   missing, and the subscription continues with everything still in history.
//! - `rewind` N walks back through history in growing windows until it has seen the N
//!   newest messages matching the filter (see [`scan_back`]).
//! - `rewind_seconds` binary-searches the log by timestamp.
//!
//! Detecting lost history ([`lost_from`]): below the log's lowest kept sequence number
//! ([`MessageLog::first_seq`]) everything is gone, which is a reset for any filter. Above it,
//! retention trims single channels (count and age per namespace) while others keep older
//! messages; the log's per-channel trim marks ([`MessageLog::trimmed_after`]) say exactly
//! which channels of a filter lost messages after a position, so a wildcard subscription gets
//! one reset per such channel and keeps every other channel's messages. The engine repeats
//! the check while it catches up, whenever retention has run during a read.

use super::StreamError;
use super::options::Start;
use crate::core::topic;
use crate::core::{Position, StoredMessage};
use crate::log::MessageLog;
use std::collections::VecDeque;
use std::sync::Arc;

/// Most channels one check reports a reset for each; past this, one reset covers the filter.
pub const MAX_CHANNEL_RESETS: usize = 64;

/// Messages read from the store per step while scanning.
const PAGE: usize = 512;
/// Most messages one backward scan reads before it gives up looking further back.
const MAX_SCAN: u64 = 1_000_000;

/// Continuity was lost for a subscription: messages in `from..=to` are gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    /// The subscription's filter.
    pub filter: String,
    /// The one channel of the filter that lost messages in the range, when known; `None`:
    /// every channel of the filter may have.
    pub channel: Option<String>,
    /// Why: `retention` (history was trimmed) or `epoch` (the log was replaced).
    pub reason: &'static str,
    /// First missing position.
    pub from: Position,
    /// Last missing position, `None` when nothing of the current epoch is missing.
    pub to: Option<Position>,
}

/// Where a subscription starts, and the reset to report first, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// First sequence number the subscription receives.
    pub from_seq: u64,
    /// Continuity lost: what is missing, in order.
    pub resets: Vec<Reset>,
}

/// Resolves `start` for `filter` against the log as it is now (`now_ms`: wall clock).
pub fn resolve(
    log: &dyn MessageLog,
    filter: &str,
    start: Start,
    now_ms: u64,
) -> Result<Resolved, StreamError> {
    let released = log.released();
    let plain = |from_seq| Resolved {
        from_seq,
        resets: Vec::new(),
    };
    Ok(match start {
        Start::Now => plain(released + 1),
        Start::Since(p) => return since(log, filter, p),
        Start::Rewind(0) => plain(released + 1),
        Start::Rewind(n) => {
            let found = scan_back(log, filter, released + 1, n, |m| m.pos.seq)?;
            if found.len() < n {
                plain(log.first_seq())
            } else {
                plain(found.first().copied().unwrap_or(released + 1))
            }
        }
        Start::RewindSeconds(s) => {
            let cutoff = now_ms.saturating_sub(s.saturating_mul(1000));
            plain(first_at_or_after(log, cutoff)?)
        }
    })
}

/// Continues after position `p` (the last one seen).
pub fn since(log: &dyn MessageLog, filter: &str, p: Position) -> Result<Resolved, StreamError> {
    let epoch = log.epoch();
    let released = log.released();
    let first = log.first_seq();
    if p.epoch != epoch {
        return Ok(Resolved {
            from_seq: first,
            resets: vec![Reset {
                filter: filter.to_owned(),
                channel: None,
                reason: "epoch",
                from: Position {
                    epoch: p.epoch,
                    seq: p.seq.saturating_add(1),
                },
                to: (first > 1).then_some(Position {
                    epoch,
                    seq: first - 1,
                }),
            }],
        });
    }
    if p.seq > released {
        return Err(StreamError::BadPosition(format!(
            "position {p} is ahead of the log (last position {epoch}-{released}); use a \
             position the gateway gave"
        )));
    }
    let next = p.seq + 1;
    Ok(Resolved {
        from_seq: next.max(first),
        resets: lost_from(log, filter, next),
    })
}

/// What retention removed of `filter`'s messages at or after sequence number `from`: one
/// reset for everything below the log's lowest kept sequence number, then one per channel
/// that lost messages above it (the log's trim marks), or a single filter-wide one past
/// [`MAX_CHANNEL_RESETS`] channels. Empty when nothing was lost.
pub fn lost_from(log: &dyn MessageLog, filter: &str, from: u64) -> Vec<Reset> {
    let epoch = log.epoch();
    let first = log.first_seq();
    let reset = |channel: Option<String>, from: u64, to: u64| Reset {
        filter: filter.to_owned(),
        channel,
        reason: "retention",
        from: Position { epoch, seq: from },
        to: Some(Position { epoch, seq: to }),
    };
    let mut out = Vec::new();
    if from < first {
        out.push(reset(None, from, first - 1));
    }
    let floor = from.max(first);
    let marks = log.trimmed_after(filter, floor - 1);
    if marks.len() > MAX_CHANNEL_RESETS {
        let to = marks.iter().map(|(_, m)| *m).max().unwrap_or(floor);
        out.push(reset(None, floor, to));
    } else {
        out.extend(marks.into_iter().map(|(c, m)| reset(Some(c), floor, m)));
    }
    out
}

/// The newest `n` messages matching `filter` with `seq < before`, oldest first, each mapped
/// through `keep`. Reads windows of history going backwards, doubling their size, so the
/// cost follows how far back the n-th match lies; gives up after [`MAX_SCAN`] messages.
pub fn scan_back<T>(
    log: &dyn MessageLog,
    filter: &str,
    before: u64,
    n: usize,
    keep: impl Fn(&Arc<StoredMessage>) -> T,
) -> Result<Vec<T>, StreamError> {
    let first = log.first_seq();
    let channel = (!topic::is_wildcard_filter(filter)).then_some(filter);
    let mut out: VecDeque<T> = VecDeque::new();
    let mut hi = before; // exclusive
    let mut window = (n as u64).saturating_mul(2).max(PAGE as u64);
    let mut scanned = 0u64;
    while out.len() < n && hi > first && scanned < MAX_SCAN {
        let lo = hi.saturating_sub(window).max(first);
        let needed = n - out.len();
        let mut found: VecDeque<T> = VecDeque::new();
        let mut at = lo;
        'window: loop {
            let page = match channel {
                Some(c) => log.read_channel(c, at, PAGE)?,
                None => log.read(at, PAGE)?,
            };
            let full = page.len() == PAGE;
            for m in &page {
                if m.pos.seq >= hi {
                    break 'window;
                }
                scanned += 1;
                at = m.pos.seq + 1;
                if topic::matches(filter, &m.msg.topic) {
                    found.push_back(keep(m));
                    if found.len() > needed {
                        found.pop_front();
                    }
                }
            }
            if !full {
                break;
            }
        }
        // Older windows go in front of what later windows found.
        while let Some(t) = found.pop_back() {
            out.push_front(t);
        }
        hi = lo;
        window = window.saturating_mul(2);
    }
    Ok(out.into())
}

/// The first sequence number whose message was accepted at or after `cutoff_ms`
/// (`released + 1` when none was). Timestamps follow sequence order closely enough for a
/// binary search: both are taken as messages reach the log.
fn first_at_or_after(log: &dyn MessageLog, cutoff_ms: u64) -> Result<u64, StreamError> {
    let mut lo = log.first_seq();
    let mut hi = log.released() + 1;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match log.read(mid, 1)?.first() {
            Some(m) if m.pos.seq < hi && m.msg.ts_ms < cutoff_ms => lo = m.pos.seq + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}
