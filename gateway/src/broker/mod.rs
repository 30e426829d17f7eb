//! The broker: the registry of connected clients, the subscription index, and live fan-out
//! from the log's release feed to subscribers.
//!
//! Layout:
//! - `mod.rs`: [`Broker`], its registry (client ids, takeover, delayed wills, session
//!   expiry timers) and shutdown.
//! - `outbox.rs`: the bounded per-connection queue the fan-out fills.
//! - `fanout.rs`: the task that matches each released message against the index.
//! - `presence.rs`: who is online (MQTT devices, browsers that declare a client id).

mod fanout;
pub mod outbox;
pub mod presence;

use crate::config::MqttConfig;
use crate::core::SubscriptionIndex;
use crate::core::message::Message;
use crate::log::{MessageLog, ReleaseFeed};
use outbox::Outbox;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Identifies one connection (one life of a client's network connection).
pub type ConnId = u64;

/// What the subscription index stores per (filter, connection).
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// Where matching messages go.
    pub outbox: Arc<Outbox>,
    /// For shared subscriptions, the full `$share/group/filter`, handed back with each
    /// delivery so the connection knows which of its subscriptions matched.
    pub share: Option<Arc<str>>,
}

/// A connected client as the registry sees it.
#[derive(Debug)]
struct Slot {
    conn: ConnId,
    /// Cancelled to make the connection leave (takeover).
    kick: CancellationToken,
    /// Cancelled by the connection once it has fully cleaned up and saved its session.
    done: CancellationToken,
}

/// Shared state of the MQTT side.
pub struct Broker {
    /// The log every publish goes through.
    pub log: Arc<dyn MessageLog>,
    /// MQTT settings from config.
    pub settings: MqttConfig,
    index: Mutex<SubscriptionIndex<ConnId, Subscriber>>,
    clients: Mutex<HashMap<String, Slot>>,
    /// Timers that end a delayed will or an offline session; cancelled on reconnect.
    wills: Mutex<HashMap<String, CancellationToken>>,
    expiries: Mutex<HashMap<String, CancellationToken>>,
    next_conn: AtomicU64,
    /// Cancelled at shutdown; every connection watches it.
    pub shutdown: CancellationToken,
    /// Counts connections and timers so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Who is online, for presence watchers and the REST listing.
    pub presence: presence::Presence,
}

/// How a takeover went, for CONNACK's session-present and the old connection's will.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Another connection with this client id was connected and has been made to leave.
    pub took_over: bool,
}

impl Broker {
    /// Starts the broker's fan-out task over `feed`. Must be called inside a tokio runtime.
    pub fn start(log: Arc<dyn MessageLog>, feed: ReleaseFeed, settings: MqttConfig) -> Arc<Broker> {
        let broker = Arc::new(Broker {
            log,
            settings,
            index: Mutex::new(SubscriptionIndex::new()),
            clients: Mutex::new(HashMap::new()),
            wills: Mutex::new(HashMap::new()),
            expiries: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            presence: presence::Presence::new(),
        });
        tokio::spawn(fanout::run(broker.clone(), feed));
        broker
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Number of connected clients (after CONNECT).
    pub fn client_count(&self) -> usize {
        self.clients.lock().len()
    }

    /// Registers `conn` as the live connection of `client_id`, making any previous one leave
    /// and waiting (bounded) until it has saved its session. Also cancels a pending delayed
    /// will and the offline-expiry timer of that client id. Returns the tokens the new
    /// connection watches: its kick token and its done token.
    pub async fn claim(
        &self,
        client_id: &str,
        conn: ConnId,
    ) -> (Claim, CancellationToken, CancellationToken) {
        let kick = CancellationToken::new();
        let done = CancellationToken::new();
        let old = {
            let mut clients = self.clients.lock();
            clients.insert(
                client_id.to_owned(),
                Slot {
                    conn,
                    kick: kick.clone(),
                    done: done.clone(),
                },
            )
        };
        let took_over = old.is_some();
        if let Some(old) = old {
            old.kick.cancel();
            if tokio::time::timeout(Duration::from_secs(10), old.done.cancelled())
                .await
                .is_err()
            {
                tracing::warn!(client_id, "previous connection did not leave within 10 s");
            }
        }
        if let Some(t) = self.wills.lock().remove(client_id) {
            t.cancel();
        }
        if let Some(t) = self.expiries.lock().remove(client_id) {
            t.cancel();
        }
        self.presence.mqtt_connected(client_id);
        (Claim { took_over }, kick, done)
    }

    /// Removes `client_id` from the registry if `conn` still owns it.
    pub fn release(&self, client_id: &str, conn: ConnId) {
        let mut clients = self.clients.lock();
        if clients.get(client_id).is_some_and(|s| s.conn == conn) {
            clients.remove(client_id);
            self.presence.mqtt_released(client_id);
        }
    }

    /// Adds or replaces a subscription in the live index.
    pub fn subscribe(&self, filter: &str, conn: ConnId, sub: Subscriber) {
        self.index.lock().insert(filter, conn, sub);
    }

    /// Number of connections (MQTT and browser) with a subscription matching `topic`, each
    /// counted once; every member of a shared group counts. Delivers nothing, so shared
    /// groups keep their round-robin position.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        let mut conns = Vec::<ConnId>::new();
        self.index
            .lock()
            .visit_matches(topic, |conn, _| conns.push(*conn));
        conns.sort_unstable();
        conns.dedup();
        conns.len()
    }

