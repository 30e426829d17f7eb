//! Text templates of a scenario: client ids, topics, will and reply payloads, string
//! constants in telemetry. A template is parsed once when the scenario loads (so a bad
//! placeholder is reported with its file and line) and expanded per device or per command.
//!
//! Placeholders:
//! - `{class}`: the class name; `{id}`: the device's client id;
//! - `{n}`: the device's index within its class, **starting at 1**; `{n:03}` pads it with
//!   zeros to 3 digits (`press-{n:02}` gives `press-01`, `press-02`, ...);
//! - in command replies only: `{topic}` (the command's topic), `{payload}` (its payload as
//!   text) and `{cmd.FIELD}` (a member of a JSON command payload; `{cmd.a.b}` goes deeper).
//!
//! `{{` and `}}` stand for literal braces.

use std::fmt::Write as _;

use serde_json::Value;

/// Which placeholders a template may use, by where it appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A client id: `{class}` and `{n}` (the id is what is being made).
    ClientId,
    /// Anything per device: `{class}`, `{id}`, `{n}`.
    Device,
    /// A command reply: the device placeholders plus `{topic}`, `{payload}`, `{cmd.FIELD}`.
    Reply,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Class,
    Id,
    N { width: usize },
    Topic,
    Payload,
    Field(Vec<String>),
}

/// What a template is expanded with.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    /// The class name.
    pub class: &'a str,
    /// The device's client id (empty while the id itself is being expanded).
    pub id: &'a str,
    /// The device's 1-based index in its class.
    pub n: u64,
    /// The command being answered, for reply templates.
    pub command: Option<&'a CommandVars<'a>>,
}

/// The command a reply answers.
#[derive(Debug, Clone, Copy)]
pub struct CommandVars<'a> {
    /// The topic the command arrived on.
    pub topic: &'a str,
    /// Its payload.
    pub payload: &'a [u8],
    /// The payload parsed as JSON, when it is JSON.
    pub json: Option<&'a Value>,
}

impl Template {
    /// Parses `text`, allowing the placeholders of `scope`. The error says what is wrong in
    /// words a scenario author can act on.
    pub fn parse(text: &str, scope: Scope) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(format!("stray `}}` at byte {at}; write `}}}}` for a brace")),
                '{' => {
                    let rest = &text[at + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(format!("`{{` at byte {at} is not closed"));
                    };
                    let name = &rest[..end];
                    for _ in 0..=name.chars().count() {
                        chars.next();
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(placeholder(name, scope)?);
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self { parts })
    }

    /// Expands the template.
    pub fn expand(&self, vars: &Vars<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Class => out.push_str(vars.class),
                Part::Id => out.push_str(vars.id),
                Part::N { width } => {
                    let _ = write!(out, "{:0width$}", vars.n, width = *width);
                }
                Part::Topic => out.push_str(vars.command.map_or("", |c| c.topic)),
                Part::Payload => {
                    out.push_str(&String::from_utf8_lossy(
                        vars.command.map_or(&[][..], |c| c.payload),
                    ));
                }
                Part::Field(path) => match field(vars, path) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(Value::Null) | None => {}
                    Some(other) => out.push_str(&other.to_string()),
                },
            }
        }
        out
    }

    /// Expands the template as a JSON value: a template that is exactly one `{cmd.FIELD}`
    /// keeps the field's JSON type (a number stays a number; a missing field is `null`), and
    /// exactly `{payload}` gives the payload as JSON when it is JSON. Anything else is a
    /// string.
    pub fn expand_value(&self, vars: &Vars<'_>) -> Value {
        match self.parts.as_slice() {
            [Part::Field(path)] => field(vars, path).cloned().unwrap_or(Value::Null),
            [Part::Payload] => match vars.command.and_then(|c| c.json) {
                Some(v) => v.clone(),
                None => Value::String(self.expand(vars)),
            },
            _ => Value::String(self.expand(vars)),
        }
    }

    /// Whether the template uses `{n}`, so it differs between the devices of a class.
    pub fn uses_index(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::N { .. }))
    }

    /// Whether the template has no placeholder at all.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }
}

fn field<'a>(vars: &Vars<'a>, path: &[String]) -> Option<&'a Value> {
    let mut value = vars.command?.json?;
    for key in path {
        value = value.as_object()?.get(key)?;
    }
    Some(value)
}

