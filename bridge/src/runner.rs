//! [`Bridge`]: a running bridge. Its task connects, runs a session, and after any failure
//! waits (backoff with jitter) and connects again, until stopped. A committer task makes
//! the outbound cursor durable as it advances.

use crate::backoff::Backoff;
use crate::conn::{self, ConnError};
use crate::feed::{Limits, Outbound};
use crate::inbound::{InboundConfig, SessionRecord};
use crate::options::BridgeOptions;
use crate::outbound::Window;
use crate::session::{self, Shared};
use crate::sink::BridgeSink;
use crate::source::BridgeSource;
use crate::status::{Counters, Snapshot, State, Status};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Pause after a failure of the local side (source or sink) before trying again.
const LOCAL_RETRY: Duration = Duration::from_secs(1);

/// A bridge: started by [`Bridge::start`], observed with [`Bridge::status`], ended with
/// [`Bridge::stop`].
pub struct Bridge {
    name: String,
    remote: String,
    protocol: String,
    tls: bool,
    status: Arc<Status>,
    /// For the lag in the status; `None` for a bridge that never started.
    source: Option<Arc<dyn BridgeSource>>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Bridge {
    /// Starts a bridge; must be called inside a tokio runtime. It never fails: options that
    /// do not pass [`BridgeOptions::check`] give a bridge that stays `down` with the reason
    /// as its last error (and an error in the log), so one bad bridge affects nothing else.
    pub fn start(
        options: BridgeOptions,
        source: Arc<dyn BridgeSource>,
        sink: Arc<dyn BridgeSink>,
    ) -> Bridge {
        let name = options.name.clone();
        let mut bridge = Bridge {
            name: name.clone(),
            remote: options.address.clone(),
            protocol: options.protocol.to_string(),
            tls: options.tls.is_some(),
            status: Arc::new(Status::new(State::Down, None)),
            source: Some(source.clone()),
            stop: CancellationToken::new(),
            task: None,
        };
        let checked = match options.check() {
            Ok(c) => c,
            Err(e) => {
                let why = format!("invalid configuration, bridge not started: {e}");
                tracing::error!(bridge = %name, "{why}");
                bridge.status.set(State::Down, Some(why));
                return bridge;
            }
        };
        let echo_filters: Vec<String> = checked.out.iter().map(|r| r.output_filter()).collect();
        let (commit, commit_rx) = watch::channel(0u64);
        let shared = Shared {
            inbound: InboundConfig {
                sink,
                rules: checked.inbound.clone().into(),
                echo_filters: echo_filters.into(),
                protocol: checked.options.protocol,
                name: name.clone().into(),
                origin: checked.options.origin().into(),
                origin_value: checked.options.client_id.clone().into(),
            },
            checked,
            source,
            status: bridge.status.clone(),
            commit,
            stop: bridge.stop.clone(),
        };
        bridge.task = Some(tokio::spawn(run(shared, commit_rx)));
        bridge
    }

    /// A bridge that cannot start (for instance its configuration could not even be turned
    /// into options, or its name is taken): it stays `down` with `reason` as its last error.
    pub fn failed(name: &str, remote: &str, protocol: &str, reason: String) -> Bridge {
        tracing::error!(bridge = %name, "bridge not started: {reason}");
        Bridge {
            name: name.to_string(),
            remote: remote.to_string(),
            protocol: protocol.to_string(),
            tls: false,
            status: Arc::new(Status::new(State::Down, Some(reason))),
            source: None,
            stop: CancellationToken::new(),
            task: None,
        }
    }

    /// The bridge's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The status now.
    pub fn status(&self) -> Snapshot {
        self.status.snapshot(
            &self.name,
            &self.remote,
            &self.protocol,
            self.tls,
            self.source.as_ref().map_or(0, |s| s.head()),
        )
    }

    /// Stops the bridge: stops reading the source, waits (bounded) for the remote to
    /// acknowledge what is in flight, disconnects, and commits the cursor. Returns when done.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::error!(bridge = %self.name, error = %e, "bridge task ended abnormally");
            }
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The bridge's task.
async fn run(sh: Shared, commit_rx: watch::Receiver<u64>) {
    let name = sh.checked.options.name.clone();
    let committer = tokio::spawn(commit_loop(sh.source.clone(), commit_rx, name.clone()));
    if let Some((mut out, mut record)) = init(&sh).await {
        connect_loop(&sh, &mut out, &mut record).await;
        out.publish_cursor(&sh);
    }
    sh.status.set(State::Down, Some("stopped".into()));
    // Closing the channel lets the committer write the last cursor and end.
    drop(sh);
    if let Err(e) = committer.await {
        tracing::error!(bridge = %name, error = %e, "bridge committer ended abnormally");
    }
}

/// Loads the cursor and the inbound session record, retrying while the local side fails.
async fn init(sh: &Shared) -> Option<(Outbound, Option<SessionRecord>)> {
    let o = &sh.checked.options;
    loop {
        let loaded = sh
            .source
            .committed()
            .map_err(|e| e.to_string())
            .and_then(|c| {
                let rec = sh.inbound.sink.load_session().map_err(|e| e.to_string())?;
                Ok((c, rec))
            });
        match loaded {
            Ok((cursor, rec)) => {
                let start = match cursor {
                    Some(c) => c,
                    None => {
                        let head = sh.source.head();
                        tracing::info!(bridge = %o.name, start = head, "new bridge: forwarding from now on");
                        head
                    }
                };
                let capacity = (usize::from(o.max_inflight) * 2).max(64);
                let out = Outbound {
                    window: Window::new(start, usize::from(o.max_inflight), capacity),
                    more: true,
                    limits: Limits {
                        max_qos: crate::message::QoS::ExactlyOnce,
                        retain_available: true,
                        max_packet: None,
                        keep_alive: o.keep_alive,
                    },
                };
                // A new bridge records where it starts, so a restart resumes there.
                sh.commit.send_replace(start);
                out.publish_cursor(sh);
                return Some((out, rec.as_deref().and_then(SessionRecord::decode)));
            }
            Err(e) => {
                let why = format!("cannot load the bridge's state: {e}");
                tracing::warn!(bridge = %o.name, "{why}");
                sh.status.set(State::Down, Some(why));
                tokio::select! {
                    _ = sh.stop.cancelled() => return None,
                    _ = tokio::time::sleep(LOCAL_RETRY) => {}
                }
            }
        }
    }
}

/// Connects, runs sessions and reconnects until stopped.
async fn connect_loop(sh: &Shared, out: &mut Outbound, record: &mut Option<SessionRecord>) {
    let o = &sh.checked.options;
    let mut backoff = Backoff::new(o.reconnect_min, o.reconnect_max);
    let mut connected_before = false;
    let mut last_logged: Option<String> = None;
    loop {
        if sh.stop.is_cancelled() {
            return;
        }
        sh.status.set(State::Connecting, None);
        let opened = tokio::select! {
            _ = sh.stop.cancelled() => return,
            r = conn::open(&sh.checked) => r,
        };
        let error = match opened {
            Ok((c, ack)) => {
                backoff.reset();
                if connected_before {
                    Counters::add(&sh.status.counters.reconnects, 1);
                }
                connected_before = true;
                last_logged = None;
                tracing::info!(
                    bridge = %o.name,
                    remote = %o.address,
                    protocol = %o.protocol,
                    session_present = ack.session_present,
                    "bridge connected"
                );
                match session::run(sh, out, record, c, ack).await {
                    Ok(()) => return,
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        let delay = match &error {
            ConnError::Local(_) => LOCAL_RETRY,
            _ => backoff.next_delay(),
        };
        let text = error.to_string();
        sh.status.set(State::Down, Some(text.clone()));
        if last_logged.as_deref() != Some(text.as_str()) {
            tracing::warn!(
                bridge = %o.name,
                remote = %o.address,
                error = %text,
                retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "bridge down; will reconnect"
            );
            last_logged = Some(text);
        } else {
            tracing::debug!(bridge = %o.name, error = %text, "bridge still down");
        }
        if let Err(e) = out.enforce_lag(sh) {
            tracing::warn!(bridge = %o.name, error = %e, "cannot apply max_lag while down");
        }
        tokio::select! {
            _ = sh.stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Commits the cursor each time it advances (the log groups these writes with others),
/// and once more at the end.
async fn commit_loop(source: Arc<dyn BridgeSource>, mut rx: watch::Receiver<u64>, name: String) {
    let mut committed = 0u64;
    loop {
        let closed = rx.changed().await.is_err();
        let wanted = *rx.borrow_and_update();
        if wanted > committed {
            match source.commit(wanted).await {
                Ok(()) => committed = wanted,
                Err(e) => {
                    tracing::warn!(bridge = %name, error = %e, "cannot commit the bridge's cursor");
                    if closed || matches!(e, crate::source::SourceError::Closed) {
                        return;
                    }
                    tokio::time::sleep(LOCAL_RETRY).await;
                    // Try again with whatever is newest.
                    rx.mark_changed();
                    continue;
                }
            }
        }
        if closed {
            return;
        }
    }
}
