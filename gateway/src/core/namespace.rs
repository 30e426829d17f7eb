//! Namespace rules: which history policy applies to a channel.
//!
//! Rules are ordered; the first whose filter matches a channel decides. A channel no rule
//! matches gets the default policy.

use super::topic;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How much history the log keeps for the channels of a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPolicy {
    /// Messages kept per channel; the oldest are removed first. Trimming works in steps so
    /// that each one removes many messages at once: a write that takes a channel past
    /// `max_messages + slack`, where `slack = max(1, max_messages / 16)`, trims it back to
    /// `max_messages`. So after every write a channel holds at most `max_messages + slack`
    /// messages (or, when one group commit alone added more than that, just that commit's
    /// messages, trimmed by the next write), and the periodic retention sweep trims every
    /// channel back to exactly `max_messages`. 0 keeps no QoS 0 history; reliable messages,
    /// which are always written, are trimmed the same way (with a slack of 1).
    pub max_messages: u64,
    /// Messages older than this are removed; `None` keeps them until `max_messages` evicts.
    pub max_age: Option<Duration>,
    /// Whether QoS 0 messages are written to history at all.
    pub store_qos0: bool,
}

impl Default for HistoryPolicy {
    fn default() -> Self {
        HistoryPolicy {
            max_messages: 10_000,
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            store_qos0: true,
        }
    }
}

/// One namespace: a filter and the policy for the channels it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRule {
    /// Name used in logs and metrics.
    pub name: String,
    /// MQTT filter selecting the channels (validated when config is loaded).
    pub filter: String,
    /// History policy for those channels.
    pub history: HistoryPolicy,
}

/// The ordered rule list plus the fallback policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceRules {
    rules: Vec<NamespaceRule>,
    default: HistoryPolicy,
}

impl NamespaceRules {
    /// Builds the rule set; `rules` are tried in order.
    pub fn new(rules: Vec<NamespaceRule>, default: HistoryPolicy) -> Self {
        NamespaceRules { rules, default }
    }

    /// The rule list, in order.
    pub fn rules(&self) -> &[NamespaceRule] {
        &self.rules
    }

    /// The policy of the first rule matching `channel`, or the default.
    pub fn policy_for(&self, channel: &str) -> &HistoryPolicy {
        self.rules
            .iter()
            .find(|r| topic::matches(&r.filter, channel))
            .map(|r| &r.history)
            .unwrap_or(&self.default)
    }

    /// Whether a message on this channel goes into history. QoS 1 and 2 messages are always
    /// written (the delivery contract acknowledges them only once durable, and offline
    /// sessions catch up from them); retention trims them afterwards. QoS 0 messages are
    /// written only when the namespace keeps them.
    pub fn stores(&self, channel: &str, reliable: bool) -> bool {
        let p = self.policy_for(channel);
        reliable || (p.store_qos0 && p.max_messages > 0)
    }
}
