//! Scenario files of `device-sim run`: what a simulated fleet is made of, read from TOML and
//! checked before anything connects.
//!
//! [`load`] reads a file; [`parse`] takes text. Both return a [`Scenario`] in which every
//! default is filled in, every template is parsed and every file the scenario names (TLS
//! PEM files) exists, or a [`ScenarioError`] listing each mistake as
//! `FILE:LINE: FIELD: what is wrong`. The format is documented field by field in
//! `device-sim/scenarios/README.md`.
//!
//! # Layout
//! - `raw`: serde structs mirroring the file (unknown fields are errors).
//! - `validate`, `payload`: from raw to [`Scenario`], with semantic checks.
//! - [`template`]: `{class}`/`{id}`/`{n}` templates; [`model`]: telemetry payload models.
//! - [`broker`]: broker URLs; [`error`]: problems located by file, line and field.

pub mod broker;
pub mod error;
pub mod model;
mod payload;
mod raw;
pub mod template;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

pub use broker::{Broker, Transport};
pub use error::{Problem, ScenarioError};
pub use model::{Constant, Model, ModelState};
pub use raw::Protocol;
pub use template::{Scope, Template, Vars};

/// A checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Shown in the progress display and the report; the file name when not given.
    pub name: String,
    /// The file it was read from (for messages).
    pub file: PathBuf,
    /// Broker from the file; `--broker` overrides it.
    pub broker: Option<Broker>,
    /// How long the run lasts; `--duration` overrides it.
    pub duration: Duration,
    /// Seed of every random choice (payloads, jitter, faults); `None` picks one per run.
    pub seed: Option<u64>,
    /// Devices start connecting evenly spread over this time, so a large fleet does not
    /// hit the broker in one instant.
    pub ramp_up: Duration,
    /// The in-process TCP proxy that adds latency and loss, when the file asks for one.
    pub proxy: Option<ProxyFaults>,
    /// Device classes, in file order.
    pub classes: Vec<Class>,
}

/// `[faults.proxy]`: faults the in-process proxy injects between devices and broker.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyFaults {
    /// One-way delay added in each direction.
    pub latency: Duration,
    /// Uniform variation of the delay, ±.
    pub jitter: Duration,
    /// Probability that a forwarded chunk is lost (and retransmitted after `rto`).
    pub loss: f64,
    /// Retransmission timeout of a lost chunk; the proxy's default when `None`.
    pub rto: Option<Duration>,
    /// Losses in a row after which the connection is cut; the proxy's default when `None`.
    pub max_retransmits: Option<u32>,
    /// Probability per forwarded chunk that the connection is cut.
    pub cut: f64,
    /// Bytes per second per direction; unlimited when `None`.
    pub bandwidth: Option<u64>,
}

/// A class of identical devices.
#[derive(Debug, Clone)]
pub struct Class {
    /// Class name, used by `{class}` and in reports.
    pub name: String,
    /// How many devices.
    pub count: u32,
    /// Client id template (`{class}`, `{n}`); unique across the scenario.
    pub client_id: Template,
    /// MQTT version.
    pub protocol: Protocol,
    /// Username sent in CONNECT.
    pub username: Option<String>,
    /// Password sent in CONNECT (only with a username).
    pub password: Option<String>,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Clean session (3.1.1) / clean start (5).
    pub clean_session: bool,
    /// MQTT 5 session expiry interval.
    pub session_expiry: Option<Duration>,
    /// Unacknowledged QoS 1/2 publishes a device may have in flight.
    pub inflight: u16,
    /// Messages a device may queue towards its connection before further ones are dropped.
    pub queue: usize,
    /// TLS files, for `mqtts://` and `wss://` brokers.
    pub tls: Option<TlsFiles>,
    /// Last will, published by the broker when a device drops without DISCONNECT.
    pub will: Option<Message>,
    /// Published by the device each time it connects (e.g. a retained "online").
    pub birth: Option<Message>,
    /// Telemetry streams.
    pub telemetry: Vec<Stream>,
    /// Command subscriptions and their scripted replies.
    pub commands: Vec<Command>,
    /// Injected disconnects.
    pub faults: ClassFaults,
    /// Backoff while the broker cannot be reached.
    pub reconnect: Backoff,
}

/// TLS material of a class (paths resolved against the scenario's folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificates to trust; the system store when `None`.
    pub ca: Option<PathBuf>,
    /// Client certificate chain, for mutual TLS.
    pub cert: Option<PathBuf>,
    /// Client private key, for mutual TLS.
    pub key: Option<PathBuf>,
}

/// A will or birth message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Topic template.
    pub topic: Template,
    /// Payload template.
    pub payload: Template,
    /// QoS.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
}

/// A telemetry stream: one topic, published every `interval ± jitter`.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Topic template.
    pub topic: Template,
    /// What each message carries.
    pub payload: Model,
    /// Mean time between two messages of one device.
    pub interval: Duration,
    /// Each gap varies uniformly by up to ± this much.
    pub jitter: Duration,
    /// QoS.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
    /// Whether messages carry the [`crate::stamp::Stamp`].
    pub stamp: bool,
}

/// A command subscription.
#[derive(Debug, Clone)]
pub struct Command {
    /// Topic filter template (wildcards allowed).
    pub filter: Template,
    /// Subscription QoS.
    pub qos: u8,
    /// Where replies go when the command has no MQTT 5 response topic.
    pub reply_topic: Option<Template>,
    /// The reply payload.
    pub reply: Reply,
    /// QoS of replies.
    pub reply_qos: u8,
    /// Retain flag of replies.
    pub reply_retain: bool,
    /// Simulated processing time before the reply.
    pub delay: Duration,
}

/// A reply payload: text, or JSON whose strings are templates.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A string template (sent as text at the top level).
    Text(Template),
    /// A fixed JSON value.
    Value(Value),
    /// A JSON object.
    Object(Vec<(String, Reply)>),
    /// A JSON array.
    Array(Vec<Reply>),
}

/// Injected disconnects of a class.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassFaults {
    /// Mean time between random disconnects of one device (exponentially distributed).
    pub disconnect_mean: Option<Duration>,
    /// How long a randomly dropped device stays offline.
    pub reconnect_delay: Duration,
    /// Reconnect storms.
    pub storms: Vec<Storm>,
}

/// A moment when many devices of a class drop at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Storm {
    /// Time since the run started.
    pub at: Duration,
    /// Share of the class's devices that drop (0 < fraction <= 1).
    pub fraction: f64,
    /// How long they stay offline.
    pub reconnect_delay: Duration,
}

/// Exponential backoff between failed connection attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First wait.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
}

/// Reads and checks a scenario file. Relative TLS paths are resolved against its folder.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Checks scenario text as if read from `path` (which names it in messages and anchors
/// relative paths).
pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
    validate::scenario(text, path)
}

impl Scenario {
    /// Devices in all classes.
    pub fn devices(&self) -> u64 {
        self.classes.iter().map(|c| u64::from(c.count)).sum()
    }
}

#[cfg(test)]
mod tests;
