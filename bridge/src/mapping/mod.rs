//! Mapping rules: which topics cross the bridge and what they are called on the other side.
//!
//! An **out** rule takes local topics matching a filter to a remote topic template; an **in**
//! rule takes remote topics matching a filter to a local topic template. Rules of one
//! direction are tried in order and the first whose filter matches decides, so a message
//! crosses at most once.
//!
//! # Templates
//! A template is a topic name with placeholders:
//! - `{1}`, `{2}`, … stand for what the filter's wildcards matched, in order. A `+` matches
//!   one level; a `#` matches the rest of the topic (several levels, or none). When a `#`
//!   matched nothing, a `/` written just before its placeholder is dropped too, so
//!   `plant/#` → `site/{1}` maps `plant/a/b` to `site/a/b` and `plant` to `site`.
//! - `{topic}` stands for the whole topic.
//!
//! `{` and `}` are reserved for placeholders; `+` and `#` cannot appear in a template.
//! Without a template a topic keeps its name (the template is `{topic}`).
//!
//! Layout: `mod.rs` holds [`Rule`] and the matcher; `template.rs` holds [`Template`].

mod template;
#[cfg(test)]
mod tests;

pub use template::Template;

use crate::message::QoS;

/// Largest topic name or filter MQTT can carry.
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// Why a filter or template in a rule is not usable. The message says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The filter is not a valid MQTT filter.
    #[error("filter {filter:?}: {reason}")]
    Filter {
        /// The filter as written.
        filter: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The template is not valid.
    #[error("template {template:?}: {reason}")]
    Template {
        /// The template as written.
        template: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// What happens to a message's retain flag when it crosses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainPolicy {
    /// The flag crosses as it is.
    #[default]
    Keep,
    /// The flag is cleared: nothing becomes retained on the other side.
    Clear,
    /// The flag is set: every message becomes the retained message of its topic.
    Set,
}

impl RetainPolicy {
    /// The flag after the policy.
    pub fn apply(self, retain: bool) -> bool {
        match self {
            RetainPolicy::Keep => retain,
            RetainPolicy::Clear => false,
            RetainPolicy::Set => true,
        }
    }
}

/// A compiled rule: a filter, the template its matches are renamed with, and the QoS and
/// retain handling of the direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The filter as given (for an in rule, what is subscribed at the remote; it may be a
    /// `$share/{group}/…` filter).
    pub filter: String,
    /// The part of the filter topics are matched against (the filter without any
    /// `$share/{group}/` prefix).
    matcher: String,
    /// Kinds of the filter's wildcards, in order.
    wildcards: Vec<Wildcard>,
    /// What matching topics become.
    pub template: Template,
    /// Out: highest QoS used at the remote (the message's own QoS is never raised). In: the
    /// QoS of the subscription at the remote.
    pub qos: QoS,
    /// What happens to the retain flag.
    pub retain: RetainPolicy,
}

/// The kind of one wildcard level of a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wildcard {
    /// `+`: exactly one level.
    Single,
    /// `#`: the rest of the topic.
    Multi,
}

impl Rule {
    /// Compiles a rule. `allow_shared` permits a `$share/{group}/{filter}` filter (in rules:
    /// the remote then spreads messages over the members of the group).
    pub fn new(
        filter: &str,
        template: Option<&str>,
        qos: QoS,
        retain: RetainPolicy,
        allow_shared: bool,
    ) -> Result<Rule, MappingError> {
        let (matcher, wildcards) = parse_filter(filter, allow_shared)?;
        let template = Template::parse(template.unwrap_or("{topic}"))?;
        if let Some(n) = template.max_capture() {
            if n > wildcards.len() {
                return Err(MappingError::Template {
                    template: template.text().to_string(),
                    reason: format!(
                        "uses {{{n}}} but the filter {filter:?} has only {} wildcard(s); \
                         {{1}} is the first '+' or '#' of the filter",
                        wildcards.len()
                    ),
                });
            }
        }
        Ok(Rule {
            filter: filter.to_string(),
            matcher: matcher.to_string(),
            wildcards,
            template,
            qos,
            retain,
        })
    }