    /// Removes a subscription from the live index; true if it existed.
    pub fn unsubscribe(&self, filter: &str, conn: ConnId) -> bool {
        self.index.lock().remove(filter, &conn).is_some()
    }

    /// Publishes `will` after `delay` (zero: now), unless the client reconnects first. The
    /// caller passes the earlier of the will delay and the session expiry, as MQTT 5 asks.
    /// Delayed wills still pending at shutdown are not published.
    pub fn schedule_will(self: &Arc<Self>, client_id: &str, will: Message, delay: Duration) {
        self.presence
            .mqtt_will_scheduled(client_id, !delay.is_zero());
        if delay.is_zero() {
            // Published as the connection closes, even when a new connection is taking over.
            let broker = self.clone();
            let client = client_id.to_owned();
            self.tracker
                .spawn(async move { publish_will(&broker, &client, will).await });
            return;
        }
        self.spawn_timer(
            |b| &b.wills,
            client_id,
            delay,
            move |broker, client| async move {
                broker.presence.mqtt_will_published(&client);
                publish_will(&broker, &client, will).await;
            },
        );
    }

    /// Deletes the stored session of an offline client after `after`, unless it reconnects.
    pub fn schedule_expiry(self: &Arc<Self>, client_id: &str, after: Duration) {
        self.spawn_timer(|b| &b.expiries, client_id, after, |broker, client| async move {
            if broker.clients.lock().contains_key(&client) {
                return;
            }
            if let Err(e) = broker.log.session_delete(&client).await {
                tracing::warn!(client_id = %client, error = %e, "could not delete expired session");
            } else {
                tracing::info!(client_id = %client, "session expired");
            }
        });
    }

    /// Runs `fire` for `client_id` after `after`, unless the timer is cancelled first (a
    /// reconnect cancels every entry of `table` for its client id; a newer timer in the same
    /// table replaces this one) or the broker shuts down.
    fn spawn_timer<F, Fut>(
        self: &Arc<Self>,
        table: fn(&Broker) -> &Mutex<HashMap<String, CancellationToken>>,
        client_id: &str,
        after: Duration,
        fire: F,
    ) where
        F: FnOnce(Arc<Broker>, String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let token = CancellationToken::new();
        if let Some(old) = table(self)
            .lock()
            .insert(client_id.to_owned(), token.clone())
        {
            old.cancel();
        }
        let broker = self.clone();
        let client = client_id.to_owned();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = broker.shutdown.cancelled() => return,
                _ = tokio::time::sleep(after) => {}
            }
            {
                let mut entries = table(&broker).lock();
                if token.is_cancelled() {
                    return;
                }
                entries.remove(&client);
            }
            fire(broker, client).await;
        });
    }

    /// Disconnects every client (MQTT 5: DISCONNECT 0x8B, server shutting down) and waits,
    /// bounded, until they have saved their sessions. Call after the listeners stopped
    /// accepting.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish within 10 s of shutdown");
        }
    }
}

async fn publish_will(broker: &Broker, client: &str, mut will: Message) {
    will.ts_ms = crate::core::message::now_ms();
    match broker.log.append(will, None).await {
        Ok(pos) => tracing::debug!(client_id = client, pos = %pos.position(), "will published"),
        Err(e) => tracing::warn!(client_id = client, error = %e, "will could not be published"),
    }
}