fn placeholder(name: &str, scope: Scope) -> Result<Part, String> {
    let allowed = match scope {
        Scope::ClientId => "{class}, {n}",
        Scope::Device => "{class}, {id}, {n}",
        Scope::Reply => "{class}, {id}, {n}, {topic}, {payload}, {cmd.FIELD}",
    };
    let unknown = || format!("unknown placeholder `{{{name}}}`; this field can use {allowed}");
    let part = match name {
        "class" => Part::Class,
        "id" if scope != Scope::ClientId => Part::Id,
        "n" => Part::N { width: 0 },
        "topic" if scope == Scope::Reply => Part::Topic,
        "payload" if scope == Scope::Reply => Part::Payload,
        _ => {
            if let Some(spec) = name.strip_prefix("n:") {
                let width = spec
                    .strip_prefix('0')
                    .and_then(|w| w.parse::<usize>().ok())
                    .filter(|w| (1..=20).contains(w))
                    .ok_or_else(|| {
                        format!("`{{{name}}}`: write `{{n:03}}` to pad the index to 3 digits")
                    })?;
                Part::N { width }
            } else if let Some(path) = name.strip_prefix("cmd.") {
                if scope != Scope::Reply {
                    return Err(unknown());
                }
                let keys: Vec<String> = path.split('.').map(str::to_owned).collect();
                if keys.iter().any(String::is_empty) {
                    return Err(format!("`{{{name}}}` has an empty field name"));
                }
                Part::Field(keys)
            } else {
                return Err(unknown());
            }
        }
    };
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, scope: Scope) -> Template {
        match Template::parse(text, scope) {
            Ok(t) => t,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    fn device() -> Vars<'static> {
        Vars {
            class: "press",
            id: "press-07",
            n: 7,
            command: None,
        }
    }

    #[test]
    fn device_placeholders_expand() {
        let t = parse("plant/{class}/{id}/n{n}/{{raw}}", Scope::Device);
        assert_eq!(t.expand(&device()), "plant/press/press-07/n7/{raw}");
        assert_eq!(
            parse("{class}-{n:03}", Scope::ClientId).expand(&device()),
            "press-007"
        );
        assert!(parse("a/{n}", Scope::Device).uses_index());
        assert!(parse("a/{{b}}", Scope::Device).is_literal());
    }

    #[test]
    fn bad_placeholders_are_refused_with_a_reason() {
        let err = |text: &str, scope| match Template::parse(text, scope) {
            Ok(_) => panic!("{text} was accepted"),
            Err(e) => e,
        };
        assert!(err("a/{foo}", Scope::Device).contains("unknown placeholder `{foo}`"));
        assert!(err("{id}", Scope::ClientId).contains("{class}, {n}"));
        assert!(err("a/{topic}", Scope::Device).contains("unknown"));
        assert!(err("a/{cmd.x}", Scope::Device).contains("unknown"));
        assert!(err("a/{n:3}", Scope::Device).contains("{n:03}"));
        assert!(err("a/{id", Scope::Device).contains("not closed"));
        assert!(err("a/}", Scope::Device).contains("stray"));
        assert!(err("{cmd.}", Scope::Reply).contains("empty field"));
    }

    #[test]
    fn reply_fields_come_from_the_command() {
        let json: Value = serde_json::json!({"name": "start", "args": {"speed": 3}, "id": 9});
        let cmd = CommandVars {
            topic: "cmd/press-07",
            payload: br#"{"name":"start"}"#,
            json: Some(&json),
        };
        let vars = Vars {
            command: Some(&cmd),
            ..device()
        };
        let t = parse(
            "ack/{id}/{cmd.name}/{cmd.args.speed}{cmd.missing}",
            Scope::Reply,
        );
        assert_eq!(t.expand(&vars), "ack/press-07/start/3");
        assert_eq!(
            parse("{cmd.id}", Scope::Reply).expand_value(&vars),
            Value::from(9)
        );
        assert_eq!(
            parse("{cmd.nope}", Scope::Reply).expand_value(&vars),
            Value::Null
        );
        assert_eq!(parse("{payload}", Scope::Reply).expand_value(&vars), json);
        assert_eq!(
            parse("on {topic}", Scope::Reply).expand_value(&vars),
            Value::from("on cmd/press-07")
        );
    }
}
