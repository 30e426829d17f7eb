//! One relayed connection: two directions, each a reader that stamps every chunk with its
//! release time (from a [`Schedule`]) and a writer that releases chunks in order at those
//! times. The queue between them is bounded, so a slow receiver slows the sender down as a
//! TCP window would, and memory stays bounded.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::faults::{Faults, Schedule, Verdict};
use super::stats::{Counters, Direction};

/// Largest chunk read at once; the unit the fault model decides on.
const CHUNK: usize = 16 * 1024;
/// Chunks queued per direction (at most `QUEUE × CHUNK` bytes held).
const QUEUE: usize = 256;

/// What travels from a direction's reader to its writer.
enum Item {
    /// Bytes to write at a time, and when they were read.
    Data(Instant, Instant, Bytes),
    /// The sender closed its side: shut down our write side at this time.
    Eof(Instant),
    /// Cut the connection at this time.
    Cut(Instant),
}

/// Relays `client` ⇄ `upstream` until both directions end, the fault model cuts the
/// connection, or `stop` is cancelled (which also cuts it). `index` numbers the connection
/// for reproducible random draws.
pub async fn relay(
    client: TcpStream,
    upstream: TcpStream,
    faults: &Faults,
    index: u64,
    counters: Arc<Counters>,
    stop: CancellationToken,
) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let cut = stop.child_token();
    let (client_rd, mut client_wr) = client.into_split();
    let (upstream_rd, mut upstream_wr) = upstream.into_split();
    let up = direction(
        client_rd,
        &mut upstream_wr,
        Schedule::new(faults.clone(), index.wrapping_mul(2)),
        Direction::Upstream,
        &counters,
        &cut,
    );
    let down = direction(
        upstream_rd,
        &mut client_wr,
        Schedule::new(faults.clone(), index.wrapping_mul(2).wrapping_add(1)),
        Direction::Downstream,
        &counters,
        &cut,
    );
    tokio::join!(up, down);
    if cut.is_cancelled() {
        if !stop.is_cancelled() {
            counters.cut();
        }
        // A cut link ends the connection without a goodbye: reset both sockets.
        let _ = client_wr.as_ref().set_zero_linger();
        let _ = upstream_wr.as_ref().set_zero_linger();
    }
}

/// One direction: reads from `from`, writes to `to` per the schedule. Cancels `cut` when the
/// model (or a socket error) ends the connection.
async fn direction(
    from: OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    schedule: Schedule,
    dir: Direction,
    counters: &Counters,
    cut: &CancellationToken,
) {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::join!(
        read_side(from, schedule, tx, counters, cut),
        write_side(rx, to, dir, counters, cut)
    );
}

async fn read_side(
    mut from: OwnedReadHalf,
    mut schedule: Schedule,
    tx: mpsc::Sender<Item>,
    counters: &Counters,
    cut: &CancellationToken,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = tokio::select! {
            _ = cut.cancelled() => return,
            r = from.read(&mut buf) => r,
        };
        let now = Instant::now();
        let item = match n {
            Ok(0) => Item::Eof(schedule.eof(now)),
            Ok(n) => match schedule.chunk(now, n) {
                Verdict::Forward { at, retransmits } => {
                    counters.losses(retransmits);
                    Item::Data(at, now, Bytes::copy_from_slice(&buf[..n]))
                }
                Verdict::Cut { at, retransmits } => {
                    counters.losses(retransmits);
                    if at <= now {
                        // A link failure: queued data is lost with the connection.
                        cut.cancel();
                        return;
                    }
                    Item::Cut(at)
                }
            },
            Err(_) => {
                // The sender reset its connection: pass the reset on to the other side.
                cut.cancel();
                return;
            }
        };
        let last = !matches!(item, Item::Data(..));
        tokio::select! {
            _ = cut.cancelled() => return,
            sent = tx.send(item) => if sent.is_err() { return },
        }
        if last {
            return;
        }
    }
}

async fn write_side(
    mut rx: mpsc::Receiver<Item>,
    to: &mut OwnedWriteHalf,
    dir: Direction,
    counters: &Counters,
    cut: &CancellationToken,
) {
    loop {
        let item = tokio::select! {
            _ = cut.cancelled() => return,
            item = rx.recv() => match item {
                Some(item) => item,
                None => return,
            },
        };
        let at = match &item {
            Item::Data(at, ..) | Item::Eof(at) | Item::Cut(at) => *at,
        };
        tokio::select! {
            _ = cut.cancelled() => return,
            _ = sleep_until(at) => {}
        }
        match item {
            Item::Data(at, read_at, bytes) => {
                let written = tokio::select! {
                    _ = cut.cancelled() => return,
                    w = to.write_all(&bytes) => w,
                };
                if written.is_err() {
                    cut.cancel();
                    return;
                }
                counters.forwarded(dir, bytes.len(), at > read_at);
            }
            Item::Eof(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Item::Cut(_) => {
                cut.cancel();
                return;
            }
        }
    }
}
