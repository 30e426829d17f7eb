//! An MQTT session: subscriptions, the delivery cursor, outgoing in-flight messages, and how
//! a persistent session is saved in the log's session table.
//!
//! A session's offline queue is not a copy of messages: it is the cursor, a sequence number
//! in the log. On reconnect the session reads the log from there.

use crate::core::topic;
use crate::core::{QoS, StoredMessage};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Version of the saved-session record; bump when `Saved` changes shape.
const SAVED_FORMAT: u8 = 1;

/// One subscription of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The filter as the client sent it (may be `$share/group/...`).
    pub filter: String,
    /// QoS granted.
    pub qos: QoS,
    /// MQTT 5 no-local: do not send this client its own publishes.
    pub no_local: bool,
    /// MQTT 5 retain-as-published: keep the retain flag on forwarded messages.
    pub retain_as_published: bool,
    /// MQTT 5 subscription identifier, echoed on matching deliveries.
    pub id: Option<u32>,
    /// Only messages after this sequence number are delivered through this subscription
    /// when catching up from the store: the subscription did not exist before.
    pub since_seq: u64,
}

impl Subscription {
    /// The filter that topics are matched against (the part after `$share/group/`).
    pub fn match_filter(&self) -> &str {
        shared_parts(&self.filter).map_or(self.filter.as_str(), |(_, f)| f)
    }

    /// True for `$share/...` subscriptions.
    pub fn is_shared(&self) -> bool {
        shared_parts(&self.filter).is_some()
    }
}

/// Splits `$share/group/filter` into (group, filter).
pub fn shared_parts(filter: &str) -> Option<(&str, &str)> {
    let rest = filter.strip_prefix("$share/")?;
    rest.split_once('/')
}

/// Where an outgoing QoS 1/2 message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Sent,
    /// PUBREC received and PUBREL sent, waiting for PUBCOMP.
    Released,
}

/// One outgoing message waiting for its acknowledgement.
#[derive(Debug, Clone)]
pub struct Inflight {
    /// The message (shared with every other subscriber).
    pub msg: Arc<StoredMessage>,
    /// QoS it was sent with.
    pub qos: QoS,
    /// Retain flag it was sent with.
    pub retain: bool,
    /// Subscription identifiers it was sent with.
    pub sub_ids: Vec<u32>,
    /// Protocol stage.
    pub stage: Stage,
}

/// The state of one session, in memory.
#[derive(Debug, Clone)]
pub struct Session {
    /// Subscriptions, in the order they were made.
    pub subs: Vec<Subscription>,
    /// Next sequence number to examine.
    pub cursor: u64,
    /// Outgoing in-flight messages by packet id.
    pub inflight: HashMap<u16, Inflight>,
    /// Last packet id handed out.
    last_pkid: u16,
    /// Session expiry in seconds; `u32::MAX` never expires, 0 ends with the connection.
    pub expiry: u32,
    /// Random per session life; part of QoS 2 de-duplication keys so that a new session
    /// never mistakes a reused packet id for a retry.
    pub nonce: u64,
    /// Something worth saving changed since the last save.
    pub dirty: bool,
}

/// The saved form of a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    format: u8,
    epoch: u64,
    expiry: u32,
    disconnected_at_ms: u64,
    cursor: u64,
    nonce: u64,
    subs: Vec<Subscription>,
    inflight: Vec<SavedInflight>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedInflight {
    pkid: u16,
    seq: u64,
    qos: QoS,
    retain: bool,
    sub_ids: Vec<u32>,
    stage: Stage,
}

/// A loaded session plus what the caller needs to resume it.
#[derive(Debug)]
pub struct Restored {
    /// The session; in-flight messages still to be fetched are listed in `inflight_seqs`.
    pub session: Session,
    /// In-flight entries whose messages must be read back from the log.
    pub inflight_seqs: Vec<(u16, u64, QoS, bool, Vec<u32>, Stage)>,
    /// When the client went offline (ms since the Unix epoch).
    pub disconnected_at_ms: u64,
}

impl Session {
    /// A new, empty session starting at `cursor`.
    pub fn new(cursor: u64, expiry: u32, nonce: u64) -> Session {
        Session {
            subs: Vec::new(),
            cursor,
            inflight: HashMap::new(),
            last_pkid: 0,
            expiry,
            nonce,
            dirty: true,
        }
    }

    /// True when the session outlives its connection.
    pub fn is_persistent(&self) -> bool {
        self.expiry > 0
    }

