//! Outbound feeding: reading the source into the outbound window (renaming, QoS and retain
//! rules, own-origin and lag-bound skips), what the remote allows, and publishing the cursor
//! to the status and the committer. Used by the session while connected and by the runner's
//! lag enforcement while disconnected.

use crate::inbound::ORIGIN_PROPERTY;
use crate::mapping::first_match;
use crate::message::{Props, QoS};
use crate::options::{Checked, Protocol};
use crate::outbound::{Prepared, Window};
use crate::session::Shared;
use crate::source::SourceError;
use crate::status::Counters;
use crate::wire::ConnAck;
use std::time::Duration;

/// Most messages asked of the source in one read.
const READ_BATCH: usize = 512;

/// What the remote allows, from its CONNACK.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_qos: QoS,
    pub retain_available: bool,
    pub max_packet: Option<usize>,
    pub keep_alive: Duration,
}

/// Outbound state that lives across connections.
pub(crate) struct Outbound {
    pub window: Window,
    /// The source may have more to read.
    pub more: bool,
    pub limits: Limits,
}

impl Outbound {
    /// Reads from the source into the window, renaming, applying QoS and retain rules and
    /// the lag bound.
    pub fn fill(&mut self, sh: &Shared) -> Result<(), SourceError> {
        if sh.checked.out.is_empty() {
            // Nothing goes out: follow the head without reading, so there is no lag.
            self.window.advance_read(sh.source.head());
            self.more = false;
            return Ok(());
        }
        let room = self.window.room().min(READ_BATCH);
        if room == 0 {
            return Ok(());
        }
        let from = self.window.read_pos();
        let head = sh.source.head();
        let bound = lag_bound(sh, head);
        let batch = sh.source.read(from, room)?;
        if batch.missing > 0 {
            Counters::add(&sh.status.counters.lost_retention, batch.missing);
            tracing::warn!(
                bridge = sh.name(),
                missing = batch.missing,
                "messages waiting for this bridge were removed by history retention before \
                 they could be forwarded; raise the history limits or max_lag"
            );
        }
        let mut skipped = self.window.skip_queued_below(bound);
        for m in batch.messages {
            if m.seq < from {
                continue;
            }
            self.window.advance_read(m.seq);
            if m.msg.origin.as_deref() == Some(&*sh.inbound.origin) {
                continue;
            }
            let Some((rule, topic)) = first_match(&sh.checked.out, &m.msg.topic) else {
                continue;
            };
            if m.seq < bound {
                skipped += 1;
                continue;
            }
            let qos = m.msg.qos.min(rule.qos).min(self.limits.max_qos);
            let retain = rule.retain.apply(m.msg.retain) && self.limits.retain_available;
            let props = match sh.inbound.protocol {
                Protocol::V311 => Props::default(),
                Protocol::V5 => {
                    let mut p = m.msg.props;
                    p.user_properties
                        .push((ORIGIN_PROPERTY.into(), sh.inbound.origin_value.to_string()));
                    p
                }
            };
            let prepared = Prepared {
                topic,
                payload: m.msg.payload,
                qos,
                retain,
                props,
            };
            self.window.push(m.seq, prepared);
        }
        self.window.advance_read(batch.next);
        self.more = batch.next > from;
        if skipped > 0 {
            Counters::add(&sh.status.counters.skipped_lag, skipped);
            tracing::warn!(
                bridge = sh.name(),
                skipped,
                max_lag = sh.checked.options.max_lag,
                "the bridge fell more than max_lag messages behind; the oldest waiting \
                 messages were skipped"
            );
        }
        self.window.pop_done();
        Ok(())
    }

    /// While disconnected: applies the lag bound to what waits, so the backlog stays
    /// bounded even when the remote is away for long.
    pub fn enforce_lag(&mut self, sh: &Shared) -> Result<(), SourceError> {
        if sh.checked.options.max_lag == 0 {
            return Ok(());
        }
        for _ in 0..64 {
            let bound = lag_bound(sh, sh.source.head());
            if self.window.cursor() >= bound {
                break;
            }
            let skipped = self.window.skip_queued_below(bound);
            Counters::add(&sh.status.counters.skipped_lag, skipped);
            self.window.pop_done();
            let before = self.window.read_pos();
            if self.window.room() == 0 || before >= bound {
                break;
            }
            self.fill(sh)?;
            if self.window.read_pos() == before {
                break;
            }
        }
        self.publish_cursor(sh);
        Ok(())
    }

    /// Publishes the cursor to the status and the committer.
    pub fn publish_cursor(&self, sh: &Shared) {
        let cursor = self.window.cursor();
        let c = &sh.status.counters;
        c.cursor.store(cursor, std::sync::atomic::Ordering::Relaxed);
        c.inflight.store(
            self.window.inflight() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        sh.commit.send_if_modified(|v| {
            if cursor > *v {
                *v = cursor;
                true
            } else {
                false
            }
        });
    }
}

/// Positions below this are skipped by the lag bound (0: no bound).
fn lag_bound(sh: &Shared, head: u64) -> u64 {
    match sh.checked.options.max_lag {
        0 => 0,
        max => head.saturating_sub(max),
    }
}

/// Limits from a CONNACK.
pub(crate) fn limits(c: &Checked, ack: &ConnAck) -> Limits {
    let o = &c.options;
    Limits {
        max_qos: ack
            .max_qos
            .and_then(QoS::from_u8)
            .unwrap_or(QoS::ExactlyOnce),
        retain_available: ack.retain_available,
        max_packet: ack.max_packet_size.map(|m| m as usize),
        keep_alive: ack
            .server_keep_alive
            .filter(|k| *k > 0)
            .map(|k| Duration::from_secs(u64::from(k)))
            .unwrap_or(o.keep_alive),
    }
}
