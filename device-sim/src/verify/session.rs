//! The verification loop: hold one subscription open, feed what arrives to the [`Ledger`],
//! keep the resume position, and reconnect, resuming from it, when the connection drops or
//! when the verifier drops it on purpose (`--disconnect-every`, `--disconnect-after`). Ends
//! at `--duration`, after `--until-idle` without a stamped message, when every expected
//! message has arrived, or when the caller's stop signal fires.

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, sleep, sleep_until};

use super::ledger::Ledger;
use super::report::Report;
use super::transport::{Conn, ConnError, Event, Opened, Start};
use super::{Config, VerifyError};
use crate::stamp::unix_micros;

/// First and longest pause between reconnection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// A connected verifier, ready to [`Verifier::run`].
pub struct Verifier {
    config: Config,
    conn: Option<Conn>,
    /// The last gateway position received: where a resume starts.
    position: Option<String>,
    start_position: Option<String>,
    ledger: Ledger,
    started: Instant,
}

/// What woke the loop.
enum Step {
    Stop,
    Planned,
    Event(Result<Event, ConnError>),
}

async fn until(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Verifier {
    /// Connects and subscribes (the first connection must succeed); messages are counted from
    /// here on.
    pub async fn connect(config: Config) -> Result<Verifier, VerifyError> {
        config.validate()?;
        let settings = config.settings();
        let opened = Conn::open(&config.source, &settings, Start::Fresh)
            .await
            .map_err(|e| first_error(&config, e))?;
        let mut v = Verifier {
            ledger: Ledger::new(config.expect.clone()),
            config,
            conn: None,
            position: None,
            start_position: opened.position.clone(),
            started: Instant::now(),
        };
        v.adopt(opened);
        Ok(v)
    }

    /// The gateway position the subscription started after (WS/SSE).
    pub fn start_position(&self) -> Option<&str> {
        self.start_position.as_deref()
    }

    fn adopt(&mut self, opened: Opened) {
        if let Some(p) = opened.position {
            self.position = Some(p);
        }
        if opened.session_lost {
            self.ledger.reset(format!(
                "the broker kept no session for client id {}: messages published while \
                 disconnected are lost",
                self.config.mqtt.client_id
            ));
        }
        self.conn = Some(opened.conn);
    }

    /// Verifies until the run ends (see the module header) or `stop` completes, then reports.
    pub async fn run(mut self, stop: impl Future<Output = ()>) -> Result<Report, VerifyError> {
        tokio::pin!(stop);
        let settings = self.config.settings();
        let deadline = self.config.duration.map(|d| self.started + d);
        let every = self.config.disconnect_every;
        let mut next_planned = every.map(|d| Instant::now() + d);
        let mut last_msg = Instant::now();
        let mut conn_msgs: u64 = 0;
        let mut backoff = BACKOFF.0;
        // After a planned disconnect: stay away until then.
        let mut back_at: Option<Instant> = None;
        let mut next_progress = self.config.progress_every.map(|d| Instant::now() + d);
        loop {
            if self.ledger.complete() {
                break;
            }
            let idle_end = self.config.until_idle.map(|d| last_msg + d);
            let end = match (deadline, idle_end) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(at) = next_progress.filter(|at| *at <= Instant::now()) {
                eprintln!("verify: {}", self.progress());
                next_progress = self.config.progress_every.map(|d| at + d);
            }
            let Some(conn) = self.conn.as_mut() else {
                if let Some(at) = back_at.take() {
                    tokio::select! {
                        _ = &mut stop => break,
                        _ = until(end) => break,
                        _ = sleep_until(at) => {}
                    }
                }
                let start = Start::Resume(self.position.as_deref());
                let attempt = Conn::open(&self.config.source, &settings, start);
                let opened = tokio::select! {
                    _ = &mut stop => break,
                    _ = until(end) => break,
                    r = attempt => r,
                };
                match opened {
                    Ok(opened) => {
                        self.adopt(opened);
                        backoff = BACKOFF.0;
                        conn_msgs = 0;
                    }
                    Err(e) if e.fatal => return Err(refused(&self.config, e)),
                    Err(e) => {
                        self.ledger.error(e.kind);
                        tokio::select! {
                            _ = &mut stop => break,
                            _ = until(end) => break,
                            _ = sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(BACKOFF.1);
                    }
                }
                continue;
            };
            let step = tokio::select! {
                _ = &mut stop => Step::Stop,
                _ = until(end) => Step::Stop,
                _ = until(next_progress) => continue,
                _ = until(next_planned) => Step::Planned,
                event = conn.next() => Step::Event(event),
            };
            match step {
                Step::Stop => break,
                Step::Planned => {
                    self.disconnect(&mut last_msg).await;
                    back_at = Some(Instant::now() + self.config.offline);
                    next_planned = every.map(|d| Instant::now() + self.config.offline + d);
                }
                Step::Event(Err(e)) => {
                    self.conn = None;
                    self.ledger.error(e.kind);
                    if e.fatal {
                        return Err(refused(&self.config, e));
                    }
                    self.ledger.reconnected(false);
                }
                Step::Event(Ok(event)) => {
                    if self.account(event) {
                        last_msg = Instant::now();
                        conn_msgs += 1;
                        if self.config.disconnect_after.is_some_and(|n| conn_msgs >= n) {
                            self.disconnect(&mut last_msg).await;
                            back_at = Some(Instant::now() + self.config.offline);
                        }
                    }
                }
            }
        }
        if let Some(conn) = self.conn.take() {
            for event in conn.close().await {
                self.account(event);
            }
        }
        let secs = self.started.elapsed().as_secs_f64();
        let source = self.config.source.to_string();
        Ok(self.ledger.report(&source, &self.config.filters, secs))
    }

    /// Closes the connection on purpose; the loop reconnects with the resume position.
    async fn disconnect(&mut self, last_msg: &mut Instant) {
        if let Some(conn) = self.conn.take() {
            for event in conn.close().await {
                if self.account(event) {
                    *last_msg = Instant::now();
                }
            }
            self.ledger.reconnected(true);
        }
    }

    /// Feeds one event to the ledger; true if it was a stamped live message.
    fn account(&mut self, event: Event) -> bool {
        match event {
            Event::Message {
                stamp,
                position,
                retained,
            } => {
                if let Some(p) = position {
                    self.position = Some(p);
                }
                if retained {
                    self.ledger.retained();
                    return false;
                }
                match stamp {
                    Some(stamp) => {
                        self.ledger.observe(&stamp, unix_micros());
                        return true;
                    }
                    None => self.ledger.unstamped(),
                }
            }
            Event::Position(p) => self.position = Some(p),
            Event::Reset(notice) => self.ledger.reset(notice),
            Event::Dropped(n) => self.ledger.dropped(n),
            Event::ServerError(_) => self.ledger.error("server_error"),
        }
        false
    }

    /// One line of progress for long runs.
    fn progress(&self) -> String {
        format!(
            "{:.0} s: {}",
            self.started.elapsed().as_secs_f64(),
            self.ledger.progress()
        )
    }
}

fn first_error(config: &Config, e: ConnError) -> VerifyError {
    if e.fatal {
        refused(config, e)
    } else {
        VerifyError::Connect {
            source_url: config.source.to_string(),
            detail: e.detail,
        }
    }
}

fn refused(config: &Config, e: ConnError) -> VerifyError {
    VerifyError::Refused {
        source_url: config.source.to_string(),
        detail: e.detail,
    }
}
