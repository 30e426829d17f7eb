//! [`BridgeOptions`]: everything one bridge needs to know, and their checks. The gateway
//! fills them from its `[[bridge]]` configuration sections.

use crate::mapping::{MappingError, RetainPolicy, Rule};
use crate::message::QoS;
use std::path::PathBuf;
use std::time::Duration;

/// The MQTT version spoken to the remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// MQTT 3.1.1.
    V311,
    /// MQTT 5.
    #[default]
    V5,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::V311 => "3.1.1",
            Protocol::V5 => "5",
        })
    }
}

/// TLS towards the remote. Present means TLS is used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the certificate authorities the remote's certificate must chain to.
    /// Without it, the operating system's trusted roots are used.
    pub ca: Option<PathBuf>,
    /// PEM file of the client certificate chain, for mutual TLS (with `key`).
    pub cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key, for mutual TLS (with `cert`).
    pub key: Option<PathBuf>,
    /// The name the remote's certificate must carry; the host of `address` when absent.
    pub server_name: Option<String>,
}

/// One mapping rule as configured (compiled by [`BridgeOptions::check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// The filter: local for out rules, remote for in rules.
    pub filter: String,
    /// The topic template on the other side; `None` keeps topic names.
    pub template: Option<String>,
    /// Out: highest QoS used at the remote. In: QoS of the remote subscription.
    pub qos: QoS,
    /// What happens to the retain flag.
    pub retain: RetainPolicy,
}

/// Settings of one bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeOptions {
    /// Unique name; used in logs, the status API, and the origin of inbound messages.
    pub name: String,
    /// The remote broker, `host:port` (a host name or an IP address; `[v6]:port`).
    pub address: String,
    /// MQTT version spoken to the remote.
    pub protocol: Protocol,
    /// Client id at the remote. The session there is persistent, so it must be stable and
    /// used by nobody else.
    pub client_id: String,
    /// User name, if the remote wants one.
    pub username: Option<String>,
    /// Password (needs a user name).
    pub password: Option<String>,
    /// TLS settings; `None` for plain TCP.
    pub tls: Option<TlsOptions>,
    /// MQTT keep-alive: a ping is sent after this much silence, and the connection is
    /// dropped when the remote stays silent for one and a half times as long.
    pub keep_alive: Duration,
    /// MQTT 5: how long the remote keeps the session (and queues inbound messages) while
    /// the bridge is away. MQTT 3.1.1 sessions last until the remote drops them.
    pub session_expiry: Duration,
    /// Time allowed for TCP connect, TLS handshake and CONNACK together.
    pub connect_timeout: Duration,
    /// Outbound QoS 1 and 2 messages unacknowledged at once. An MQTT 5 remote's receive
    /// maximum lowers it.
    pub max_inflight: u16,
    /// MQTT 5: inbound QoS 1 and 2 messages the remote may have unacknowledged at once
    /// (announced as the receive maximum).
    pub receive_maximum: u16,
    /// Largest packet accepted from the remote, in bytes (MQTT 5 announces it).
    pub max_packet_size: u32,
    /// Most positions the outbound cursor may trail the source's head by. Beyond it the
    /// oldest waiting messages are skipped, counted and logged. 0: no bound (only the
    /// source's own retention limits the backlog).
    pub max_lag: u64,
    /// First pause before reconnecting; doubles after each failure, with jitter.
    pub reconnect_min: Duration,
    /// Longest pause before reconnecting.
    pub reconnect_max: Duration,
    /// Out rules: local filter → remote template.
    pub out_rules: Vec<RuleSpec>,
    /// In rules: remote filter → local template.
    pub in_rules: Vec<RuleSpec>,
}

