//! Environment overrides: `GATEWAY__SECTION__KEY=value`.
//!
//! The name after the `GATEWAY__` prefix is the setting's path, `__`-separated and
//! case-insensitive: `GATEWAY__MQTT__LISTEN=127.0.0.1:0` sets `mqtt.listen`,
//! `GATEWAY__HISTORY__MAX_MESSAGES=5` sets `history.max_messages`. The value is read as a TOML
//! value when it is one (`5`, `true`, `"text"`, `[1, 2]`, `[{ name = "a", filter = "a/#" }]`)
//! and as a plain string otherwise (`127.0.0.1:0`, `7d`). An unknown setting is an error, as it
//! is in the file.

use super::{Config, ConfigError};

/// Prefix of every override variable.
pub const PREFIX: &str = "GATEWAY__";

/// Applies the `GATEWAY__…` variables among `vars` to `table`, in name order, and returns the
/// resulting config. Other variables are ignored. Each override is checked as it is applied,
/// so an error names the variable that caused it.
pub(super) fn apply(
    mut table: toml::Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut overrides: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .collect();
    overrides.sort();

    let mut config = Config::from_table(table.clone()).map_err(|message| ConfigError::Parse {
        path: "<built-in defaults>".into(),
        message,
    })?;
    for (var, raw) in overrides {
        let err = |message: String| ConfigError::Env {
            var: var.clone(),
            message,
        };
        let path: Vec<String> = var[PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(err(format!(
                "the name must be {PREFIX}SECTION__KEY, e.g. GATEWAY__MQTT__LISTEN"
            )));
        }
        let value = parse_value(&raw);
        let typed = !value.is_str();
        set(&mut table, &path, value).map_err(err)?;
        config = match Config::from_table(table.clone()) {
            Ok(c) => c,
            // `1883` or `nan` read as TOML may be meant as text (a name, a path): retry as a
            // string before giving up, and report the first error if that fails too.
            Err(first) if typed => {
                set(&mut table, &path, toml::Value::String(raw.clone())).map_err(err)?;
                Config::from_table(table.clone()).map_err(|_| err(first))?
            }
            Err(e) => return Err(err(e)),
        };
    }
    Ok(config)
}

/// Reads an environment value: TOML when it parses as a TOML value, else a string.
pub fn parse_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Sets `path` in `table`, creating intermediate tables.
fn set(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty setting name".into());
    };
    let mut current = table;
    for (i, key) in parents.iter().enumerate() {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(format!(
                    "`{}` is a value, not a section",
                    path[..=i].join(".")
                ));
            }
        };
    }
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_toml_when_they_parse() {
        assert_eq!(parse_value("5"), toml::Value::Integer(5));
        assert_eq!(parse_value("true"), toml::Value::Boolean(true));
        assert_eq!(parse_value("\"x y\""), toml::Value::String("x y".into()));
        assert_eq!(
            parse_value("127.0.0.1:0"),
            toml::Value::String("127.0.0.1:0".into())
        );
        assert_eq!(parse_value("7d"), toml::Value::String("7d".into()));
        // Something that is TOML followed by junk is a string, not a truncated value.
        assert_eq!(parse_value("5 6"), toml::Value::String("5 6".into()));
    }
}
