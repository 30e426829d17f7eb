//! `device-sim proxy`: a TCP proxy between devices (or browsers) and a broker that injects
//! latency, jitter, packet loss, bandwidth limits and connection cuts, so a deployment can be
//! tested over a bad network on one machine.
//!
//! # The fault model
//! The proxy relays a TCP byte stream, so it shows the application what a bad network does to
//! TCP, never a corrupted stream: bytes are never dropped or reordered.
//! - **latency ± jitter**: every chunk is delayed per direction (the two directions are
//!   independent, a round trip gains twice the latency). Jitter varies the delay but order is
//!   kept: a chunk is never released before the one ahead of it.
//! - **loss**: probability per chunk that a transmission is lost. TCP retransmits it after a
//!   retransmission timeout (`rto`, 200 ms by default, doubling for each further loss of the
//!   same chunk), and everything behind it waits: the application sees a stall, in order.
//!   After `max_retransmits` losses in a row the connection is cut, as TCP gives up.
//! - **cut**: probability per chunk that the connection ends at once (both sides reset), as a
//!   link failure would end it. Data in flight is lost with the connection, never silently
//!   from the middle of a live one.
//! - **bandwidth**: bytes per second per direction; chunks queue behind each other.
//!
//! The details and their unit tests are in [`faults`].
//!
//! # Library use
//! ```no_run
//! # async fn demo() -> Result<(), device_sim::proxy::ProxyError> {
//! use std::time::Duration;
//! use std::net::SocketAddr;
//! use device_sim::proxy::{Faults, Proxy};
//! let faults = Faults { latency: Duration::from_millis(50), loss: 0.01, ..Faults::default() };
//! let listen = SocketAddr::from(([127, 0, 0, 1], 0));
//! let broker = SocketAddr::from(([127, 0, 0, 1], 1883));
//! let proxy = Proxy::start(listen, broker, faults).await?;
//! println!("connect devices to {}", proxy.local_addr());
//! println!("{}", proxy.stats());
//! proxy.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`faults`]: the fault model and the per-direction release schedule (no I/O).
//! - `pipe`: one relayed connection, two directions with a bounded delay queue each.
//! - [`stats`]: the counters and their snapshot.
//! - [`cli`]: the `device-sim proxy` command.

pub mod cli;
pub mod faults;
mod pipe;
pub mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use faults::Faults;
pub use stats::ProxyStats;

use stats::Counters;

/// How long the proxy waits for the upstream to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The fault settings make no sense.
    #[error("invalid fault settings: {0}")]
    InvalidFaults(String),

    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {source}; is the port in use?")]
    Bind {
        /// The `--listen` address.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },

    /// The upstream host name did not resolve.
    #[error("cannot resolve upstream {upstream}: {detail}; check the --upstream host")]
    Resolve {
        /// The `--upstream` value.
        upstream: String,
        /// What the resolver said.
        detail: String,
    },
}

/// A running proxy. Dropping it stops accepting and cuts every relayed connection;
/// [`Proxy::shutdown`] does the same and waits until every task has ended.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    counters: Arc<Counters>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Proxy {
    /// Listens on `listen` (port 0 picks a free port, see [`Proxy::local_addr`]) and relays
    /// each connection to `upstream` with `faults` applied.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        faults: Faults,
    ) -> Result<Proxy, ProxyError> {
        faults.validate()?;
        let bind_err = |source| ProxyError::Bind {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        let counters = Arc::new(Counters::default());
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(accept_loop(
            listener,
            upstream,
            faults,
            counters.clone(),
            stop.clone(),
            tasks.clone(),
        ));
        Ok(Proxy {
            addr,
            counters,
            stop,
            tasks,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters so far.
    pub fn stats(&self) -> ProxyStats {
        self.counters.snapshot()
    }

    /// Stops accepting, cuts every relayed connection and waits for all of it to end.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: Faults,
    counters: Arc<Counters>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let mut index: u64 = 0;
    loop {
        let client = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(_) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        counters.accepted();
        let (faults, counters, stop) = (faults.clone(), counters.clone(), stop.clone());
        tasks.spawn(async move {
            let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream));
            let upstream = tokio::select! {
                _ = stop.cancelled() => return,
                c = connect => c,
            };
            match upstream {
                Ok(Ok(upstream)) => {
                    counters.open(true);
                    pipe::relay(client, upstream, &faults, index, counters.clone(), stop).await;
                    counters.open(false);
                }
                _ => {
                    // Refused or unreachable upstream: the client sees its connection reset,
                    // as if it had tried the upstream itself.
                    counters.upstream_failure();
                    let _ = client.set_zero_linger();
                }
            }
        });
        index = index.wrapping_add(1);
    }
}
