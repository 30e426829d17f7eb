//! `[[bridge]]` sections: bridges to remote MQTT brokers, and their conversion to the
//! bridge crate's options.
//!
//! Only the shape is checked when the file is read (types, unknown keys). The meaning
//! (addresses, filters, templates, TLS files) is checked when the bridge starts, and a bad
//! value only keeps that bridge down with the reason in its status: the gateway and the
//! other bridges run on. See `config.example.toml` for every option.

use super::duration;
use serde::{Deserialize, Deserializer};
use std::path::PathBuf;
use std::time::Duration;

/// One `[[bridge]]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Unique name: in logs, `GET /api/v1/bridges`, and the origin (`bridge:<name>`) of the
    /// messages it brings in.
    pub name: String,
    /// The remote broker, `host:port`.
    pub address: String,
    /// MQTT version spoken to the remote: `"5"` or `"3.1.1"`.
    #[serde(default, deserialize_with = "deserialize_protocol")]
    pub protocol: ProtocolVersion,
    /// Client id at the remote; stable, used by nobody else (the session there is
    /// persistent).
    pub client_id: String,
    /// User name at the remote.
    #[serde(default)]
    pub username: Option<String>,
    /// Password at the remote.
    #[serde(default)]
    pub password: Option<String>,
    /// TLS towards the remote; plain TCP when absent.
    #[serde(default)]
    pub tls: Option<BridgeTlsConfig>,
    /// MQTT keep-alive.
    #[serde(
        default = "defaults::keep_alive",
        deserialize_with = "duration::deserialize"
    )]
    pub keep_alive: Duration,
    /// MQTT 5: how long the remote keeps the session while the bridge is away.
    #[serde(
        default = "defaults::session_expiry",
        deserialize_with = "duration::deserialize"
    )]
    pub session_expiry: Duration,
    /// Time for TCP connect, TLS handshake and CONNACK together.
    #[serde(
        default = "defaults::connect_timeout",
        deserialize_with = "duration::deserialize"
    )]
    pub connect_timeout: Duration,
    /// First pause before reconnecting (doubles after each failure, with jitter).
    #[serde(
        default = "defaults::reconnect_min",
        deserialize_with = "duration::deserialize"
    )]
    pub reconnect_min: Duration,
    /// Longest pause before reconnecting.
    #[serde(
        default = "defaults::reconnect_max",
        deserialize_with = "duration::deserialize"
    )]
    pub reconnect_max: Duration,
    /// Outbound QoS 1/2 messages unacknowledged at once (an MQTT 5 remote's receive
    /// maximum lowers it).
    #[serde(default = "defaults::max_inflight")]
    pub max_inflight: u16,
    /// MQTT 5: inbound QoS 1/2 messages the remote may have unacknowledged at once.
    #[serde(default = "defaults::receive_maximum")]
    pub receive_maximum: u16,
    /// Largest packet accepted from the remote, in bytes.
    #[serde(default = "defaults::max_packet_size")]
    pub max_packet_size: u32,
    /// Most messages the bridge may fall behind; beyond, the oldest are skipped, counted
    /// and logged. 0: no bound but history retention.
    #[serde(default = "defaults::max_lag")]
    pub max_lag: u64,
    /// Out rules: local filter → remote topic.
    #[serde(default, rename = "out")]
    pub out_rules: Vec<OutRuleConfig>,
    /// In rules: remote filter → local topic.
    #[serde(default, rename = "in")]
    pub in_rules: Vec<InRuleConfig>,
}

