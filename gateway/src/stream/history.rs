//! History pages for the REST API: the messages of a channel or filter, forwards from a
//! position or backwards from the newest (or from a position), a page at a time.

use super::StreamError;
use super::start::{self, Reset};
use crate::core::topic;
use crate::core::{Position, StoredMessage};
use crate::log::MessageLog;
use std::sync::Arc;

/// Messages read per step.
const PAGE: usize = 512;
/// Most messages one forward request examines; past this it returns what it found and a
/// `next` position to continue from.
const MAX_SCAN: usize = 200_000;

/// Which way a history page goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first, starting after `since` (or at the oldest in history).
    Forward,
    /// Newest first, starting before `before` (or at the newest).
    Backward,
}

/// One history request.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    /// A channel name or a filter (validated by the caller).
    pub filter: String,
    /// Only messages after this position.
    pub since: Option<Position>,
    /// Only messages before this position (backward paging).
    pub before: Option<Position>,
    /// Most messages returned.
    pub limit: usize,
    /// Order.
    pub direction: Direction,
}

/// One page of history.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// The messages, in the requested order.
    pub messages: Vec<Arc<StoredMessage>>,
    /// Where the next page starts: pass it as `since` (forward) or `before` (backward).
    /// `None` when there is nothing more.
    pub next: Option<Position>,
    /// What retention removed after `since` (forward pages), in order.
    pub resets: Vec<Reset>,
}

/// Reads one page.
pub fn read(log: &dyn MessageLog, q: &HistoryQuery) -> Result<HistoryPage, StreamError> {
    let epoch = log.epoch();
    if let Some(b) = q.before {
        if b.epoch != epoch {
            return Err(StreamError::BadPosition(format!(
                "\"before\" {b} is from another epoch of the log (now {epoch})"
            )));
        }
    }
    match q.direction {
        Direction::Forward => forward(log, q),
        Direction::Backward => {
            let before = q.before.map_or(log.released() + 1, |b| b.seq);
            let floor = match q.since {
                Some(s) if s.epoch == epoch => s.seq,
                _ => 0,
            };
            let mut found = start::scan_back(log, &q.filter, before, q.limit, Arc::clone)?;
            found.retain(|m| m.pos.seq > floor);
            let full = found.len() == q.limit;
            let next = if full {
                found.first().map(|m| m.pos)
            } else {
                None
            };
            found.reverse();
            Ok(HistoryPage {
                messages: found,
                next,
                resets: Vec::new(),
            })
        }
    }
}

fn forward(log: &dyn MessageLog, q: &HistoryQuery) -> Result<HistoryPage, StreamError> {
    let (mut at, resets) = match q.since {
        Some(p) => {
            let r = start::since(log, &q.filter, p)?;
            (r.from_seq, r.resets)
        }
        None => (log.first_seq(), Vec::new()),
    };
    let end = q.before.map_or(u64::MAX, |b| b.seq);
    let channel = (!topic::is_wildcard_filter(&q.filter)).then_some(q.filter.as_str());
    let mut messages = Vec::new();
    let mut scanned = 0usize;
    let mut last = None;
    let mut more = false;
    'pages: loop {
        let page = match channel {
            Some(c) => log.read_channel(c, at, PAGE)?,
            None => log.read(at, PAGE)?,
        };
        let full = page.len() == PAGE;
        for m in page {
            if m.pos.seq >= end {
                break 'pages;
            }
            at = m.pos.seq + 1;
            last = Some(m.pos);
            scanned += 1;
            if topic::matches(&q.filter, &m.msg.topic) {
                messages.push(m);
                if messages.len() == q.limit {
                    more = true;
                    break 'pages;
                }
            }
            if scanned >= MAX_SCAN {
                more = true;
                break 'pages;
            }
        }
        if !full {
            break;
        }
    }
    Ok(HistoryPage {
        messages,
        next: if more { last } else { None },
        resets,
    })
}
