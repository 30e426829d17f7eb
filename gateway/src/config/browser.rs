//! `[browser]`: limits and timings of the browser transports (WebSocket `/ws`, SSE `/sse`,
//! long-poll `/poll`) and of the REST API under `/api/v1`.

use super::{ConfigError, duration};
use serde::Deserialize;
use std::time::Duration;

/// `[browser]`: the browser transports and the REST API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrowserConfig {
    /// Live messages queued for one browser connection before it counts as slow: reliable
    /// (qos 1) subscriptions then catch up from the log, qos 0 ones drop their oldest.
    /// Bounds the memory one slow browser can hold.
    pub outbound_queue: usize,
    /// Largest WebSocket message or REST request body accepted, in bytes. Bigger frames get
    /// a `frame_too_large` error (WebSocket) or 413 (REST).
    pub max_frame_size: usize,
    /// Subscriptions (filters) one browser connection may hold.
    pub max_subscriptions: usize,
    /// Largest `rewind` (messages) a subscription may ask for.
    pub max_rewind: usize,
    /// Publishes one WebSocket connection may have waiting for the log at once; past this
    /// the gateway stops reading from that connection until the log catches up.
    pub max_pending_publishes: usize,
    /// Most messages in one REST batch publish or one history page.
    pub max_batch: usize,
    /// How often an idle connection gets a heartbeat (WebSocket ping, SSE comment).
    #[serde(deserialize_with = "duration::deserialize")]
    pub heartbeat: Duration,
    /// A WebSocket peer that sends nothing (not even a pong) for this long is disconnected.
    #[serde(deserialize_with = "duration::deserialize")]
    pub idle_timeout: Duration,
    /// Longest a long-poll request (`/poll`) waits for a message before answering empty.
    #[serde(deserialize_with = "duration::deserialize")]
    pub poll_timeout: Duration,
    /// Web origins (`scheme://host[:port]`) whose pages may use the browser transports and
    /// the REST API: CORS answers for `/sse`, `/poll` and `/api/v1`, and the `Origin` check
    /// of `/ws` upgrades (a browser sends one; other clients usually do not and are let in).
    /// `"*"` allows every origin.
    pub allowed_origins: Vec<String>,
}

impl Default for BrowserConfig {
    fn default() -> Self {
        BrowserConfig {
            outbound_queue: 1024,
            max_frame_size: 1_048_576,
            max_subscriptions: 100,
            max_rewind: 10_000,
            max_pending_publishes: 1024,
            max_batch: 1000,
            heartbeat: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            poll_timeout: Duration::from_secs(25),
            allowed_origins: vec!["*".into()],
        }
    }
}

impl BrowserConfig {
    /// Checks ranges; the error names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: &str| ConfigError::Invalid {
            field: format!("browser.{field}"),
            message: message.into(),
        };
        let nonzero = [
            ("outbound_queue", self.outbound_queue),
            ("max_subscriptions", self.max_subscriptions),
            ("max_pending_publishes", self.max_pending_publishes),
            ("max_batch", self.max_batch),
        ];
        for (field, value) in nonzero {
            if value == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        if self.max_frame_size < 1024 {
            return Err(invalid(
                "max_frame_size",
                "must be at least 1024 bytes (default 1048576)",
            ));
        }
        let timers = [
            ("heartbeat", self.heartbeat),
            ("idle_timeout", self.idle_timeout),
            ("poll_timeout", self.poll_timeout),
        ];
        for (field, value) in timers {
            if value.is_zero() {
                return Err(invalid(field, "must be longer than 0, e.g. \"15s\""));
            }
        }
        for o in &self.allowed_origins {
            if o != "*" && !is_origin(o) {
                return Err(invalid(
                    "allowed_origins",
                    &format!(
                        "{o:?} is not an origin; write \"*\" or scheme://host[:port], e.g. \
                         \"https://dashboard.example.com\" (no path, no trailing slash)"
                    ),
                ));
            }
        }
        if self.idle_timeout <= self.heartbeat {
            return Err(invalid(
                "idle_timeout",
                "must be longer than browser.heartbeat, or idle peers are cut before they \
                 are pinged",
            ));
        }
        Ok(())
    }

    /// True when a page from `origin` (an `Origin` header value) may connect.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }
}

/// `scheme://host[:port]` with an http(s) scheme, a non-empty host and nothing after it.
fn is_origin(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', ' '])
        && rest.parse::<axum::http::uri::Authority>().is_ok()
}
