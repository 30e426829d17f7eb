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
