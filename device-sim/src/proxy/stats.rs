//! Counters of the proxy: shared atomics the connection tasks bump, and the plain snapshot
//! [`ProxyStats`] that [`super::Proxy::stats`] returns and the CLI prints.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Direction of a forwarded chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client that connected to the proxy towards the upstream server.
    Upstream,
    /// From the upstream server back to the client.
    Downstream,
}

/// The live counters, bumped by connection tasks.
#[derive(Debug, Default)]
pub struct Counters {
    accepted: AtomicU64,
    open: AtomicU64,
    upstream_failures: AtomicU64,
    cuts: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    chunks_up: AtomicU64,
    chunks_down: AtomicU64,
    delayed: AtomicU64,
    stalled: AtomicU64,
    losses: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// A client connected to the proxy.
    pub fn accepted(&self) {
        add(&self.accepted, 1);
    }

    /// A relayed connection opened (`true`) or ended (`false`).
    pub fn open(&self, opened: bool) {
        if opened {
            add(&self.open, 1);
        } else {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The upstream could not be reached for a new client.
    pub fn upstream_failure(&self) {
        add(&self.upstream_failures, 1);
    }

    /// A connection was cut by the fault model.
    pub fn cut(&self) {
        add(&self.cuts, 1);
    }

    /// Simulated lost transmissions of one chunk.
    pub fn losses(&self, retransmits: u32) {
        if retransmits > 0 {
            add(&self.losses, u64::from(retransmits));
            add(&self.stalled, 1);
        }
    }

    /// A chunk of `len` bytes was written out, `delayed` if it was held back at all.
    pub fn forwarded(&self, dir: Direction, len: usize, delayed: bool) {
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        match dir {
            Direction::Upstream => {
                add(&self.bytes_up, len);
                add(&self.chunks_up, 1);
            }
            Direction::Downstream => {
                add(&self.bytes_down, len);
                add(&self.chunks_down, 1);
            }
        }
        if delayed {
            add(&self.delayed, 1);
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> ProxyStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProxyStats {
            connections: get(&self.accepted),
            open: get(&self.open),
            upstream_failures: get(&self.upstream_failures),
            cuts: get(&self.cuts),
            bytes_up: get(&self.bytes_up),
            bytes_down: get(&self.bytes_down),
            chunks_up: get(&self.chunks_up),
            chunks_down: get(&self.chunks_down),
            chunks_delayed: get(&self.delayed),
            chunks_stalled: get(&self.stalled),
            losses: get(&self.losses),
        }
    }
}

/// What the proxy has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProxyStats {
    /// Client connections accepted.
    pub connections: u64,
    /// Relayed connections open now.
    pub open: u64,
    /// Clients closed because the upstream did not accept a connection.
    pub upstream_failures: u64,
    /// Connections cut by the fault model (`cut` probability, or retransmissions exhausted).
    pub cuts: u64,
    /// Bytes forwarded client → upstream.
    pub bytes_up: u64,
    /// Bytes forwarded upstream → client.
    pub bytes_down: u64,
    /// Chunks forwarded client → upstream.
    pub chunks_up: u64,
    /// Chunks forwarded upstream → client.
    pub chunks_down: u64,
    /// Chunks released later than they arrived (latency, jitter, bandwidth, loss, or waiting
    /// behind such a chunk).
    pub chunks_delayed: u64,
    /// Chunks that had at least one simulated lost transmission.
    pub chunks_stalled: u64,
    /// Simulated lost transmissions (each costs one retransmission timeout).
    pub losses: u64,
}

impl fmt::Display for ProxyStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connections {} (open {}, cut {}, upstream failures {}), up {} B / {} chunks, \
             down {} B / {} chunks, delayed {}, stalled {} ({} losses)",
            self.connections,
            self.open,
            self.cuts,
            self.upstream_failures,
            self.bytes_up,
            self.chunks_up,
            self.bytes_down,
            self.chunks_down,
            self.chunks_delayed,
            self.chunks_stalled,
            self.losses
        )
    }
}
