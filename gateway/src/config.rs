//! Gateway configuration: the TOML file's shape, its defaults, how it is loaded and checked.
//!
//! Configuration is layered. Each layer overrides the one before it:
//! 1. the built-in defaults ([`Config::default`], the same values `config.example.toml`
//!    shows);
//! 2. the config file, if one is given;
//! 3. environment variables `GATEWAY__SECTION__KEY=value` (see [`env`]);
//! 4. command-line flags ([`Overrides`]).
//!
//! [`Config::validate`] then checks the result as a whole. Every error names the file, the
//! environment variable or the field it is about.
//!
//! Layout:
//! - `config.rs`: the structs and their defaults, loading.
//! - `config/duration.rs`: `"30s"` / `"7d"` style durations.
//! - `config/env.rs`: `GATEWAY__SECTION__KEY` overrides.
//! - `config/validate.rs`: whole-config checks.
//! - `config/bridge.rs`: `[[bridge]]` sections.
//! - `config/browser.rs`: the `[browser]` section (WebSocket, SSE, long-poll, REST).

pub mod bridge;
pub mod browser;
pub mod duration;
pub mod env;
mod validate;

pub use browser::BrowserConfig;
pub use validate::{MIN_PACKET_SIZE, parse_listen};

#[cfg(test)]
mod tests;

use crate::core::namespace::{HistoryPolicy, NamespaceRule, NamespaceRules};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The text of `config.example.toml`: every option, documented, with its default value.
/// `gateway print-default-config` prints it, and a test checks it parses to
/// [`Config::default`].
pub const EXAMPLE_CONFIG: &str = include_str!("../../config.example.toml");

/// The whole configuration. Every section is optional in the file.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the gateway keeps its data.
    pub data: DataConfig,
    /// The MQTT listener and the limits of MQTT sessions.
    pub mqtt: MqttConfig,
    /// The HTTP listener (MQTT over WebSocket at `/mqtt`, browser protocols).
    pub http: HttpConfig,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`).
    pub admin: AdminConfig,
    /// The browser transports (WebSocket, SSE, long-poll) and the REST API.
    pub browser: BrowserConfig,
    /// The message log (the durable store every message goes through).
    pub log: LogConfig,
    /// The default history policy, for channels no `[[namespace]]` rule matches.
    pub history: HistoryConfig,
    /// Namespace rules, tried in order; the first whose filter matches a channel decides its
    /// history policy.
    pub namespace: Vec<NamespaceConfig>,
    /// Bridges to remote MQTT brokers; none by default.
    pub bridge: Vec<bridge::BridgeConfig>,
}

/// `[data]`: where state lives on disk.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Directory of the message log and session store; created when missing.
    pub dir: PathBuf,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dir: PathBuf::from("./data"),
        }
    }
}

/// `[mqtt]`: the MQTT listener and the limits every MQTT connection and session works within.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Address of the MQTT (TCP) listener, `IP:port`; port 0 picks a free port.
    pub listen: String,
    /// Largest MQTT packet accepted or sent, in bytes. Larger incoming packets are refused
    /// before their body is read; v5 clients are told this limit in CONNACK.
    pub max_packet_size: u32,
    /// Time a new connection has to send its CONNECT before it is closed.
    #[serde(deserialize_with = "duration::deserialize")]
    pub connect_timeout: Duration,
    /// Upper bound on the keep-alive a client may ask for, in seconds; 0 means no cap.
    /// When set, v5 clients asking for more (or for 0) get this as the server keep-alive.
    pub max_keep_alive: u16,
    /// QoS 1 and 2 publishes a client may have unacknowledged towards the gateway (the v5
    /// receive maximum the gateway announces).
    pub receive_maximum: u16,
    /// QoS 1 and 2 publishes the gateway keeps unacknowledged towards one client; a v5
    /// client's own receive maximum lowers it.
    pub max_inflight: u16,
    /// Topic aliases a v5 client may use towards the gateway; 0 disables them.
    pub topic_alias_maximum: u16,
    /// Upper bound on a v5 session expiry interval, in seconds; 0 means no cap.
    pub max_session_expiry: u32,
    /// Messages kept for one offline persistent session; beyond this the oldest are skipped
    /// and counted.
    pub max_offline_messages: usize,
    /// Messages queued for one live connection before it is treated as slow (reliable
    /// subscriptions then catch up from the log; QoS 0 ones drop their oldest). Keep it well
    /// above the log's batch size: a batch is released to subscribers at once.
    pub outbound_queue: usize,
    /// Largest number of `/`-separated levels in a topic name or filter.
    pub max_topic_levels: usize,
    /// Longest topic name or filter, in bytes.
    pub max_topic_length: usize,
    /// Longest client id accepted in CONNECT, in bytes.
    pub max_client_id_length: usize,
    /// Subscriptions one client may hold at once.
    pub max_subscriptions_per_client: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            listen: "127.0.0.1:1883".into(),
            max_packet_size: 1_048_576,
            connect_timeout: Duration::from_secs(10),
            max_keep_alive: 0,
            receive_maximum: 1024,
            max_inflight: 1024,
            topic_alias_maximum: 64,
            max_session_expiry: 0,
            max_offline_messages: 100_000,
            outbound_queue: 16_384,
            max_topic_levels: 128,
            max_topic_length: 65_535,
            max_client_id_length: 256,
            max_subscriptions_per_client: 1000,
        }
    }
}

/// `[http]`: the HTTP listener (MQTT over WebSocket at `/mqtt`, and the browser protocols).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the HTTP listener, `IP:port`; port 0 picks a free port.
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
        }
    }
}

/// `[admin]`: the operations listener (`/healthz`, `/readyz`, `/metrics`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin listener, `IP:port`; port 0 picks a free port.
    pub listen: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:9090".into(),
        }
    }
}

/// `[log]`: the message log.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Most messages written in one group commit (one fsync).
    pub max_batch: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { max_batch: 4096 }
    }
}

/// `[history]`: the default history policy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Messages kept per channel.
    pub max_messages: u64,
    /// Messages older than this are removed; `None` (`"none"` or `"0"` in the file) keeps
    /// them until `max_messages` evicts them.
    #[serde(deserialize_with = "duration::deserialize_age")]
    pub max_age: Option<Duration>,
    /// Whether QoS 0 messages are kept in history (QoS 1 and 2 always are).
    pub store_qos0: bool,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        let p = HistoryPolicy::default();
        HistoryConfig {
            max_messages: p.max_messages,
            max_age: p.max_age,
            store_qos0: p.store_qos0,
        }
    }
}

impl From<&HistoryConfig> for HistoryPolicy {
    fn from(h: &HistoryConfig) -> Self {
        HistoryPolicy {
            max_messages: h.max_messages,
            max_age: h.max_age,
            store_qos0: h.store_qos0,
        }
    }
}

/// One `[[namespace]]` rule: a filter and the history settings that differ from `[history]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    /// Name used in logs and metrics.
    pub name: String,
    /// MQTT filter selecting the namespace's channels, e.g. `plant1/#`.
    pub filter: String,
    /// Messages kept per channel; `[history]`'s value when absent.
    #[serde(default)]
    pub max_messages: Option<u64>,
    /// Maximum age of kept messages (`"none"` for no limit); `[history]`'s value when absent.
    #[serde(default, deserialize_with = "duration::deserialize_age_override")]
    pub max_age: Option<Option<Duration>>,
    /// Whether QoS 0 messages are kept; `[history]`'s value when absent.
    #[serde(default)]
    pub store_qos0: Option<bool>,
}

