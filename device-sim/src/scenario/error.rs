//! What is wrong with a scenario file, said as `FILE:LINE: FIELD: what`, e.g.
//! `factory.toml:12: classes[1].telemetry[0].interval: "5x" is not a duration`.
//!
//! Every problem carries a byte span of the file (from the TOML reader, or from a
//! [`toml::Spanned`] field during validation); [`locate`] turns the span into a line number
//! and the dotted path of the field that holds it, by walking the parsed document.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One mistake in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// Dotted field path such as `classes[1].telemetry[0].interval`; empty at the top.
    pub field: String,
    /// What is wrong, and what to write instead where that helps.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file, self.line, self.field, self.message
            )
        }
    }
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but is not a valid scenario; every problem found is listed.
    #[error("{}", list(.0))]
    Invalid(Vec<Problem>),
}

impl ScenarioError {
    /// The problems found, when the file was readable.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ScenarioError::Invalid(p) => p,
            ScenarioError::Read { .. } => &[],
        }
    }
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Builds a [`Problem`] for the byte span `span` of `text`.
pub fn locate(file: &str, text: &str, span: Option<Range<usize>>, message: String) -> Problem {
    let start = span.as_ref().map_or(0, |s| s.start.min(text.len()));
    let line = text.as_bytes()[..start]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1;
    let field = match (span, DeTable::parse(text)) {
        (Some(span), Ok(doc)) => {
            let mut best = Best::default();
            walk_table(doc.get_ref(), &span, &mut String::new(), &mut best);
            best.path
        }
        _ => String::new(),
    };
    Problem {
        file: file.to_owned(),
        line,
        field,
        message,
    }
}

/// The deepest field whose key or value contains the start of the span found so far (the
/// narrower one among equally deep fields).
#[derive(Default)]
struct Best {
    path: String,
    depth: usize,
    width: usize,
}

impl Best {
    fn offer(&mut self, outer: &Range<usize>, target: &Range<usize>, path: &str) {
        let at = target.start;
        let contains = outer.start <= at && (at < outer.end || at == outer.start);
        if !contains {
            return;
        }
        let depth = path.matches(['.', '[']).count() + 1;
        let width = outer.end.saturating_sub(outer.start);
        let better = self.path.is_empty()
            || depth > self.depth
            || (depth == self.depth && width < self.width);
        if better {
            self.path = path.to_owned();
            self.depth = depth;
            self.width = width;
        }
    }
}

fn walk_table(table: &DeTable<'_>, target: &Range<usize>, path: &mut String, best: &mut Best) {
    for (key, value) in table.iter() {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key.get_ref());
        best.offer(&key.span(), target, path);
        walk_value(value, target, path, best);
        path.truncate(len);
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    target: &Range<usize>,
    path: &mut String,
    best: &mut Best,
) {
    // Tables are searched whatever their own span: a table's members can be written far
    // from its header (`[classes.faults]` after other tables).
    match value.get_ref() {
        DeValue::Table(t) => walk_table(t, target, path, best),
        DeValue::Array(items) => {
            best.offer(&value.span(), target, path);
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                best.offer(&item.span(), target, path);
                walk_value(item, target, path, best);
                path.truncate(len);
            }
        }
        _ => best.offer(&value.span(), target, path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name = \"x\"\n\
        [[classes]]\n\
        name = \"a\"\n\
        count = 1\n\
        [[classes]]\n\
        name = \"b\"\n\
        count = 2\n\
        [[classes.telemetry]]\n\
        topic = \"t\"\n\
        interval = \"5x\"\n\
        [classes.faults]\n\
        storm = [{ at = \"1s\" }, { at = \"2q\" }]\n";

    fn span_of(needle: &str) -> Range<usize> {
        let start = DOC.find(needle).unwrap_or(0);
        start..start + needle.len()
    }

    #[test]
    fn spans_become_lines_and_field_paths() {
        let p = locate("f.toml", DOC, Some(span_of("\"5x\"")), "bad".into());
        assert_eq!(
            p.to_string(),
            "f.toml:10: classes[1].telemetry[0].interval: bad"
        );
        let p = locate("f.toml", DOC, Some(span_of("count = 2")), "m".into());
        assert_eq!((p.line, p.field.as_str()), (7, "classes[1].count"));
        let p = locate("f.toml", DOC, Some(span_of("\"2q\"")), "m".into());
        assert_eq!(p.field, "classes[1].faults.storm[1].at");
        let p = locate("f.toml", DOC, None, "no classes".into());
        assert_eq!(p.to_string(), "f.toml:1: no classes");
    }
}
