//! [`Template`]: a topic name with `{1}`, `{2}`, … and `{topic}` placeholders; see the
//! module docs of [`crate::mapping`] for the syntax.

use super::{MAX_TOPIC_BYTES, MappingError, Wildcard};

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Text copied as it is.
    Literal(String),
    /// What the n-th wildcard matched (0-based).
    Capture(usize),
    /// The whole topic.
    Topic,
}

/// A parsed topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parses a template; the error says what is wrong and how to write it.
    pub fn parse(text: &str) -> Result<Template, MappingError> {
        let err = |reason: String| MappingError::Template {
            template: text.to_string(),
            reason,
        };
        if text.is_empty() {
            return Err(err(
                "is empty; write a topic such as \"site/{1}\", or leave it out to keep names"
                    .into(),
            ));
        }
        if text.len() > MAX_TOPIC_BYTES {
            return Err(err("is longer than MQTT allows (65535 bytes)".into()));
        }
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(err(format!(
                "contains the control character U+{:04X}",
                u32::from(c)
            )));
        }
        if text.contains(['+', '#']) {
            return Err(err(
                "'+' and '#' cannot appear in a template: it names one topic; use {1}, {2}, … \
                 for what the filter's wildcards matched"
                    .into(),
            ));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Literal(rest.to_string()));
                    break;
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Literal(rest[..i].to_string()));
                    }
                    let after = &rest[i..];
                    let close = match (after.starts_with('{'), after.find('}')) {
                        (true, Some(c)) => c,
                        _ => {
                            return Err(err(
                                "'{' and '}' are reserved for placeholders such as {1} or \
                                 {topic}"
                                    .into(),
                            ));
                        }
                    };
                    let name = &after[1..close];
                    parts.push(placeholder(name).map_err(err)?);
                    rest = &after[close + 1..];
                }
            }
        }
        Ok(Template {
            text: text.to_string(),
            parts,
        })
    }

    /// The template as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True for `{topic}` alone: names are kept.
    pub fn is_identity(&self) -> bool {
        self.parts == [Part::Topic]
    }

    /// The highest `{n}` used (1-based), if any.
    pub fn max_capture(&self) -> Option<usize> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Capture(i) => Some(i + 1),
                _ => None,
            })
            .max()
    }

    /// Builds the topic for `topic`, whose wildcard matches are `captures` (kinds in
    /// `wildcards`).
    pub(crate) fn render(
        &self,
        topic: &str,
        captures: &[Option<&str>],
        wildcards: &[Wildcard],
    ) -> String {
        let mut out = String::with_capacity(self.text.len() + topic.len());
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Topic => out.push_str(topic),
                Part::Capture(i) => match captures.get(*i).copied().flatten() {
                    Some(c) => out.push_str(c),
                    None => {
                        // A `#` that matched no level: drop the separator written before it.
                        if wildcards.get(*i) == Some(&Wildcard::Multi) && out.ends_with('/') {
                            out.pop();
                        }
                    }
                },
            }
        }
        out
    }

    /// A filter matching every topic this template can produce from a filter with
    /// `wildcards` (a superset when a placeholder shares a level with text).
    pub(crate) fn output_filter(&self, wildcards: &[Wildcard]) -> String {
        // Rebuild level by level: a level holding a one-level capture becomes `+`; one
        // holding a multi-level capture (or the whole topic) ends the filter with `#`.
        let mut levels: Vec<String> = vec![String::new()];
        let mut kinds: Vec<Option<Wildcard>> = vec![None];
        for part in &self.parts {
            match part {
                Part::Literal(s) => {
                    let mut pieces = s.split('/');
                    if let (Some(first), Some(last)) = (pieces.next(), levels.last_mut()) {
                        last.push_str(first);
                    }
                    for piece in pieces {
                        levels.push(piece.to_string());
                        kinds.push(None);
                    }
                }
                Part::Topic => mark(&mut kinds, Wildcard::Multi),
                Part::Capture(i) => mark(
                    &mut kinds,
                    wildcards.get(*i).copied().unwrap_or(Wildcard::Multi),
                ),
            }
        }
        let mut out: Vec<String> = Vec::with_capacity(levels.len());
        for (level, kind) in levels.into_iter().zip(kinds) {
            match kind {
                Some(Wildcard::Multi) => {
                    // A `#` capture may also be empty and take its separator with it, which
                    // `.../#` covers (it matches the parent level too).
                    out.push("#".into());
                    break;
                }
                Some(Wildcard::Single) => out.push("+".into()),
                None => out.push(level),
            }
        }
        out.join("/")
    }
}

/// Records that the current (last) level holds a capture of `kind`; a multi-level capture
/// wins over a single-level one.
fn mark(kinds: &mut [Option<Wildcard>], kind: Wildcard) {
    if let Some(last) = kinds.last_mut() {
        if *last != Some(Wildcard::Multi) {
            *last = Some(kind);
        }
    }
}

fn placeholder(name: &str) -> Result<Part, String> {
    if name == "topic" {
        return Ok(Part::Topic);
    }
    match name.parse::<usize>() {
        Ok(n) if n >= 1 && !name.starts_with('+') => Ok(Part::Capture(n - 1)),
        _ => Err(format!(
            "unknown placeholder {{{name}}}: use {{1}}, {{2}}, … for the filter's wildcards, \
             or {{topic}} for the whole topic"
        )),
    }
}
