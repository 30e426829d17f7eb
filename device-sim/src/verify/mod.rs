//! `device-sim verify`: the end-to-end verifier. It subscribes where a dashboard or a backend
//! would (the gateway's WebSocket or SSE, or any MQTT broker), reads the [stamp](crate::stamp)
//! of every message, and reports per device and overall what was lost, duplicated or
//! reordered, the end-to-end latency, and every notice of lost continuity.
//!
//! # What counts
//! - **lost**: gaps in a device's sequence. The baseline is sequence 1 with `--from-start`
//!   (the verifier was meant to see everything: start it before the devices, or give
//!   `--since` a position from before them), else the first number seen. Messages missing at
//!   the end of a stream cannot be told from messages not sent yet; they count only with
//!   `--expect-last-seq`.
//! - **duplicates**: a (device, seq) seen again. MQTT QoS 1 allows them after a reconnect:
//!   `--allow-duplicates` reports them without failing.
//! - **reordered**: a number lower than the highest seen that had not been seen.
//! - **latency**: receive time − stamp time, first arrivals only (the clocks of sender and
//!   verifier must agree; stamps from the future count as 0 and are reported).
//! - **resets**: a gateway `reset` (history no longer covers the position), or an MQTT broker
//!   that kept no session on a resume. Always a failure.
//!
//! A run fails (the command exits non-zero) on any loss, reordering, duplicate (unless
//! allowed), reset, gateway drop, missing expected device, or when nothing stamped arrived.
//!
//! # Resume
//! The verifier keeps the last position it received (WS `pos`, SSE `id:`, heartbeats
//! included). When its connection drops, or when it drops it on purpose to test the gateway
//! (`--disconnect-every`, `--disconnect-after`), it reconnects with `since` = that position
//! (WS) or `Last-Event-ID` (SSE), and must then see no gap and no duplicate. Over MQTT, resume
//! is a persistent session (fixed client id, QoS 1, session kept by the broker).
//!
//! # Library use
//! [`Verifier::connect`] returns once subscribed (so a test can start publishing), and
//! [`Verifier::run`] returns the [`Report`].
//!
//! # Layout
//! - [`tracker`], [`gaps`]: one device's sequence accounting (no I/O).
//! - [`ledger`]: all devices, latency, notices, and the pass/fail rules (no I/O).
//! - [`report`]: the report, its tables and its JSON.
//! - [`session`]: the loop: events in, reconnect and resume.
//! - [`transport`]: the connection seam; [`ws`], [`sse`], [`mqtt`] behind it, [`frames`] for
//!   the gateway's JSON objects; [`source`]: the `--source` URL.
//! - [`cli`]: the `device-sim verify` command.

pub mod cli;
mod error;
pub mod frames;
pub mod gaps;
pub mod ledger;
pub mod mqtt;
pub mod report;
pub mod session;
pub mod source;
pub mod sse;
pub mod tracker;
pub mod transport;
pub mod ws;

use std::time::Duration;

pub use error::VerifyError;
pub use ledger::{Expectations, Ledger};
pub use report::Report;
pub use session::Verifier;
pub use source::Source;
pub use transport::MqttSettings;

use transport::Settings;

/// Everything a verification run needs. [`Config::new`] gives the defaults of the command.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where to subscribe.
    pub source: Source,
    /// Filters to subscribe to (MQTT syntax).
    pub filters: Vec<String>,
    /// Start after this gateway position instead of now (WS/SSE).
    pub since: Option<String>,
    /// What the run must show to pass.
    pub expect: Expectations,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this long without a stamped message.
    pub until_idle: Option<Duration>,
    /// Drop the connection and resume every so often.
    pub disconnect_every: Option<Duration>,
    /// Drop the connection and resume after this many stamped messages on a connection.
    pub disconnect_after: Option<u64>,
    /// How long to stay away after a planned disconnect, so messages are published meanwhile
    /// and the resume has something to catch up.
    pub offline: Duration,
    /// MQTT client options (MQTT sources only).
    pub mqtt: MqttSettings,
    /// Bound on each connect-and-subscribe.
    pub connect_timeout: Duration,
    /// Print a progress line to stderr this often.
    pub progress_every: Option<Duration>,
}

impl Config {
    /// A run on `source` for `filter` with the command's defaults: no time limit, MQTT 5 at
    /// QoS 1 with a persistent session and a client id unique to this process.
    pub fn new(source: Source, filter: impl Into<String>) -> Self {
        Self {
            source,
            filters: vec![filter.into()],
            since: None,
            expect: Expectations::default(),
            duration: None,
            until_idle: None,
            disconnect_every: None,
            disconnect_after: None,
            offline: Duration::from_millis(200),
            mqtt: MqttSettings {
                version: 5,
                qos: 1,
                client_id: format!(
                    "dsim-verify-{}-{}",
                    std::process::id(),
                    crate::stamp::unix_micros() % 1_000_000
                ),
                persistent: true,
            },
            connect_timeout: Duration::from_secs(10),
            progress_every: None,
        }
    }

    /// Checks option combinations.
    pub fn validate(&self) -> Result<(), VerifyError> {
        let bad = |m: &str| Err(VerifyError::InvalidArgs(m.to_string()));
        if self.filters.iter().all(|f| f.is_empty()) {
            return bad("give at least one --filter");
        }
        if !matches!(self.mqtt.version, 4 | 5) {
            return bad("--mqtt-version is 4 (3.1.1) or 5");
        }
        if let Source::Mqtt { .. } = self.source {
            if self.since.is_some() {
                return bad("--since is a gateway position; MQTT sources resume by session");
            }
            let resumes = self.disconnect_every.is_some() || self.disconnect_after.is_some();
            if resumes && (!self.mqtt.persistent || self.mqtt.qos == 0) {
                return bad(
                    "--disconnect-every/--disconnect-after over MQTT need a persistent session \
                     at QoS 1 (drop --clean and --qos 0)",
                );
            }
        }
        if self.disconnect_after == Some(0) || self.disconnect_every == Some(Duration::ZERO) {
            return bad("--disconnect-after and --disconnect-every must be above zero");
        }
        Ok(())
    }

    fn settings(&self) -> Settings {
        Settings {
            filters: self
                .filters
                .iter()
                .filter(|f| !f.is_empty())
                .cloned()
                .collect(),
            since: self.since.clone(),
            mqtt: self.mqtt.clone(),
            connect_timeout: self.connect_timeout,
        }
    }
}
