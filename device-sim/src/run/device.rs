//! One simulated device over the whole run: wait for its turn in the ramp-up, connect (with
//! exponential backoff while the broker cannot be reached), run a [`session`] while
//! connected, and after an injected or real disconnect start again, keeping its sequence
//! numbers, its payload model states and its unfinished messages.
//!
//! [`session`]: super::session

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use super::link::{Link, LinkError, LinkSpec, Will};
use super::outbox::{Kind, Message, Outbox};
use super::schedule::{Retry, device_seed};
use super::session::{self, End};
use super::stats::ClassStats;
use crate::scenario::{Broker, Class, ModelState, Vars};

/// How long a device waits for CONNACK.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the devices of one class share.
pub struct ClassPlan {
    /// Position of the class in the scenario (for seeds).
    pub index: usize,
    /// The class.
    pub class: Class,
    /// Its counters.
    pub stats: Arc<ClassStats>,
    /// Where its devices connect (the broker, or the fault proxy in front of it).
    pub broker: Broker,
    /// TLS configuration for TLS brokers.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// When the run started (time base of sine models and storms).
    pub run_start: Instant,
    /// Seed of the run.
    pub seed: u64,
    /// For each storm of the class, which devices (by 0-based index) it takes down.
    pub storm_members: Vec<Vec<bool>>,
    /// How long connected devices may take to finish in-flight messages at the end.
    pub drain: Duration,
}

/// Per stream: the expanded topic, the model state and when the next message is due.
pub(super) struct StreamState {
    pub topic: String,
    pub model: ModelState,
    pub next: Option<Instant>,
}

/// A device and everything it keeps across connections.
pub struct Device {
    pub(super) plan: Arc<ClassPlan>,
    pub(super) n: u64,
    pub(super) id: String,
    pub(super) rng: SmallRng,
    /// The last sequence number stamped.
    pub(super) seq: u64,
    pub(super) streams: Vec<StreamState>,
    /// Command filters, expanded.
    pub(super) filters: Vec<String>,
    pub(super) outbox: Outbox,
    /// Messages left unfinished by the previous connection.
    pub(super) backlog: Vec<Message>,
    /// Storms still to come for this device: when, and how long to stay offline.
    pub(super) storms: VecDeque<(Instant, Duration)>,
    start_at: Instant,
    connected_once: bool,
}

impl Device {
    /// Device number `n` (1-based) of a class; it starts connecting at `start_at`.
    pub fn new(plan: Arc<ClassPlan>, n: u64, start_at: Instant) -> Self {
        let class = &plan.class;
        let base = Vars {
            class: &class.name,
            id: "",
            n,
            command: None,
        };
        let id = class.client_id.expand(&base);
        let vars = Vars { id: &id, ..base };
        let streams = class
            .telemetry
            .iter()
            .map(|s| StreamState {
                topic: s.topic.expand(&vars),
                model: s.payload.initial_state(),
                next: None,
            })
            .collect();
        let filters = class
            .commands
            .iter()
            .map(|c| c.filter.expand(&vars))
            .collect();
        let index = usize::try_from(n.saturating_sub(1)).unwrap_or(usize::MAX);
        let mut storms: Vec<(Instant, Duration)> = class
            .faults
            .storms
            .iter()
            .zip(&plan.storm_members)
            .filter(|(_, members)| members.get(index).copied().unwrap_or(false))
            .map(|(s, _)| (plan.run_start + s.at, s.reconnect_delay))
            .collect();
        storms.sort_by_key(|s| s.0);
        let rng = SmallRng::seed_from_u64(device_seed(plan.seed, plan.index, n));
        Self {
            n,
            id,
            rng,
            seq: 0,
            streams,
            filters,
            outbox: Outbox::default(),
            backlog: Vec::new(),
            storms: storms.into(),
            start_at,
            connected_once: false,
            plan,
        }
    }

