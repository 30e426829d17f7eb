//! Presence: who is online. MQTT devices (by client id) and browser connections that declare
//! a client id are *members*; watchers get `enter` and `leave` events and can list the
//! current members matching a filter.
//!
//! A member's id is matched against presence filters as if it were a topic name, so
//! `plant1/#` lists the devices whose client ids start with `plant1/`, and `#` lists all.
//!
//! MQTT members follow the device's connection and its will:
//! - CONNECT makes the device present (a takeover or a reconnect while it is still present
//!   changes nothing);
//! - a normal DISCONNECT, or a lost connection without a will, makes it leave at once
//!   (reason `disconnect`);
//! - a lost connection whose will is published at once makes it leave with reason `will`;
//! - a lost connection with a *delayed* will keeps it present until the will is published
//!   (reason `will`); the delay is already cut to the session expiry, so a session that
//!   expires first ends the presence then. Reconnecting before that cancels the leave.
//!
//! Browser members are counted per connection: the first connection declaring an id makes
//! it enter, the last one to close makes it leave (reason `disconnect`).
//!
//! Events go out on a bounded broadcast channel; a watcher that falls behind is told so
//! (`RecvError::Lagged`) and re-reads the member list instead of buffering without bound.

use crate::core::message::now_ms;
use crate::core::topic;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Events buffered for watchers; a watcher further behind than this re-reads the list.
const EVENT_BUFFER: usize = 4096;

/// What kind of client a member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberKind {
    /// An MQTT client, identified by its client id.
    Mqtt,
    /// A browser connection that declared a client id.
    Browser,
}

/// One present client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Client id.
    pub id: String,
    /// MQTT device or browser.
    pub kind: MemberKind,
    /// When it entered, in milliseconds since the Unix epoch.
    pub since: u64,
}

/// Whether a member came or went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceAction {
    /// The member is now present.
    Enter,
    /// The member is gone.
    Leave,
}

/// One change of presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresenceEvent {
    /// Enter or leave.
    pub action: PresenceAction,
    /// Who.
    pub member: Member,
    /// Why a member left: `disconnect` or `will`. `None` for enter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

#[derive(Debug)]
struct Entry {
    since: u64,
    /// Browser connections holding the id (MQTT: 1 while connected).
    conns: u32,
    /// MQTT: offline, but present until its delayed will is published.
    grace: bool,
    /// MQTT: the connection that just ended published its will at once.
    will_now: bool,
}

/// The presence registry and its event feed.
#[derive(Debug)]
pub struct Presence {
    members: Mutex<HashMap<(MemberKind, String), Entry>>,
    events: broadcast::Sender<Arc<PresenceEvent>>,
}

impl Default for Presence {
    fn default() -> Self {
        Presence::new()
    }
}

impl Presence {
    /// An empty registry.
    pub fn new() -> Presence {
        Presence {
            members: Mutex::new(HashMap::new()),
            events: broadcast::channel(EVENT_BUFFER).0,
        }
    }

    /// A new watcher of every enter and leave from now on.
    pub fn watch(&self) -> broadcast::Receiver<Arc<PresenceEvent>> {
        self.events.subscribe()
    }

    /// The present members whose id matches `filter` (a valid MQTT filter), sorted by id.
    pub fn members(&self, filter: &str) -> Vec<Member> {
        let mut out: Vec<Member> = self
            .members
            .lock()
            .iter()
            .filter(|((_, id), _)| topic::matches(filter, id))
            .map(|((kind, id), e)| Member {
                id: id.clone(),
                kind: *kind,
                since: e.since,
            })
            .collect();
        out.sort_by(|a, b| (&a.id, a.kind as u8).cmp(&(&b.id, b.kind as u8)));
        out
    }

    /// Whether `id` of this kind is present.
    pub fn is_present(&self, kind: MemberKind, id: &str) -> bool {
        self.members.lock().contains_key(&(kind, id.to_owned()))
    }

    /// Number of present members.
    pub fn len(&self) -> usize {
        self.members.lock().len()
    }

    /// True when nobody is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A browser connection declared `id`.
    pub fn browser_join(&self, id: &str) {
        let mut m = self.members.lock();
        let key = (MemberKind::Browser, id.to_owned());
        if let Some(e) = m.get_mut(&key) {
            e.conns += 1;
            return;
        }
        let since = now_ms();
        m.insert(
            key,
            Entry {
                since,
                conns: 1,
                grace: false,
                will_now: false,
            },
        );
        self.emit(PresenceAction::Enter, MemberKind::Browser, id, since, None);
    }

    /// A browser connection that declared `id` closed.
    pub fn browser_leave(&self, id: &str) {
        let mut m = self.members.lock();
        let key = (MemberKind::Browser, id.to_owned());
        let Some(e) = m.get_mut(&key) else { return };
        e.conns = e.conns.saturating_sub(1);
        if e.conns == 0 {
            let since = e.since;
            m.remove(&key);
            self.emit(
                PresenceAction::Leave,
                MemberKind::Browser,
                id,
                since,
                Some("disconnect"),
            );
        }
    }