impl BridgeOptions {
    /// Options with the defaults for everything but the name, address and client id.
    pub fn new(name: &str, address: &str, client_id: &str) -> BridgeOptions {
        BridgeOptions {
            name: name.to_string(),
            address: address.to_string(),
            protocol: Protocol::V5,
            client_id: client_id.to_string(),
            username: None,
            password: None,
            tls: None,
            keep_alive: Duration::from_secs(30),
            session_expiry: Duration::from_secs(7 * 86_400),
            connect_timeout: Duration::from_secs(10),
            max_inflight: 256,
            receive_maximum: 256,
            max_packet_size: 1_048_576,
            max_lag: 1_000_000,
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            out_rules: Vec::new(),
            in_rules: Vec::new(),
        }
    }

    /// The origin stamped on messages this bridge brings in, and recognised on messages it
    /// must not send back out: `bridge:<name>`.
    pub fn origin(&self) -> String {
        format!("bridge:{}", self.name)
    }

    /// Checks every setting and compiles the rules. TLS files are read later, at connect
    /// time, so that fixing a file needs no restart.
    pub fn check(&self) -> Result<Checked, OptionsError> {
        let bad = |field: &str, reason: String| OptionsError::Invalid {
            field: field.to_string(),
            reason,
        };
        if self.name.trim().is_empty() || self.name.chars().any(char::is_control) {
            return Err(bad(
                "name",
                "must be non-empty text without control characters".into(),
            ));
        }
        let (host, port) = split_address(&self.address).map_err(|r| bad("address", r))?;
        if self.client_id.is_empty() || self.client_id.len() > 65_535 {
            return Err(bad(
                "client_id",
                "must be 1 to 65535 bytes: the bridge keeps a persistent session at the remote \
                 under this id"
                    .into(),
            ));
        }
        if self.client_id.chars().any(char::is_control) {
            return Err(bad(
                "client_id",
                "must not contain control characters".into(),
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(bad(
                "password",
                "needs a username too (MQTT sends no password without a user name)".into(),
            ));
        }
        let secs = self.keep_alive.as_secs();
        if !(1..=65_535).contains(&secs) {
            return Err(bad(
                "keep_alive",
                "must be between 1 s and 65535 s (18h12m15s)".into(),
            ));
        }
        if self.session_expiry.as_secs() > u64::from(u32::MAX) {
            return Err(bad(
                "session_expiry",
                "must be at most 4294967295 s (about 136 years)".into(),
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(bad("connect_timeout", "must be longer than 0".into()));
        }
        if self.max_inflight == 0 {
            return Err(bad("max_inflight", "must be at least 1".into()));
        }
        if self.receive_maximum == 0 {
            return Err(bad("receive_maximum", "must be at least 1".into()));
        }
        if self.max_packet_size < 64 {
            return Err(bad("max_packet_size", "must be at least 64 bytes".into()));
        }
        if self.reconnect_min.is_zero() || self.reconnect_min > self.reconnect_max {
            return Err(bad(
                "reconnect_min",
                "must be longer than 0 and at most reconnect_max".into(),
            ));
        }
        if let Some(tls) = &self.tls {
            if tls.cert.is_some() != tls.key.is_some() {
                return Err(bad(
                    "tls",
                    "cert and key go together: give both for mutual TLS, or neither".into(),
                ));
            }
        }
        if self.out_rules.is_empty() && self.in_rules.is_empty() {
            return Err(bad(
                "out / in",
                "the bridge has no rules: add an out rule (local filter -> remote topic) or \
                 an in rule (remote filter -> local topic)"
                    .into(),
            ));
        }
        let compile = |which: &str, specs: &[RuleSpec], shared: bool| {
            specs
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    Rule::new(&s.filter, s.template.as_deref(), s.qos, s.retain, shared).map_err(
                        |e| OptionsError::Rule {
                            rule: format!("{which}[{i}]"),
                            error: e,
                        },
                    )
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let out = compile("out", &self.out_rules, false)?;
        let inbound = compile("in", &self.in_rules, true)?;
        let server_name = self
            .tls
            .as_ref()
            .and_then(|t| t.server_name.clone())
            .unwrap_or_else(|| host.clone());
        Ok(Checked {
            options: self.clone(),
            host,
            port,
            server_name,
            out,
            inbound,
        })
    }
}

/// Options that passed [`BridgeOptions::check`], with their rules compiled.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The options as given.
    pub options: BridgeOptions,
    /// Host part of the address (brackets removed from an IPv6 address).
    pub host: String,
    /// Port part of the address.
    pub port: u16,
    /// Name checked against the remote's certificate.
    pub server_name: String,
    /// Compiled out rules, in order.
    pub out: Vec<Rule>,
    /// Compiled in rules, in order.
    pub inbound: Vec<Rule>,
}

/// Why the options cannot be used. The gateway shows it as the bridge's status; the
/// gateway itself keeps running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// A setting is out of range or malformed.
    #[error("{field}: {reason}")]
    Invalid {
        /// The setting.
        field: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A rule's filter or template is not valid.
    #[error("{rule}: {error}")]
    Rule {
        /// Which rule, e.g. `out[0]`.
        rule: String,
        /// What is wrong with it.
        error: MappingError,
    },
}

/// Splits `host:port` (or `[v6]:port`).
fn split_address(address: &str) -> Result<(String, u16), String> {
    let hint = "write host:port, e.g. \"broker.example.com:8883\", \"10.0.0.5:1883\" or \
                \"[::1]:1883\"";
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{address:?} has no port; {hint}"))?;
    let host = match host.strip_prefix('[') {
        Some(h) => h
            .strip_suffix(']')
            .ok_or_else(|| format!("{address:?} is not a valid address; {hint}"))?,
        None if host.contains(':') => {
            return Err(format!(
                "{address:?}: put an IPv6 address in brackets; {hint}"
            ));
        }
        None => host,
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{address:?} has no valid host; {hint}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((host.to_string(), p)),
        _ => Err(format!("{address:?} has no valid port (1-65535); {hint}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> BridgeOptions {
        let mut o = BridgeOptions::new("b", "127.0.0.1:1883", "gw");
        o.out_rules.push(RuleSpec {
            filter: "a/#".into(),
            template: None,
            qos: QoS::AtLeastOnce,
            retain: RetainPolicy::Keep,
        });
        o
    }

    fn field_of(o: &BridgeOptions) -> String {
        match o.check() {
            Err(OptionsError::Invalid { field, .. }) => field,
            Err(OptionsError::Rule { rule, .. }) => rule,
            Ok(_) => "ok".into(),
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(split_address("h:1"), Ok(("h".into(), 1)));
        assert_eq!(split_address("[::1]:1883"), Ok(("::1".into(), 1883)));
        assert!(split_address("::1:1883").is_err());
        assert!(split_address("h").is_err());
        assert!(split_address("h:0").is_err());
        assert!(split_address(":1883").is_err());
        assert!(split_address("h:x").is_err());
    }

    #[test]
    fn checks_name_the_setting() {
        assert_eq!(field_of(&opts()), "ok");
        let mut o = opts();
        o.password = Some("p".into());
        assert_eq!(field_of(&o), "password");
        let mut o = opts();
        o.out_rules.clear();
        assert_eq!(field_of(&o), "out / in");
        let mut o = opts();
        o.out_rules[0].filter = "a/#/b".into();
        assert_eq!(field_of(&o), "out[0]");
        let mut o = opts();
        o.reconnect_min = Duration::from_secs(120);
        assert_eq!(field_of(&o), "reconnect_min");
        let mut o = opts();
        o.tls = Some(TlsOptions {
            cert: Some("c.pem".into()),
            ..TlsOptions::default()
        });
        assert_eq!(field_of(&o), "tls");
        let mut o = opts();
        o.address = "nowhere".into();
        assert_eq!(field_of(&o), "address");
    }

    #[test]
    fn server_name_defaults_to_the_host() {
        let mut o = opts();
        o.address = "broker.example.com:8883".into();
        o.tls = Some(TlsOptions::default());
        let c = o.check().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.server_name, "broker.example.com");
        assert_eq!(o.origin(), "bridge:b");
    }
}
