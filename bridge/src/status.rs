//! What a bridge reports: its connection state with the last error, and its counters.
//! The bridge task writes them; [`crate::Bridge::status`] reads a [`Snapshot`] at any time.

use parking_lot::Mutex;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Connection state of a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Connecting (TCP, TLS, CONNECT) right now.
    Connecting,
    /// Connected: forwarding.
    Connected,
    /// Not connected: waiting before the next attempt, or stopped, or not startable (see
    /// `last_error`).
    Down,
}

/// Counters of one bridge since it started. All are totals except `lag`, `cursor` and
/// `inflight`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Messages the remote acknowledged (or QoS 0 messages written).
    pub forwarded_out: AtomicU64,
    /// Messages from the remote stored durably by the sink.
    pub forwarded_in: AtomicU64,
    /// Outbound messages skipped because the bridge fell more than `max_lag` behind.
    pub skipped_lag: AtomicU64,
    /// Outbound positions lost to the source's retention before the bridge read them.
    pub lost_retention: AtomicU64,
    /// Inbound messages dropped because they had left through this bridge (loop
    /// prevention).
    pub loops_prevented: AtomicU64,
    /// Outbound messages the remote refused (reason code ≥ 0x80) or that were too large for
    /// it; given up.
    pub refused_out: AtomicU64,
    /// Inbound messages the sink refused (for instance an invalid local topic); acknowledged
    /// and dropped.
    pub rejected_in: AtomicU64,
    /// Inbound QoS 2 messages the remote sent again and the sink recognised as stored.
    pub duplicates_in: AtomicU64,
    /// Successful connections after the first.
    pub reconnects: AtomicU64,
    /// The outbound cursor (position of the oldest message not done).
    pub cursor: AtomicU64,
    /// Outbound QoS 1/2 messages in flight.
    pub inflight: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone)]
struct StateInfo {
    state: State,
    last_error: Option<String>,
    since_ms: u64,
}

/// Shared, live status of one bridge.
#[derive(Debug)]
pub(crate) struct Status {
    info: Mutex<StateInfo>,
    pub counters: Counters,
}

impl Status {
    pub fn new(state: State, error: Option<String>) -> Status {
        Status {
            info: Mutex::new(StateInfo {
                state,
                last_error: error,
                since_ms: now_ms(),
            }),
            counters: Counters::default(),
        }
    }

    /// Moves to `state`; an error given becomes the last error (a successful connection
    /// keeps the previous one for reference).
    pub fn set(&self, state: State, error: Option<String>) {
        let mut i = self.info.lock();
        if i.state != state {
            i.since_ms = now_ms();
        }
        i.state = state;
        if error.is_some() {
            i.last_error = error;
        }
    }

    fn info(&self) -> StateInfo {
        self.info.lock().clone()
    }
}

/// A bridge's status at one moment, as the status API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// The bridge's name.
    pub name: String,
    /// The remote's address.
    pub remote: String,
    /// MQTT version spoken to the remote: `"3.1.1"` or `"5"`.
    pub protocol: String,
    /// Whether TLS is used.
    pub tls: bool,
    /// Connection state.
    pub state: State,
    /// Milliseconds since the Unix epoch when the state was entered.
    pub state_since_ms: u64,
    /// The last error: why the bridge is down, or why it last was.
    pub last_error: Option<String>,
    /// Positions between the outbound cursor and the source's head: messages published
    /// since the oldest one still waiting to be forwarded.
    pub lag: u64,
    /// The outbound cursor.
    pub cursor: u64,
    /// Outbound QoS 1/2 messages in flight.
    pub inflight: u64,
    /// Messages forwarded to the remote (acknowledged by it).
    pub forwarded_out: u64,
    /// Messages received from the remote and stored.
    pub forwarded_in: u64,
    /// Outbound messages skipped by the lag bound (`max_lag`).
    pub skipped_lag: u64,
    /// Outbound positions lost to retention before the bridge read them.
    pub lost_retention: u64,
    /// Inbound messages dropped because they had left through this bridge.
    pub loops_prevented: u64,
    /// Outbound messages the remote refused or that were too large for it.
    pub refused_out: u64,
    /// Inbound messages the local side refused.
    pub rejected_in: u64,
    /// Inbound QoS 2 messages received again and recognised as already stored.
    pub duplicates_in: u64,
    /// Reconnections after the first connection.
    pub reconnects: u64,
}

impl Status {
    /// Reads everything; `head` is the source's head, for the lag.
    pub fn snapshot(
        &self,
        name: &str,
        remote: &str,
        protocol: &str,
        tls: bool,
        head: u64,
    ) -> Snapshot {
        let info = self.info();
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let cursor = get(&c.cursor);
        Snapshot {
            name: name.to_string(),
            remote: remote.to_string(),
            protocol: protocol.to_string(),
            tls,
            state: info.state,
            state_since_ms: info.since_ms,
            last_error: info.last_error,
            lag: if cursor == 0 {
                0
            } else {
                head.saturating_sub(cursor)
            },
            cursor,
            inflight: get(&c.inflight),
            forwarded_out: get(&c.forwarded_out),
            forwarded_in: get(&c.forwarded_in),
            skipped_lag: get(&c.skipped_lag),
            lost_retention: get(&c.lost_retention),
            loops_prevented: get(&c.loops_prevented),
            refused_out: get(&c.refused_out),
            rejected_in: get(&c.rejected_in),
            duplicates_in: get(&c.duplicates_in),
            reconnects: get(&c.reconnects),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