    /// The next free packet id, or `None` when all 65535 are in flight.
    pub fn next_pkid(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            self.last_pkid = if self.last_pkid == u16::MAX {
                1
            } else {
                self.last_pkid + 1
            };
            if !self.inflight.contains_key(&self.last_pkid) {
                return Some(self.last_pkid);
            }
        }
        None
    }

    /// Adds or replaces the subscription with the same filter; returns true if it existed.
    pub fn add_subscription(&mut self, sub: Subscription) -> bool {
        self.dirty = true;
        if let Some(s) = self.subs.iter_mut().find(|s| s.filter == sub.filter) {
            *s = sub;
            true
        } else {
            self.subs.push(sub);
            false
        }
    }

    /// Removes the subscription with exactly this filter; true if it existed.
    pub fn remove_subscription(&mut self, filter: &str) -> bool {
        let before = self.subs.len();
        self.subs.retain(|s| s.filter != filter);
        self.dirty = true;
        self.subs.len() != before
    }

    /// How `msg` is to be delivered through this session's ordinary (non-shared)
    /// subscriptions, or through the named shared one: the QoS (the highest granted among
    /// the matching subscriptions, never above the message's), the retain flag and the
    /// subscription identifiers. `None` when no subscription wants it. `catch_up` applies
    /// each subscription's start (`since_seq`).
    pub fn route(
        &self,
        msg: &StoredMessage,
        shared: Option<&str>,
        own_origin: &str,
        catch_up: bool,
    ) -> Option<Route> {
        let mut route: Option<Route> = None;
        let is_own = msg.msg.origin.as_deref() == Some(own_origin);
        for s in &self.subs {
            let wanted = match shared {
                Some(f) => s.filter == f,
                None => !s.is_shared() && topic::matches(s.match_filter(), &msg.msg.topic),
            };
            if !wanted || (s.no_local && is_own) || (catch_up && msg.pos.seq <= s.since_seq) {
                continue;
            }
            let r = route.get_or_insert(Route {
                qos: QoS::AtMostOnce,
                retain: false,
                sub_ids: Vec::new(),
            });
            r.qos = r.qos.max(s.qos.min(msg.msg.qos));
            r.retain |= s.retain_as_published && msg.msg.retain;
            if let Some(id) = s.id {
                r.sub_ids.push(id);
            }
        }
        route
    }

    /// Serializes the session for the log's session table.
    pub fn save(&self, epoch: u64, cursor: u64, now_ms: u64) -> Vec<u8> {
        let mut inflight: Vec<SavedInflight> = self
            .inflight
            .iter()
            .map(|(pkid, f)| SavedInflight {
                pkid: *pkid,
                seq: f.msg.pos.seq,
                qos: f.qos,
                retain: f.retain,
                sub_ids: f.sub_ids.clone(),
                stage: f.stage,
            })
            .collect();
        inflight.sort_by_key(|f| f.seq);
        let saved = Saved {
            format: SAVED_FORMAT,
            epoch,
            expiry: self.expiry,
            disconnected_at_ms: now_ms,
            cursor,
            nonce: self.nonce,
            subs: self.subs.clone(),
            inflight,
        };
        postcard::to_stdvec(&saved).unwrap_or_default()
    }

    /// Reads a saved session. `None` when the record is unreadable or from another epoch of
    /// the log (history it points into is gone): the caller starts a new session.
    pub fn restore(bytes: &[u8], epoch: u64) -> Option<Restored> {
        let saved: Saved = postcard::from_bytes(bytes).ok()?;
        if saved.format != SAVED_FORMAT || saved.epoch != epoch {
            return None;
        }
        let last_pkid = saved.inflight.iter().map(|f| f.pkid).max().unwrap_or(0);
        Some(Restored {
            inflight_seqs: saved
                .inflight
                .into_iter()
                .map(|f| (f.pkid, f.seq, f.qos, f.retain, f.sub_ids, f.stage))
                .collect(),
            session: Session {
                subs: saved.subs,
                cursor: saved.cursor,
                inflight: HashMap::new(),
                last_pkid,
                expiry: saved.expiry,
                nonce: saved.nonce,
                dirty: false,
            },
            disconnected_at_ms: saved.disconnected_at_ms,
        })
    }

    /// Reads only the expiry facts of a saved session (for start-up expiry timers).
    pub fn saved_expiry(bytes: &[u8]) -> Option<(u32, u64)> {
        let saved: Saved = postcard::from_bytes(bytes).ok()?;
        Some((saved.expiry, saved.disconnected_at_ms))
    }
}

