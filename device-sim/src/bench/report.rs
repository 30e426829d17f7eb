//! The result of one scenario run: a [`Report`] of named [`Metric`]s, printed as a text table
//! for people and written as JSON for scripts (`compare` reads it back).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::BenchError;

/// Which direction of a metric is the good one; `compare` uses it to label ratios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// More is better (rates).
    Higher,
    /// Less is better (latency, memory, loss).
    Lower,
    /// Informational.
    None,
}

/// One measured number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Stable machine name, e.g. `delivered_per_sec`.
    pub key: String,
    /// What a person reads, e.g. `delivered`.
    pub label: String,
    /// The value, in `unit`.
    pub value: f64,
    /// Unit, e.g. `msg/s`, `µs`, `B`.
    pub unit: String,
    /// Which direction is good.
    pub better: Better,
    /// Shown in the side-by-side comparison (the numbers a benchmark target is stated in).
    pub headline: bool,
}

/// Everything one scenario run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Scenario name (`throughput`, `latency`, `idle`, `reconnect-storm`).
    pub scenario: String,
    /// Case title, e.g. "1→1 QoS 0 100 B".
    pub title: String,
    /// Name of the broker under test (`--target`), if given.
    pub target: Option<String>,
    /// Broker address.
    pub broker: String,
    /// False when the run hit `--timeout` or could not measure everything it meant to.
    pub complete: bool,
    /// The parameters that define the case, for reproducing it.
    pub params: BTreeMap<String, String>,
    /// The measurements, in display order.
    pub metrics: Vec<Metric>,
    /// Errors seen while measuring, by kind, with counts.
    pub errors: BTreeMap<String, u64>,
    /// Remarks a reader needs to interpret the numbers.
    pub notes: Vec<String>,
}

impl Report {
    /// An empty, complete report for `scenario` against `broker`.
    pub fn new(scenario: &str, title: String, broker: String) -> Self {
        Self {
            scenario: scenario.to_string(),
            title,
            target: None,
            broker,
            complete: true,
            params: BTreeMap::new(),
            metrics: Vec::new(),
            errors: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    /// Records a parameter of the case.
    pub fn param(&mut self, key: &str, value: impl ToString) {
        self.params.insert(key.to_string(), value.to_string());
    }

    /// Appends a metric.
    pub fn metric(&mut self, key: &str, label: &str, value: f64, unit: &str, better: Better) {
        self.metrics.push(Metric {
            key: key.to_string(),
            label: label.to_string(),
            value,
            unit: unit.to_string(),
            better,
            headline: false,
        });
    }

    /// Appends a metric that `compare` shows.
    pub fn headline(&mut self, key: &str, label: &str, value: f64, unit: &str, better: Better) {
        self.metric(key, label, value, unit, better);
        if let Some(m) = self.metrics.last_mut() {
            m.headline = true;
        }
    }

    /// Adds `count` errors of `kind`.
    pub fn add_errors(&mut self, kind: &str, count: u64) {
        if count > 0 {
            *self.errors.entry(kind.to_string()).or_insert(0) += count;
        }
    }

    /// Merges an error tally.
    pub fn merge_errors(&mut self, errors: &BTreeMap<String, u64>) {
        for (kind, count) in errors {
            self.add_errors(kind, *count);
        }
    }

    /// Looks a metric up by key.
    pub fn get(&self, key: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.key == key)
    }

    /// The report as a text table for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let target = self.target.as_deref().unwrap_or("broker");
        let _ = writeln!(
            out,
            "{} · {} · {} {}",
            self.title, self.scenario, target, self.broker
        );
        if !self.params.is_empty() {
            let params: Vec<String> = self
                .params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(out, "params: {}", params.join(" "));
        }
        let rows: Vec<Vec<String>> = self
            .metrics
            .iter()
            .map(|m| vec![m.label.clone(), format_value(m.value), m.unit.clone()])
            .collect();
        out.push_str(&render_table(&["metric", "value", "unit"], &rows));
        if !self.errors.is_empty() {
            let errors: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(out, "errors: {}", errors.join(", "));
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        if !self.complete {
            let _ = writeln!(
                out,
                "INCOMPLETE: the run stopped before it measured everything"
            );
        }
        out
    }

    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<(), BenchError> {
        let text = serde_json::to_string_pretty(self).map_err(|source| BenchError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        std::fs::write(path, text + "\n").map_err(|source| BenchError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads a report written by [`Report::write_json`].
    pub fn read_json(path: &Path) -> Result<Self, BenchError> {
        let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| BenchError::Json {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Formats a number for a table: integers with thousands separators, small values with up to
/// two decimals.
pub fn format_value(value: f64) -> String {
    if !value.is_finite() {
        return "-".to_string();
    }
    if value.abs() >= 100.0 || value.fract() == 0.0 {
        let rounded = value.round() as i64;
        let digits = rounded.unsigned_abs().to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if rounded < 0 {
            grouped.insert(0, '-');
        }
        grouped
    } else {
        format!("{value:.2}")
    }
}

/// Renders rows under headers, columns padded to their widest cell (counted in characters),
/// the first column left-aligned and the others right-aligned.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cols = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut s = String::new();
        for (i, width) in widths.iter().enumerate() {
            let cell = cells.get(i).map(String::as_str).unwrap_or("");
            let pad = width.saturating_sub(cell.chars().count());
            if i > 0 {
                s.push_str(" | ");
            }
            if i == 0 {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let header_cells: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut out = line(&header_cells);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(&rule).replace(" | ", "-+-"));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_readable() {
        assert_eq!(format_value(212_345.4), "212,345");
        assert_eq!(format_value(1000.0), "1,000");
        assert_eq!(format_value(999.0), "999");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(12.345), "12.35");
        assert_eq!(format_value(-1234.0), "-1,234");
        assert_eq!(format_value(f64::NAN), "-");
    }

    #[test]
    fn table_aligns_columns_by_characters() {
        let rows = vec![
            vec!["1→1".to_string(), "5".to_string()],
            vec!["fan-out".to_string(), "1,000".to_string()],
        ];
        let table = render_table(&["case", "n"], &rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "case    |     n");
        assert_eq!(lines[1], "--------+------");
        assert_eq!(lines[2], "1→1     |     5");
        assert_eq!(lines[3], "fan-out | 1,000");
    }

    #[test]
    fn json_round_trips() -> Result<(), Box<dyn std::error::Error>> {
        let mut r = Report::new("latency", "t".into(), "mqtt://127.0.0.1:1".into());
        r.param("rate", 1000);
        r.headline("p99_us", "p99", 12.5, "µs", Better::Lower);
        r.add_errors("closed", 2);
        r.add_errors("closed", 1);
        r.add_errors("none", 0);
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("r.json");
        r.write_json(&path)?;
        let back = Report::read_json(&path)?;
        assert_eq!(back, r);
        assert_eq!(back.errors.get("closed"), Some(&3));
        assert!(!back.errors.contains_key("none"));
        assert!(back.get("p99_us").is_some_and(|m| m.headline));
        Ok(())
    }
}
