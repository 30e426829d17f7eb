//! Topic names and filters: validation and matching, per MQTT 5 section 4.7 (and 4.8.2 for
//! shared subscriptions).
//!
//! Every topic name and filter that enters the gateway, from any transport, goes through
//! [`validate_topic_name`] or [`validate_filter`] first; the rest of the core (the
//! [`SubscriptionIndex`](super::index::SubscriptionIndex), namespace rules, the log) assumes
//! valid input. [`matches`] is the reference matcher; the index must agree with it.
//!
//! Rules beyond the MQTT "MUST"s, and why:
//! - Control characters U+0001..U+001F and U+007F..U+009F are rejected (MQTT 5 §4.7.3 says
//!   they SHOULD NOT be used). Channel names end up in logs, metrics labels, the console and
//!   dashboards; a newline or an escape sequence there can forge log lines or corrupt a
//!   terminal. The same rule applies to filters, since a filter holding one could never match
//!   a valid topic name and is certainly a mistake.
//! - A filter whose first level is exactly `$share` is always read as a shared subscription,
//!   so `$share` and `$share/group` alone are errors rather than plain filters.

/// Largest topic name or filter MQTT can carry: a UTF-8 string has a two-byte length prefix.
pub const MQTT_MAX_TOPIC_BYTES: usize = 65_535;

/// The first level that marks a shared subscription filter (`$share/{group}/{filter}`).
const SHARE_PREFIX: &str = "$share/";

/// Limits on top of the MQTT rules, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicLimits {
    /// Longest accepted topic name or filter, in bytes. Values above
    /// [`MQTT_MAX_TOPIC_BYTES`] are capped to it. Bounds memory per subscription and per
    /// stored message key.
    pub max_len: usize,
    /// Most `/`-separated levels accepted. Bounds the depth of the subscription index, and
    /// with it the work and stack needed to route one message.
    pub max_levels: usize,
}

impl Default for TopicLimits {
    fn default() -> Self {
        TopicLimits {
            max_len: MQTT_MAX_TOPIC_BYTES,
            max_levels: 128,
        }
    }
}

/// Why a topic name or filter was refused. Messages name the offending rule and how to fix
/// it; they never echo the input (it may be huge or hold control characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Zero-length topic name or filter.
    #[error("topic is empty: give at least one character, e.g. \"sensors/temp\"")]
    Empty,
    /// Longer than the configured or protocol limit.
    #[error("topic is {len} bytes long; the limit is {max} bytes: use a shorter name")]
    TooLong {
        /// Length of the input in bytes.
        len: usize,
        /// The effective limit.
        max: usize,
    },
    /// More `/`-separated levels than configured.
    #[error("topic has {levels} levels; the limit is {max}: use fewer '/'-separated levels")]
    TooManyLevels {
        /// Number of levels in the input.
        levels: usize,
        /// The configured limit.
        max: usize,
    },
    /// A topic name (what is published to) holds `+` or `#`.
    #[error(
        "topic name contains the wildcard '{wildcard}' at byte {at}; wildcards are only \
         allowed in subscription filters, publish to a concrete topic instead"
    )]
    WildcardInTopicName {
        /// The wildcard character found.
        wildcard: char,
        /// Its byte offset in the input.
        at: usize,
    },
    /// U+0000 anywhere in the input (forbidden by MQTT).
    #[error("topic contains a NUL character (U+0000) at byte {at}; remove it")]
    NulChar {
        /// Byte offset of the NUL.
        at: usize,
    },
    /// A control character other than NUL (see the module docs for why these are refused).
    #[error(
        "topic contains the control character U+{code:04X} at byte {at}; control characters \
         are not allowed in topics, remove it"
    )]
    ControlChar {
        /// The code point.
        code: u32,
        /// Its byte offset in the input.
        at: usize,
    },
    /// `#` is not the whole last level of a filter.
    #[error(
        "'#' at byte {at} must be the whole last level of the filter, as in \"site/#\" or \"#\""
    )]
    MisplacedMultiLevelWildcard {
        /// Byte offset of the `#`.
        at: usize,
    },
    /// `+` shares a level with other characters.
    #[error(
        "'+' at byte {at} must be a whole level of the filter, as in \"site/+/temp\", \
         not part of one like \"site/a+/temp\""
    )]
    MisplacedSingleLevelWildcard {
        /// Byte offset of the `+`.
        at: usize,
    },
    /// `$share` without a group name (`$share`, `$share/`, `$share//x`).
    #[error(
        "shared subscription has no group name: write \"$share/<group>/<filter>\", \
         e.g. \"$share/workers/jobs/#\""
    )]
    EmptyShareGroup,
    /// The group name of a shared subscription holds `+` or `#`.
    #[error(
        "shared subscription group name contains '{wildcard}'; group names cannot contain \
         '+', '#' or '/'"
    )]
    InvalidShareGroup {
        /// The wildcard character found.
        wildcard: char,
    },
    /// `$share/{group}` with nothing (or an empty filter) after the group.
    #[error(
        "shared subscription has no filter after the group name: write \
         \"$share/<group>/<filter>\", e.g. \"$share/workers/jobs/#\""
    )]
    MissingSharedFilter,
}