    /// Runs the device until `stop` is cancelled and its last session has ended.
    pub async fn run(mut self, stop: CancellationToken) {
        let stats = self.plan.stats.clone();
        tokio::select! {
            _ = sleep_until(self.start_at) => {}
            _ = stop.cancelled() => return self.finish(),
        }
        let mut retry = Retry::new(self.plan.class.reconnect);
        loop {
            // Boxed, with its spec: a TLS or WebSocket handshake is large and only lives
            // while connecting, and the device task stays small for the rest of the run.
            let spec = self.link_spec();
            let opening =
                Box::pin(async move { timeout(CONNECT_TIMEOUT, Link::open(&spec)).await });
            let opened = tokio::select! {
                r = opening => r.unwrap_or_else(|_| {
                    Err(LinkError { kind: "connect_timeout", detail: "no CONNACK (timeout)".into() })
                }),
                _ = stop.cancelled() => break,
            };
            let mut link = match opened {
                Ok(link) => link,
                Err(e) => {
                    ClassStats::add(&stats.connect_failures, 1);
                    stats.error(e.kind);
                    if !self.wait_to_retry(&mut retry, e.detail, &stop).await {
                        break;
                    }
                    continue;
                }
            };
            retry.reset();
            ClassStats::add(&stats.connected, 1);
            if self.connected_once {
                ClassStats::add(&stats.reconnects, 1);
            } else {
                ClassStats::add(&stats.ever_connected, 1);
                self.connected_once = true;
            }
            let end = session::run(&mut self, &mut link, &stop).await;
            ClassStats::sub(&stats.connected);
            drop(link);
            self.backlog.extend(self.outbox.take_unfinished());
            match end {
                End::Stopped => break,
                End::Injected(offline) => {
                    ClassStats::add(&stats.injected, 1);
                    tokio::select! {
                        _ = tokio::time::sleep(offline) => {}
                        _ = stop.cancelled() => break,
                    }
                }
                End::Lost(e) => {
                    stats.error(e.kind);
                    if !self.wait_to_retry(&mut retry, e.detail, &stop).await {
                        break;
                    }
                }
            }
        }
        self.finish();
    }

    /// Waits out the backoff, shown as "retrying in ..."; false when the run is stopping.
    async fn wait_to_retry(
        &mut self,
        retry: &mut Retry,
        detail: String,
        stop: &CancellationToken,
    ) -> bool {
        let stats = &self.plan.stats;
        let delay = retry.next_delay(&mut self.rng);
        stats.retrying(detail, Instant::now() + delay);
        ClassStats::add(&stats.waiting, 1);
        let go_on = tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = stop.cancelled() => false,
        };
        ClassStats::sub(&stats.waiting);
        go_on
    }

    /// Counts what never finished: written but unacknowledged telemetry failed, telemetry
    /// never written was dropped.
    fn finish(mut self) {
        let stats = &self.plan.stats;
        self.backlog.extend(self.outbox.take_unfinished());
        for m in &self.backlog {
            if let Kind::Telemetry(_) = m.kind {
                if m.sent {
                    ClassStats::add(&stats.failed, 1);
                } else {
                    ClassStats::add(&stats.dropped, 1);
                }
            }
        }
    }

    fn link_spec(&self) -> LinkSpec {
        let class = &self.plan.class;
        let vars = Vars {
            class: &class.name,
            id: &self.id,
            n: self.n,
            command: None,
        };
        LinkSpec {
            client_id: self.id.clone(),
            broker: self.plan.broker.clone(),
            tls: self.plan.tls.clone(),
            protocol: class.protocol,
            credentials: class
                .username
                .as_ref()
                .map(|u| (u.clone(), class.password.clone().unwrap_or_default())),
            keep_alive: class.keep_alive,
            clean_session: class.clean_session,
            session_expiry: class.session_expiry,
            inflight: class.inflight,
            queue: class.queue,
            will: class.will.as_ref().map(|w| Will {
                topic: w.topic.expand(&vars),
                payload: w.payload.expand(&vars),
                qos: w.qos,
                retain: w.retain,
            }),
        }
    }
}