    /// An MQTT client completed CONNECT (after any takeover finished).
    pub(crate) fn mqtt_connected(&self, id: &str) {
        let mut m = self.members.lock();
        let key = (MemberKind::Mqtt, id.to_owned());
        if let Some(e) = m.get_mut(&key) {
            e.conns = 1;
            e.grace = false;
            e.will_now = false;
            return;
        }
        let since = now_ms();
        m.insert(
            key,
            Entry {
                since,
                conns: 1,
                grace: false,
                will_now: false,
            },
        );
        self.emit(PresenceAction::Enter, MemberKind::Mqtt, id, since, None);
    }

    /// The ending connection of `id` scheduled its will, now or after a delay.
    pub(crate) fn mqtt_will_scheduled(&self, id: &str, delayed: bool) {
        if let Some(e) = self
            .members
            .lock()
            .get_mut(&(MemberKind::Mqtt, id.to_owned()))
        {
            if delayed {
                e.grace = true;
            } else {
                e.will_now = true;
            }
        }
    }

    /// The connection of `id` ended and nobody took its place.
    pub(crate) fn mqtt_released(&self, id: &str) {
        let mut m = self.members.lock();
        let key = (MemberKind::Mqtt, id.to_owned());
        let Some(e) = m.get_mut(&key) else { return };
        e.conns = 0;
        if e.grace {
            return;
        }
        let reason = if e.will_now { "will" } else { "disconnect" };
        let since = e.since;
        m.remove(&key);
        self.emit(
            PresenceAction::Leave,
            MemberKind::Mqtt,
            id,
            since,
            Some(reason),
        );
    }

    /// The delayed will of `id` was published (or its session ended first).
    pub(crate) fn mqtt_will_published(&self, id: &str) {
        let mut m = self.members.lock();
        let key = (MemberKind::Mqtt, id.to_owned());
        let Some(e) = m.get(&key) else { return };
        if e.conns > 0 {
            return;
        }
        let since = e.since;
        m.remove(&key);
        self.emit(
            PresenceAction::Leave,
            MemberKind::Mqtt,
            id,
            since,
            Some("will"),
        );
    }

    fn emit(
        &self,
        action: PresenceAction,
        kind: MemberKind,
        id: &str,
        since: u64,
        reason: Option<&'static str>,
    ) {
        // No watcher is not an error.
        let _ = self.events.send(Arc::new(PresenceEvent {
            action,
            member: Member {
                id: id.to_owned(),
                kind,
                since,
            },
            reason,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(
        rx: &mut broadcast::Receiver<Arc<PresenceEvent>>,
    ) -> (PresenceAction, String, Option<&'static str>) {
        let e = rx.try_recv().expect("an event");
        (e.action, e.member.id.clone(), e.reason)
    }

    #[test]
    fn mqtt_connect_disconnect_and_will() {
        let p = Presence::new();
        let mut rx = p.watch();
        p.mqtt_connected("dev/1");
        assert_eq!(next(&mut rx), (PresenceAction::Enter, "dev/1".into(), None));
        p.mqtt_connected("dev/1");
        assert!(rx.try_recv().is_err(), "a takeover is not a new entry");
        p.mqtt_released("dev/1");
        assert_eq!(
            next(&mut rx),
            (PresenceAction::Leave, "dev/1".into(), Some("disconnect"))
        );
        p.mqtt_connected("dev/2");
        let _ = next(&mut rx);
        p.mqtt_will_scheduled("dev/2", false);
        p.mqtt_released("dev/2");
        assert_eq!(
            next(&mut rx),
            (PresenceAction::Leave, "dev/2".into(), Some("will"))
        );
    }

    #[test]
    fn delayed_will_keeps_presence_until_published_or_reconnect() {
        let p = Presence::new();
        let mut rx = p.watch();
        p.mqtt_connected("d");
        let _ = next(&mut rx);
        p.mqtt_will_scheduled("d", true);
        p.mqtt_released("d");
        assert!(rx.try_recv().is_err());
        assert_eq!(p.members("#").len(), 1);
        // Reconnects in time: no events at all.
        p.mqtt_connected("d");
        assert!(rx.try_recv().is_err());
        p.mqtt_will_scheduled("d", true);
        p.mqtt_released("d");
        p.mqtt_will_published("d");
        assert_eq!(
            next(&mut rx),
            (PresenceAction::Leave, "d".into(), Some("will"))
        );
        assert!(p.is_empty());
    }

    #[test]
    fn browsers_count_connections_and_filters_match_ids() {
        let p = Presence::new();
        let mut rx = p.watch();
        p.browser_join("ops/alice");
        p.browser_join("ops/alice");
        p.mqtt_connected("plant1/dev7");
        assert_eq!(p.members("ops/+").len(), 1);
        assert_eq!(p.members("#").len(), 2);
        p.browser_leave("ops/alice");
        assert_eq!(
            p.members("ops/#").len(),
            1,
            "one connection still holds the id"
        );
        p.browser_leave("ops/alice");
        assert!(p.members("ops/#").is_empty());
        let kinds: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| (e.action, e.member.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (PresenceAction::Enter, MemberKind::Browser),
                (PresenceAction::Enter, MemberKind::Mqtt),
                (PresenceAction::Leave, MemberKind::Browser)
            ]
        );
    }
}
