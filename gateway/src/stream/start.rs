//! Turning a [`Start`] into the first sequence number to examine, and detecting lost
//! continuity.
//!
//! - `since` continues right after the given position. When the position is from another
//!   epoch of the log, or retention removed history after it, a [`Reset`] names what is
//!   missing and the subscription continues from the oldest message still in history.
//! - `rewind` N walks back through history in growing windows until it has seen the N
//!   newest messages matching the filter (see [`scan_back`]).
//! - `rewind_seconds` binary-searches the log by timestamp.
//!
//! Detecting lost history: the log tells only the global lowest sequence number it holds
//! ([`MessageLog::first_seq`]); below it everything is gone, which is a reset for any
//! filter. Retention also trims single channels (count and age per namespace) while others
//! keep older messages, so for a plain channel the engine also checks the channel itself:
//! when its oldest kept message is after the resume point *and* the channel shows signs of
//! trimming (it holds its namespace's `max_messages`, or the messages around the resume
//! point are older than its `max_age`), the reset names the range up to that oldest
//! message. For a wildcard filter only the global check applies (the log has no per-channel
//! eviction record to consult; see the design notes).

use super::StreamError;
use super::options::Start;
use crate::core::namespace::NamespaceRules;
use crate::core::topic;
use crate::core::{Position, StoredMessage};
use crate::log::MessageLog;
use std::collections::VecDeque;
use std::sync::Arc;

/// Most entries of one channel counted to tell whether count retention is trimming it.
const MAX_COUNT: usize = 100_000;

/// Messages read from the store per step while scanning.
const PAGE: usize = 512;
/// Most messages one backward scan reads before it gives up looking further back.
const MAX_SCAN: u64 = 1_000_000;

/// Continuity was lost for a subscription: messages in `from..=to` are gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    /// The subscription's filter.
    pub filter: String,
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
    /// Continuity lost before `from_seq`.
    pub reset: Option<Reset>,
}

/// Resolves `start` for `filter` against the log as it is now (`now_ms`: wall clock).
pub fn resolve(
    log: &dyn MessageLog,
    rules: &NamespaceRules,
    filter: &str,
    start: Start,
    now_ms: u64,
) -> Result<Resolved, StreamError> {
    let released = log.released();
    let plain = |from_seq| Resolved {
        from_seq,
        reset: None,
    };
    Ok(match start {
        Start::Now => plain(released + 1),
        Start::Since(p) => return since(log, rules, filter, p, now_ms),
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
pub fn since(
    log: &dyn MessageLog,
    rules: &NamespaceRules,
    filter: &str,
    p: Position,
    now_ms: u64,
) -> Result<Resolved, StreamError> {
    let epoch = log.epoch();
    let released = log.released();
    let first = log.first_seq();
    if p.epoch != epoch {
        return Ok(Resolved {
            from_seq: first,
            reset: Some(Reset {
                filter: filter.to_owned(),
                reason: "epoch",
                from: Position {
                    epoch: p.epoch,
                    seq: p.seq.saturating_add(1),
                },
                to: (first > 1).then_some(Position {
                    epoch,
                    seq: first - 1,
                }),
            }),
        });
    }
    if p.seq > released {
        return Err(StreamError::BadPosition(format!(
            "position {p} is ahead of the log (last position {epoch}-{released}); use a \
             position the gateway gave"
        )));
    }
    let next = p.seq + 1;
    if next < first {
        return Ok(Resolved {
            from_seq: first,
            reset: Some(Reset {
                filter: filter.to_owned(),
                reason: "retention",
                from: Position { epoch, seq: next },
                to: Some(Position {
                    epoch,
                    seq: first - 1,
                }),
            }),
        });
    }
    if !topic::is_wildcard_filter(filter) {
        if let Some(kept) = channel_trimmed_after(log, rules, filter, p.seq, now_ms)? {
            return Ok(Resolved {
                from_seq: kept,
                reset: Some(Reset {
                    filter: filter.to_owned(),
                    reason: "retention",
                    from: Position { epoch, seq: next },
                    to: Some(Position {
                        epoch,
                        seq: kept - 1,
                    }),
                }),
            });
        }
    }
    Ok(Resolved {
        from_seq: next,
        reset: None,
    })
}

/// For a plain channel: the sequence number of its oldest kept message when retention has
/// trimmed the channel past `after`, or `None` when its history still reaches back to it.
fn channel_trimmed_after(
    log: &dyn MessageLog,
    rules: &NamespaceRules,
    channel: &str,
    after: u64,
    now_ms: u64,
) -> Result<Option<u64>, StreamError> {
    let Some(oldest) = log.read_channel(channel, 0, 1)?.into_iter().next() else {
        return Ok(None);
    };
    if oldest.pos.seq <= after + 1 {
        return Ok(None);
    }
    let policy = rules.policy_for(channel);
    let by_age = policy.max_age.is_some_and(|age| {
        let cutoff = now_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
        matches!(log.read(after, 1).map(|v| v.into_iter().next()), Ok(Some(m)) if m.msg.ts_ms < cutoff)
    });
    let by_count = !by_age && policy.max_messages > 0 && {
        let want = usize::try_from(policy.max_messages)
            .unwrap_or(usize::MAX)
            .min(MAX_COUNT);
        let mut n = 0usize;
        let mut at = oldest.pos.seq;
        loop {
            let page = log.read_channel(channel, at, PAGE)?;
            n += page.len();
            match page.last() {
                Some(m) if page.len() == PAGE && n < want => at = m.pos.seq + 1,
                _ => break,
            }
        }
        n >= want
    };
    Ok((by_age || by_count).then_some(oldest.pos.seq))
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
