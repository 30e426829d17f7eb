//! Whole-config checks run after every layer is applied: addresses parse, limits are in
//! range, namespace filters are valid, and listeners stay on loopback while there is no
//! authentication.

use super::{Config, ConfigError};
use crate::core::topic::{self, TopicLimits};
use std::collections::HashSet;
use std::net::SocketAddr;

/// Smallest `mqtt.max_packet_size` accepted: below this not even a CONNECT with a short
/// client id and a will fits.
pub const MIN_PACKET_SIZE: u32 = 64;

/// Parses a listener address (`IP:port`, port 0 allowed). `field` names the setting in the
/// error, e.g. `mqtt.listen`.
pub fn parse_listen(field: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::Invalid {
        field: field.into(),
        message: format!(
            "{value:?} is not an IP:port address; write e.g. \"127.0.0.1:1883\" or \
             \"[::1]:1883\" (host names are not accepted; port 0 picks a free port)"
        ),
    })
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl Config {
    /// The `mqtt`, `http` and `admin` listener addresses, parsed.
    pub fn listen_addrs(&self) -> Result<[(&'static str, SocketAddr); 3], ConfigError> {
        Ok([
            (
                "mqtt.listen",
                parse_listen("mqtt.listen", &self.mqtt.listen)?,
            ),
            (
                "http.listen",
                parse_listen("http.listen", &self.http.listen)?,
            ),
            (
                "admin.listen",
                parse_listen("admin.listen", &self.admin.listen)?,
            ),
        ])
    }

    /// Topic limits from `[mqtt]`, as the core's validators take them.
    pub fn topic_limits(&self) -> TopicLimits {
        TopicLimits {
            max_len: self.mqtt.max_topic_length,
            max_levels: self.mqtt.max_topic_levels,
        }
    }

    /// Checks the configuration as a whole. The error names the first offending setting and
    /// says how to fix it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_listeners()?;
        self.validate_mqtt()?;
        self.browser.validate()?;
        if self.data.dir.as_os_str().is_empty() {
            return Err(invalid(
                "data.dir",
                "must not be empty; the default is \"./data\"",
            ));
        }
        if self.log.max_batch == 0 {
            return Err(invalid(
                "log.max_batch",
                "must be at least 1 (default 4096)",
            ));
        }
        self.validate_namespaces()
    }

    fn validate_listeners(&self) -> Result<(), ConfigError> {
        let addrs = self.listen_addrs()?;
        for (field, addr) in addrs {
            if !addr.ip().is_loopback() {
                return Err(invalid(
                    field,
                    format!(
                        "{addr} is not a loopback address. Anonymous access is allowed only \
                         while every listener is on loopback (127.0.0.1 or [::1]), and \
                         authentication is not configurable yet in this version: keep {field} \
                         on a loopback address, and put a reverse proxy or tunnel that \
                         authenticates clients in front of it to reach it from elsewhere"
                    ),
                ));
            }
        }
        for (i, (field_a, a)) in addrs.iter().enumerate() {
            for (field_b, b) in &addrs[i + 1..] {
                if a == b && a.port() != 0 {
                    return Err(invalid(
                        *field_b,
                        format!("{b} is also used by {field_a}; give each listener its own port"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_mqtt(&self) -> Result<(), ConfigError> {
        let m = &self.mqtt;
        if m.max_packet_size < MIN_PACKET_SIZE {
            return Err(invalid(
                "mqtt.max_packet_size",
                format!(
                    "must be at least {MIN_PACKET_SIZE} bytes (got {}); the default is 1048576",
                    m.max_packet_size
                ),
            ));
        }
        // MQTT's remaining length is at most 268,435,455; with the fixed header a packet is
        // at most 268,435,460 bytes.
        if m.max_packet_size > 268_435_460 {
            return Err(invalid(
                "mqtt.max_packet_size",
                format!(
                    "{} is larger than MQTT can encode (268435460 bytes)",
                    m.max_packet_size
                ),
            ));
        }
        if m.connect_timeout.is_zero() {
            return Err(invalid(
                "mqtt.connect_timeout",
                "must be longer than 0, e.g. \"10s\"",
            ));
        }
        let nonzero: [(&str, usize); 8] = [
            ("mqtt.receive_maximum", m.receive_maximum.into()),
            ("mqtt.max_inflight", m.max_inflight.into()),
            ("mqtt.outbound_queue", m.outbound_queue),
            ("mqtt.max_topic_levels", m.max_topic_levels),
            ("mqtt.max_topic_length", m.max_topic_length),
            ("mqtt.max_client_id_length", m.max_client_id_length),
            (
                "mqtt.max_subscriptions_per_client",
                m.max_subscriptions_per_client,
            ),
            ("mqtt.max_offline_messages", m.max_offline_messages),
        ];
        for (field, value) in nonzero {
            if value == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        if m.max_topic_length > topic::MQTT_MAX_TOPIC_BYTES {
            return Err(invalid(
                "mqtt.max_topic_length",
                format!(
                    "{} is more than MQTT can carry ({} bytes)",
                    m.max_topic_length,
                    topic::MQTT_MAX_TOPIC_BYTES
                ),
            ));
        }
        // The client id is an MQTT UTF-8 string: two-byte length prefix.
        if m.max_client_id_length > 65_535 {
            return Err(invalid(
                "mqtt.max_client_id_length",
                format!(
                    "{} is more than MQTT can carry (65535 bytes)",
                    m.max_client_id_length
                ),
            ));
        }
        Ok(())
    }

    fn validate_namespaces(&self) -> Result<(), ConfigError> {
        let limits = self.topic_limits();
        let mut names = HashSet::new();
        for (i, ns) in self.namespace.iter().enumerate() {
            let at = |key: &str| format!("namespace[{i}] ({:?}).{key}", ns.name);
            if ns.name.trim().is_empty() {
                return Err(invalid(
                    format!("namespace[{i}].name"),
                    "must not be empty; it names the namespace in logs and metrics",
                ));
            }
            if !names.insert(ns.name.as_str()) {
                return Err(invalid(
                    at("name"),
                    "is used by an earlier namespace; give each namespace its own name",
                ));
            }
            match topic::validate_filter(&ns.filter, &limits) {
                Ok(f) if f.is_shared() => {
                    return Err(invalid(
                        at("filter"),
                        "a namespace filter cannot be a $share/ filter; write the plain \
                         filter, e.g. \"plant1/#\"",
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(invalid(at("filter"), e.to_string())),
            }
        }
        Ok(())
    }
}
