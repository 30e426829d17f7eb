//! A TCP relay between a client under test and the gateway, so a test can cut every
//! connection at once (as a network drop would) and point the relay at a restarted gateway
//! on a new port while the client keeps using the same address.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// The relay's target and its live connections.
type Shared = Arc<Mutex<(SocketAddr, Vec<AbortHandle>)>>;

/// A running relay. Dropping it stops accepting and cuts what is open.
pub struct Proxy {
    addr: SocketAddr,
    shared: Shared,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on an ephemeral loopback port and relays to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let shared: Shared = Arc::new(Mutex::new((target, Vec::new())));
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Ok(mut g) = s.lock() else { return };
                let to = g.0;
                let task = tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                g.1.retain(|h| !h.is_finished());
                g.1.push(task.abort_handle());
            }
        });
        Proxy {
            addr,
            shared,
            accept,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every relayed connection now, without a goodbye in either direction. Returns
    /// how many were open.
    pub fn cut(&self) -> usize {
        let handles = match self.shared.lock() {
            Ok(mut g) => std::mem::take(&mut g.1),
            Err(_) => Vec::new(),
        };
        let open = handles.iter().filter(|h| !h.is_finished()).count();
        for h in handles {
            h.abort();
        }
        open
    }

    /// Relays new connections to `target` from now on.
    pub fn retarget(&self, target: SocketAddr) {
        if let Ok(mut g) = self.shared.lock() {
            g.0 = target;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