/// `[bridge.tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeTlsConfig {
    /// PEM file of the CAs the remote's certificate must chain to; the system's trusted
    /// roots when absent.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain (mutual TLS, with `key`).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Name expected in the remote's certificate; the host of `address` when absent.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// One `[[bridge.out]]` rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutRuleConfig {
    /// Local MQTT filter of the messages to forward.
    pub local: String,
    /// Remote topic template (`{1}`, `{2}`… for the filter's wildcards, `{topic}` for the
    /// whole topic); the local name when absent.
    #[serde(default)]
    pub remote: Option<String>,
    /// Highest QoS used at the remote; a message's own QoS is never raised.
    #[serde(default = "defaults::qos")]
    pub qos: u8,
    /// Retain flag handling.
    #[serde(default)]
    pub retain: RetainMode,
}

/// One `[[bridge.in]]` rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InRuleConfig {
    /// Remote MQTT filter subscribed at the remote (`$share/…` allowed).
    pub remote: String,
    /// Local topic template; the remote name when absent.
    #[serde(default)]
    pub local: Option<String>,
    /// QoS of the subscription at the remote.
    #[serde(default = "defaults::qos")]
    pub qos: u8,
    /// Retain flag handling.
    #[serde(default)]
    pub retain: RetainMode,
}

/// What happens to the retain flag of a message crossing a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetainMode {
    /// As published.
    #[default]
    Keep,
    /// Never retained on the other side.
    Clear,
    /// Always retained on the other side.
    Set,
}

/// MQTT version of a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolVersion {
    /// MQTT 3.1.1.
    V311,
    /// MQTT 5.
    #[default]
    V5,
}

/// Reads `"5"`, `5`, `"3.1.1"` (or `"3"`, `4`: protocol level 4 is 3.1.1).
fn deserialize_protocol<'de, D: Deserializer<'de>>(d: D) -> Result<ProtocolVersion, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Text(String),
    }
    let bad = |v: &str| {
        serde::de::Error::custom(format!(
            "protocol {v} is not supported; write \"5\" (MQTT 5) or \"3.1.1\""
        ))
    };
    match Raw::deserialize(d)? {
        Raw::Int(5) => Ok(ProtocolVersion::V5),
        Raw::Int(4) => Ok(ProtocolVersion::V311),
        Raw::Int(n) => Err(bad(&n.to_string())),
        Raw::Text(t) => match t.trim() {
            "5" | "5.0" | "v5" => Ok(ProtocolVersion::V5),
            "3.1.1" | "3" | "4" | "v3.1.1" => Ok(ProtocolVersion::V311),
            other => Err(bad(&format!("{other:?}"))),
        },
    }
}

mod defaults {
    use std::time::Duration;