/// How one message goes out to one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// QoS to send with.
    pub qos: QoS,
    /// Retain flag to send with.
    pub retain: bool,
    /// Subscription identifiers to attach.
    pub sub_ids: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Message, MessageProps, Position};

    fn stored(seq: u64, topic: &str, qos: QoS, retain: bool, origin: &str) -> StoredMessage {
        StoredMessage {
            pos: Position { epoch: 7, seq },
            msg: Message {
                topic: topic.into(),
                payload: bytes::Bytes::from_static(b"x"),
                qos,
                retain,
                props: MessageProps::default(),
                ts_ms: 0,
                origin: Some(origin.into()),
            },
            wire: Default::default(),
        }
    }

    fn sub(filter: &str, qos: QoS) -> Subscription {
        Subscription {
            filter: filter.into(),
            qos,
            no_local: false,
            retain_as_published: false,
            id: None,
            since_seq: 0,
        }
    }

    #[test]
    fn qos_is_min_of_publish_and_best_grant() {
        let mut s = Session::new(1, 0, 1);
        s.add_subscription(sub("a/+", QoS::AtMostOnce));
        s.add_subscription(Subscription {
            id: Some(9),
            ..sub("a/#", QoS::AtLeastOnce)
        });
        let r = s.route(
            &stored(1, "a/b", QoS::ExactlyOnce, false, "x"),
            None,
            "me",
            false,
        );
        assert_eq!(
            r,
            Some(Route {
                qos: QoS::AtLeastOnce,
                retain: false,
                sub_ids: vec![9]
            })
        );
        let r = s.route(
            &stored(1, "a/b", QoS::AtMostOnce, false, "x"),
            None,
            "me",
            false,
        );
        assert_eq!(r.map(|r| r.qos), Some(QoS::AtMostOnce), "never upgraded");
    }

    #[test]
    fn no_local_and_retain_as_published() {
        let mut s = Session::new(1, 0, 1);
        s.add_subscription(Subscription {
            no_local: true,
            ..sub("t", QoS::AtLeastOnce)
        });
        assert_eq!(
            s.route(
                &stored(1, "t", QoS::AtLeastOnce, true, "me"),
                None,
                "me",
                false
            ),
            None
        );
        s.add_subscription(Subscription {
            retain_as_published: true,
            ..sub("t", QoS::AtLeastOnce)
        });
        let r = s.route(
            &stored(1, "t", QoS::AtLeastOnce, true, "other"),
            None,
            "me",
            false,
        );
        assert!(r.is_some_and(|r| r.retain));
    }

    #[test]
    fn shared_subscriptions_only_route_when_named() {
        let mut s = Session::new(1, 0, 1);
        s.add_subscription(sub("$share/g/t/#", QoS::AtLeastOnce));
        let m = stored(1, "t/x", QoS::AtLeastOnce, false, "o");
        assert_eq!(s.route(&m, None, "me", false), None);
        assert!(s.route(&m, Some("$share/g/t/#"), "me", false).is_some());
    }

    #[test]
    fn catch_up_respects_subscription_start() {
        let mut s = Session::new(1, 0, 1);
        s.add_subscription(Subscription {
            since_seq: 10,
            ..sub("t", QoS::AtLeastOnce)
        });
        assert_eq!(
            s.route(
                &stored(10, "t", QoS::AtLeastOnce, false, "o"),
                None,
                "me",
                true
            ),
            None
        );
        assert!(
            s.route(
                &stored(11, "t", QoS::AtLeastOnce, false, "o"),
                None,
                "me",
                true
            )
            .is_some()
        );
    }

    #[test]
    fn save_restore_round_trip_and_epoch_check() {
        let mut s = Session::new(5, u32::MAX, 42);
        s.add_subscription(sub("a/#", QoS::ExactlyOnce));
        let bytes = s.save(3, 17, 1000);
        let r = Session::restore(&bytes, 3).expect("restores");
        assert_eq!(r.session.subs, s.subs);
        assert_eq!(r.session.cursor, 17);
        assert_eq!(r.session.nonce, 42);
        assert!(
            Session::restore(&bytes, 4).is_none(),
            "other epoch starts afresh"
        );
        assert!(Session::restore(b"garbage", 3).is_none());
    }

    #[test]
    fn pkids_skip_those_in_flight_and_wrap() {
        let mut s = Session::new(1, 0, 1);
        s.last_pkid = u16::MAX - 1;
        let m = Arc::new(stored(1, "t", QoS::AtLeastOnce, false, "o"));
        s.inflight.insert(
            1,
            Inflight {
                msg: m,
                qos: QoS::AtLeastOnce,
                retain: false,
                sub_ids: vec![],
                stage: Stage::Sent,
            },
        );
        assert_eq!(s.next_pkid(), Some(u16::MAX));
        assert_eq!(s.next_pkid(), Some(2));
    }
}
