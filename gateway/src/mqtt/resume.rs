//! Session start at CONNECT: a clean start discards what was stored; otherwise the stored
//! session is restored and its offline backlog bounded.

use super::connect::{Accepted, random_u64};
use super::session::{Session, Stage};
use crate::broker::Broker;
use crate::core::QoS;

/// An in-flight entry to resend: packet id, sequence number, QoS, retain, subscription ids,
/// stage.
pub(super) type Resend = (u16, u64, QoS, bool, Vec<u32>, Stage);

/// Loads or creates the session for an accepted CONNECT. Returns the session, the in-flight
/// messages to resend, and whether a stored session was resumed (CONNACK session-present).
pub(super) async fn load_session(
    broker: &Broker,
    accepted: &Accepted,
) -> (Session, Vec<Resend>, bool) {
    let log = &broker.log;
    let fresh = || Session::new(log.released() + 1, accepted.expiry, random_u64());
    let stored = match log.session_load(&accepted.client_id) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(client_id = %accepted.client_id, error = %e, "could not read stored session");
            None
        }
    };
    if accepted.clean_start {
        if stored.is_some() {
            if let Err(e) = log.session_delete(&accepted.client_id).await {
                tracing::warn!(client_id = %accepted.client_id, error = %e, "could not delete stored session");
            }
        }
        return (fresh(), Vec::new(), false);
    }
    let Some(restored) = stored.and_then(|b| Session::restore(&b, log.epoch())) else {
        return (fresh(), Vec::new(), false);
    };
    let mut session = restored.session;
    session.expiry = accepted.expiry;
    session.dirty = true;
    bound_backlog(broker, &accepted.client_id, &mut session);
    let first = log.first_seq();
    if session.cursor < first {
        tracing::warn!(
            client_id = %accepted.client_id,
            from = session.cursor,
            to = first - 1,
            "messages for this session were removed by history retention before it resumed"
        );
    }
    (session, restored.inflight_seqs, true)
}

/// Applies `max_offline_messages`: when more messages than that wait for the session, its
/// cursor moves past the oldest ones, which are counted in the log. The backlog is counted
/// from the newest end, matching each message against the session's subscriptions, so only
/// messages the session would really receive count.
fn bound_backlog(broker: &Broker, client_id: &str, session: &mut Session) {
    const STEP: usize = 1024;
    let max = broker.settings.max_offline_messages;
    let log = &broker.log;
    let released = log.released();
    if max == 0 || released < session.cursor || released - session.cursor < max as u64 {
        // Fewer sequence numbers than the limit: the backlog cannot exceed it.
        return;
    }
    let origin = super::origin_of(client_id);
    let (mut kept, mut skipped, mut cut) = (0usize, 0u64, None);
    let mut to = released;
    'scan: loop {
        let batch = match log.read_back(to, STEP) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(client_id, error = %e, "could not measure the offline backlog");
                return;
            }
        };
        let Some(oldest) = batch.last().map(|m| m.pos.seq) else {
            break;
        };
        for m in &batch {
            if m.pos.seq < session.cursor {
                break 'scan;
            }
            if session.route(m, None, &origin, true).is_some() {
                if kept < max {
                    kept += 1;
                    cut = Some(m.pos.seq);
                } else {
                    skipped += 1;
                }
            }
        }
        if oldest <= session.cursor || oldest == 0 {
            break;
        }
        to = oldest - 1;
    }
    if skipped > 0 {
        if let Some(cut) = cut {
            tracing::warn!(
                client_id,
                skipped,
                kept,
                "offline backlog over max_offline_messages; the oldest messages were skipped"
            );
            session.cursor = cut;
        }
    }
}

/// At start-up: every stored session with a finite expiry gets its timer again, counting from
/// when its client went offline (sessions past their expiry are removed at once).
pub fn schedule_stored_expiries(broker: &std::sync::Arc<Broker>) {
    let records = match broker.log.session_list() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "could not list stored sessions for their expiry");
            return;
        }
    };
    let now = crate::core::message::now_ms();
    let mut scheduled = 0usize;
    for (client_id, bytes) in records {
        if client_id.starts_with('\0') {
            continue; // internal records (bridge cursors)
        }
        let Some((expiry, offline_since)) = Session::saved_expiry(&bytes) else {
            continue;
        };
        if expiry == u32::MAX {
            continue;
        }
        let ends_at = offline_since.saturating_add(u64::from(expiry) * 1000);
        let left = std::time::Duration::from_millis(ends_at.saturating_sub(now));
        broker.schedule_expiry(&client_id, left);
        scheduled += 1;
    }
    if scheduled > 0 {
        tracing::info!(sessions = scheduled, "session expiry timers restored");
    }
}