impl NamespaceConfig {
    /// The effective policy of this namespace, filling gaps from `default`.
    pub fn policy(&self, default: &HistoryConfig) -> HistoryPolicy {
        HistoryPolicy {
            max_messages: self.max_messages.unwrap_or(default.max_messages),
            max_age: self.max_age.unwrap_or(default.max_age),
            store_qos0: self.store_qos0.unwrap_or(default.store_qos0),
        }
    }
}

/// Settings given on the command line; each one present replaces the loaded value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--data-dir`: replaces `data.dir`.
    pub data_dir: Option<PathBuf>,
    /// `--mqtt`: replaces `mqtt.listen`.
    pub mqtt_listen: Option<String>,
    /// `--http`: replaces `http.listen`.
    pub http_listen: Option<String>,
    /// `--admin`: replaces `admin.listen`.
    pub admin_listen: Option<String>,
}

/// Why the configuration could not be loaded or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error (part of the message, not a separate source).
        error: std::io::Error,
    },
    /// The config file is not valid TOML, or a value has the wrong type or an unknown name.
    /// The message carries the line and column.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong and where (toml's message, with line, column and the offending text).
        message: String,
    },
    /// An environment override could not be applied.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable, e.g. `GATEWAY__MQTT__LISTEN`.
        var: String,
        /// What is wrong with it.
        message: String,
    },
    /// A value is out of range or inconsistent with another; `field` is its dotted path.
    #[error("{field}: {message}")]
    Invalid {
        /// Dotted path of the offending setting, e.g. `mqtt.max_packet_size` or
        /// `namespace[1].filter`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl Config {
    /// Loads the configuration: defaults, then `file` (if any), then the `GATEWAY__…`
    /// variables among `vars` (pass `std::env::vars()`). Does not validate; call
    /// [`Config::validate`] after applying [`Overrides`].
    pub fn load(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                    path: path.to_path_buf(),
                    error,
                })?;
                Self::parse_table(&text, path)?
            }
            None => toml::Table::new(),
        };
        env::apply(table, vars)
    }

    /// Parses config file text (without environment overrides). `path` is only used in
    /// error messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let table = Self::parse_table(text, path)?;
        Self::from_table(table).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses `text` as a table, checking it against the config's shape first so that type
    /// and unknown-field errors come with a line and column.
    fn parse_table(text: &str, path: &Path) -> Result<toml::Table, ConfigError> {
        let parse_err = |e: toml::de::Error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        };
        toml::from_str::<Config>(text).map_err(parse_err)?;
        toml::from_str::<toml::Table>(text).map_err(parse_err)
    }

    /// Builds a config from an already-parsed table. The error is one line (it has no
    /// source text to point into).
    fn from_table(table: toml::Table) -> Result<Config, String> {
        toml::Value::Table(table).try_into::<Config>().map_err(|e| {
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
    }

    /// Applies command-line overrides.
    pub fn apply(&mut self, o: &Overrides) {
        if let Some(dir) = &o.data_dir {
            self.data.dir = dir.clone();
        }
        if let Some(a) = &o.mqtt_listen {
            self.mqtt.listen = a.clone();
        }
        if let Some(a) = &o.http_listen {
            self.http.listen = a.clone();
        }
        if let Some(a) = &o.admin_listen {
            self.admin.listen = a.clone();
        }
    }

    /// The namespace rules for the router and the log, in config order, with the default
    /// policy from `[history]`.
    pub fn namespace_rules(&self) -> NamespaceRules {
        let rules = self
            .namespace
            .iter()
            .map(|n| NamespaceRule {
                name: n.name.clone(),
                filter: n.filter.clone(),
                history: n.policy(&self.history),
            })
            .collect();
        NamespaceRules::new(rules, HistoryPolicy::from(&self.history))
    }
}