    pub fn keep_alive() -> Duration {
        Duration::from_secs(30)
    }
    pub fn session_expiry() -> Duration {
        Duration::from_secs(7 * 86_400)
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn reconnect_min() -> Duration {
        Duration::from_secs(1)
    }
    pub fn reconnect_max() -> Duration {
        Duration::from_secs(60)
    }
    pub fn max_inflight() -> u16 {
        256
    }
    pub fn receive_maximum() -> u16 {
        256
    }
    pub fn max_packet_size() -> u32 {
        1_048_576
    }
    pub fn max_lag() -> u64 {
        1_000_000
    }
    pub fn qos() -> u8 {
        1
    }
}

impl BridgeConfig {
    /// The bridge crate's options for this section. A QoS outside 0..=2 is the only error
    /// found here; everything else is checked by the bridge when it starts.
    pub fn to_options(&self) -> Result<bridge::BridgeOptions, String> {
        let mut o = bridge::BridgeOptions::new(&self.name, &self.address, &self.client_id);
        o.protocol = match self.protocol {
            ProtocolVersion::V311 => bridge::Protocol::V311,
            ProtocolVersion::V5 => bridge::Protocol::V5,
        };
        o.username = self.username.clone();
        o.password = self.password.clone();
        o.tls = self.tls.as_ref().map(|t| bridge::TlsOptions {
            ca: t.ca.clone(),
            cert: t.cert.clone(),
            key: t.key.clone(),
            server_name: t.server_name.clone(),
        });
        o.keep_alive = self.keep_alive;
        o.session_expiry = self.session_expiry;
        o.connect_timeout = self.connect_timeout;
        o.reconnect_min = self.reconnect_min;
        o.reconnect_max = self.reconnect_max;
        o.max_inflight = self.max_inflight;
        o.receive_maximum = self.receive_maximum;
        o.max_packet_size = self.max_packet_size;
        o.max_lag = self.max_lag;
        let qos = |which: String, q: u8| {
            bridge::QoS::from_u8(q).ok_or_else(|| format!("{which}.qos: {q} is not 0, 1 or 2"))
        };
        for (i, r) in self.out_rules.iter().enumerate() {
            o.out_rules.push(bridge::RuleSpec {
                filter: r.local.clone(),
                template: r.remote.clone(),
                qos: qos(format!("out[{i}]"), r.qos)?,
                retain: r.retain.into(),
            });
        }
        for (i, r) in self.in_rules.iter().enumerate() {
            o.in_rules.push(bridge::RuleSpec {
                filter: r.remote.clone(),
                template: r.local.clone(),
                qos: qos(format!("in[{i}]"), r.qos)?,
                retain: r.retain.into(),
            });
        }
        Ok(o)
    }
}

impl From<RetainMode> for bridge::RetainPolicy {
    fn from(m: RetainMode) -> Self {
        match m {
            RetainMode::Keep => bridge::RetainPolicy::Keep,
            RetainMode::Clear => bridge::RetainPolicy::Clear,
            RetainMode::Set => bridge::RetainPolicy::Set,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, EXAMPLE_CONFIG};
    use std::path::Path;

    /// The commented `[[bridge]]` example of `config.example.toml`, uncommented.
    fn example() -> String {
        let start = EXAMPLE_CONFIG
            .find("# [[bridge]]")
            .unwrap_or_else(|| panic!("the example shows a bridge"));
        EXAMPLE_CONFIG[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn example_bridge_parses_and_checks() {
        let c = Config::from_toml(&example(), Path::new("example.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.bridge.len(), 1);
        let b = &c.bridge[0];
        assert_eq!(b.protocol, ProtocolVersion::V5);
        assert_eq!(b.out_rules.len(), 1);
        assert_eq!(b.in_rules.len(), 1);
        let o = b.to_options().unwrap_or_else(|e| panic!("{e}"));
        let checked = o.check().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            checked.out[0].map("plant1/line3/temp").as_deref(),
            Some("site/plant1/line3/temp")
        );
        assert_eq!(
            checked.inbound[0]
                .map("site/commands/plant1/valve")
                .as_deref(),
            Some("cmd/valve")
        );
    }

    #[test]
    fn defaults_and_protocol_spellings() {
        let parse = |extra: &str| {
            Config::from_toml(
                &format!("[[bridge]]\nname = \"b\"\naddress = \"h:1\"\nclient_id = \"c\"\n{extra}"),
                Path::new("t.toml"),
            )
        };
        let c = parse("").unwrap_or_else(|e| panic!("{e}"));
        let b = &c.bridge[0];
        assert_eq!(b.protocol, ProtocolVersion::V5);
        assert_eq!(b.keep_alive, Duration::from_secs(30));
        assert_eq!(b.max_lag, 1_000_000);
        for (text, want) in [
            ("\"3.1.1\"", ProtocolVersion::V311),
            ("4", ProtocolVersion::V311),
            ("5", ProtocolVersion::V5),
            ("\"5\"", ProtocolVersion::V5),
        ] {
            let c = parse(&format!("protocol = {text}\n")).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.bridge[0].protocol, want, "{text}");
        }
        assert!(parse("protocol = \"3.1\"\n").is_err());
        assert!(parse("colour = 1\n").is_err(), "unknown keys are refused");
        let c = parse("[[bridge.out]]\nlocal = \"a\"\nqos = 3\n").unwrap_or_else(|e| panic!("{e}"));
        assert!(c.bridge[0].to_options().is_err());
    }
}