    /// The topic `topic` becomes under this rule, or `None` when the filter does not match
    /// it or the result would not be a valid topic name (empty or too long).
    pub fn map(&self, topic: &str) -> Option<String> {
        let captures = capture(&self.matcher, topic)?;
        let out = self.template.render(topic, &captures, &self.wildcards);
        (!out.is_empty() && out.len() <= MAX_TOPIC_BYTES).then_some(out)
    }

    /// True when the filter matches `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        capture(&self.matcher, topic).is_some()
    }

    /// A filter matching every topic this rule can produce (possibly more). Used for the
    /// MQTT 3.1.1 origin rule: remote topics an out rule publishes to belong to this side.
    pub fn output_filter(&self) -> String {
        if self.template.is_identity() {
            return self.matcher.clone();
        }
        self.template.output_filter(&self.wildcards)
    }
}

/// The first rule of `rules` that maps `topic`, with the mapped topic.
pub fn first_match<'r>(rules: &'r [Rule], topic: &str) -> Option<(&'r Rule, String)> {
    rules
        .iter()
        .find_map(|r| r.map(topic).map(|mapped| (r, mapped)))
}

/// Checks a filter and returns the part topics are matched against and its wildcards.
fn parse_filter(filter: &str, allow_shared: bool) -> Result<(&str, Vec<Wildcard>), MappingError> {
    let err = |reason: &str| MappingError::Filter {
        filter: filter.to_string(),
        reason: reason.to_string(),
    };
    if filter.is_empty() {
        return Err(err("is empty; write e.g. \"sensors/#\""));
    }
    if filter.len() > MAX_TOPIC_BYTES {
        return Err(err("is longer than MQTT allows (65535 bytes)"));
    }
    if filter.chars().any(char::is_control) {
        return Err(err("contains a control character"));
    }
    let matcher = match filter.strip_prefix("$share/") {
        Some(rest) => {
            if !allow_shared {
                return Err(err(
                    "a $share/ filter is only meaningful at the remote (in rules); write the \
                     plain filter",
                ));
            }
            match rest.split_once('/') {
                Some((group, inner))
                    if !group.is_empty() && !inner.is_empty() && !group.contains(['+', '#']) =>
                {
                    inner
                }
                _ => return Err(err("write a shared filter as \"$share/<group>/<filter>\"")),
            }
        }
        None if filter == "$share" => {
            return Err(err("write a shared filter as \"$share/<group>/<filter>\""));
        }
        None => filter,
    };
    let levels: Vec<&str> = matcher.split('/').collect();
    let mut wildcards = Vec::new();
    for (i, level) in levels.iter().enumerate() {
        match *level {
            "+" => wildcards.push(Wildcard::Single),
            "#" if i + 1 == levels.len() => wildcards.push(Wildcard::Multi),
            "#" => return Err(err("'#' must be the last level, as in \"site/#\"")),
            l if l.contains(['+', '#']) => {
                return Err(err(
                    "'+' and '#' must be whole levels, as in \"site/+/temp\" or \"site/#\"",
                ));
            }
            _ => {}
        }
    }
    Ok((matcher, wildcards))
}

/// Matches `topic` against the (non-shared, valid) filter `filter` and returns what each
/// wildcard matched: one level for `+`, the rest of the topic for `#` (`None` when `#`
/// matched no level at all, as `a/#` does for `a`). Topics starting with `$` are not matched
/// by a leading wildcard.
pub(crate) fn capture<'t>(filter: &str, topic: &'t str) -> Option<Vec<Option<&'t str>>> {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return None;
    }
    let mut captures = Vec::new();
    let mut rest = Some(topic);
    for level in filter.split('/') {
        if level == "#" {
            captures.push(rest);
            return Some(captures);
        }
        let r = rest?;
        let (this, after) = match r.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (r, None),
        };
        if level == "+" {
            captures.push(Some(this));
        } else if level != this {
            return None;
        }
        rest = after;
    }
    rest.is_none().then_some(captures)
}