/// A validated filter, split into its shared-subscription group (if any) and the filter
/// proper that topics are matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterRef<'a> {
    /// An ordinary filter; every matching subscriber receives each message.
    Plain(&'a str),
    /// `$share/{group}/{filter}`: each message goes to one member of the group. MQTT 5
    /// identifies the group by both `group` and `filter`.
    Shared {
        /// The share name.
        group: &'a str,
        /// The filter matched against topics (never empty).
        filter: &'a str,
    },
}

impl<'a> FilterRef<'a> {
    /// Splits a filter that was already validated by [`validate_filter`]. On other input it
    /// does not fail: anything that is not a well-formed `$share/{group}/{filter}` is
    /// returned as [`FilterRef::Plain`].
    pub fn parse(filter: &'a str) -> FilterRef<'a> {
        let shared = filter
            .strip_prefix(SHARE_PREFIX)
            .and_then(|rest| rest.split_once('/'))
            .filter(|(group, inner)| !group.is_empty() && !inner.is_empty());
        if let Some((group, inner)) = shared {
            return FilterRef::Shared {
                group,
                filter: inner,
            };
        }
        FilterRef::Plain(filter)
    }

    /// The filter matched against topic names (without any `$share/{group}/` prefix).
    pub fn filter(&self) -> &'a str {
        match *self {
            FilterRef::Plain(f) | FilterRef::Shared { filter: f, .. } => f,
        }
    }

    /// The share group name, for a shared subscription.
    pub fn share_group(&self) -> Option<&'a str> {
        match *self {
            FilterRef::Plain(_) => None,
            FilterRef::Shared { group, .. } => Some(group),
        }
    }

    /// True for `$share/{group}/{filter}`.
    pub fn is_shared(&self) -> bool {
        matches!(self, FilterRef::Shared { .. })
    }
}

/// Checks a topic name (what a message is published to) against MQTT's rules and `limits`:
/// non-empty, not too long, no `+`/`#`, no NUL or other control character, not too many
/// levels. Empty levels (`a//b`, `/a`) are valid.
pub fn validate_topic_name(topic: &str, limits: &TopicLimits) -> Result<(), TopicError> {
    check_length(topic, limits)?;
    let mut levels = 1usize;
    let bytes = topic.as_bytes();
    for (at, &b) in bytes.iter().enumerate() {
        match b {
            b'/' => levels += 1,
            b'+' | b'#' => {
                return Err(TopicError::WildcardInTopicName {
                    wildcard: char::from(b),
                    at,
                });
            }
            _ => check_control(bytes, at)?,
        }
    }
    check_levels(levels, limits)
}

/// Checks a subscription filter and tells whether it is a shared subscription.
///
/// Rules: the [`validate_topic_name`] rules for length, NUL and control characters; `+` only
/// as a whole level; `#` only as the whole last level; `$share/{group}/{filter}` needs a
/// non-empty group without `+` or `#` and a non-empty valid filter after it. The length limit
/// applies to the whole input, the level limit to the filter matched against topics.
pub fn validate_filter<'a>(
    filter: &'a str,
    limits: &TopicLimits,
) -> Result<FilterRef<'a>, TopicError> {
    check_length(filter, limits)?;
    if filter == "$share" {
        return Err(TopicError::EmptyShareGroup);
    }
    let Some(rest) = filter.strip_prefix(SHARE_PREFIX) else {
        check_plain_filter(filter, 0, limits)?;
        return Ok(FilterRef::Plain(filter));
    };
    let (group, inner) = rest.split_once('/').unwrap_or((rest, ""));
    if group.is_empty() {
        return Err(TopicError::EmptyShareGroup);
    }
    let group_at = SHARE_PREFIX.len();
    let group_bytes = group.as_bytes();
    for (i, &b) in group_bytes.iter().enumerate() {
        match b {
            b'+' | b'#' => {
                return Err(TopicError::InvalidShareGroup {
                    wildcard: char::from(b),
                });
            }
            _ => check_control(group_bytes, i).map_err(|e| shift(e, group_at))?,
        }
    }
    if inner.is_empty() {
        return Err(TopicError::MissingSharedFilter);
    }
    check_plain_filter(inner, group_at + group.len() + 1, limits)?;
    Ok(FilterRef::Shared {
        group,
        filter: inner,
    })
}

/// True when a filter holds a `+` or `#` level, i.e. may match more than one topic name.
/// For a shared subscription the filter after the group is what counts.
pub fn is_wildcard_filter(filter: &str) -> bool {
    FilterRef::parse(filter)
        .filter()
        .bytes()
        .any(|b| b == b'+' || b == b'#')
}

/// True when `topic` (a valid topic name) matches `filter` (a valid, non-shared filter).
/// Topics starting with `$` are not matched by a filter starting with a wildcard.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Non-empty and within both the configured and the protocol length limit.
fn check_length(s: &str, limits: &TopicLimits) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    let max = limits.max_len.min(MQTT_MAX_TOPIC_BYTES);
    if s.len() > max {
        return Err(TopicError::TooLong { len: s.len(), max });
    }
    Ok(())
}

fn check_levels(levels: usize, limits: &TopicLimits) -> Result<(), TopicError> {
    if levels > limits.max_levels {
        return Err(TopicError::TooManyLevels {
            levels,
            max: limits.max_levels,
        });
    }
    Ok(())
}

/// Rejects NUL and control characters starting at byte `at` of valid UTF-8. C0 controls and
/// DEL are single bytes; C1 controls (U+0080..U+009F) are encoded as `C2 80`..`C2 9F`, and
/// in valid UTF-8 a `C2` byte always starts such a two-byte sequence.
fn check_control(bytes: &[u8], at: usize) -> Result<(), TopicError> {
    match bytes[at] {
        0 => Err(TopicError::NulChar { at }),
        b @ (0x01..=0x1F | 0x7F) => Err(TopicError::ControlChar {
            code: u32::from(b),
            at,
        }),
        0xC2 => match bytes.get(at + 1) {
            Some(&c @ 0x80..=0x9F) => Err(TopicError::ControlChar {
                code: u32::from(c),
                at,
            }),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Checks a non-shared filter that starts at byte `base` of the caller's input (for error
/// offsets).
fn check_plain_filter(filter: &str, base: usize, limits: &TopicLimits) -> Result<(), TopicError> {
    let bytes = filter.as_bytes();
    let mut levels = 1usize;
    for (i, &b) in bytes.iter().enumerate() {
        let alone_before = i == 0 || bytes[i - 1] == b'/';
        let next = bytes.get(i + 1).copied();
        match b {
            b'/' => levels += 1,
            b'#' if !(alone_before && next.is_none()) => {
                return Err(TopicError::MisplacedMultiLevelWildcard { at: base + i });
            }
            b'+' if !(alone_before && matches!(next, None | Some(b'/'))) => {
                return Err(TopicError::MisplacedSingleLevelWildcard { at: base + i });
            }
            b'#' | b'+' => {}
            _ => check_control(bytes, i).map_err(|e| shift(e, base))?,
        }
    }
    check_levels(levels, limits)
}

/// Moves the byte offset of a character error by `base`.
fn shift(e: TopicError, base: usize) -> TopicError {
    match e {
        TopicError::NulChar { at } => TopicError::NulChar { at: at + base },
        TopicError::ControlChar { code, at } => TopicError::ControlChar {
            code,
            at: at + base,
        },
        other => other,
    }
}

#[cfg(test)]
#[path = "topic_tests.rs"]
mod tests;
