//! `bench compare`: one side-by-side table of two result sets (directories of JSON reports
//! written with `--json`, matched by file name), with the ratio first / second for each
//! headline metric.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use super::BenchError;
use super::report::{Better, Report, format_value, render_table};

/// Options of `bench compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// A result set as NAME=DIR (a directory of JSON reports). Give it twice; ratios are the
    /// first set divided by the second.
    #[arg(long = "input", value_name = "NAME=DIR", value_parser = parse_input, required = true)]
    pub inputs: Vec<(String, PathBuf)>,

    /// Also write the comparison as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

fn parse_input(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((name, dir)) if !name.is_empty() && !dir.is_empty() => {
            Ok((name.to_string(), PathBuf::from(dir)))
        }
        _ => Err(format!(
            "`{text}`: write NAME=DIR, e.g. gateway=results/gateway"
        )),
    }
}

/// One row of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Case title.
    pub case: String,
    /// Report file name the case came from.
    pub file: String,
    /// Metric key.
    pub metric: String,
    /// Metric label with its unit.
    pub label: String,
    /// Which direction is good.
    pub better: Better,
    /// Value per input (None: no report, or the report lacks the metric).
    pub values: Vec<Option<f64>>,
    /// Whether each input's run was complete.
    pub complete: Vec<bool>,
    /// first / second, when both exist and the second is not zero.
    pub ratio: Option<f64>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Input names, in column order.
    pub inputs: Vec<String>,
    /// Rows, in case order.
    pub rows: Vec<Row>,
}

/// Runs `bench compare`: prints the table, writes the JSON.
pub fn run(args: &CompareArgs) -> Result<(), BenchError> {
    if args.inputs.len() != 2 {
        return Err(BenchError::InvalidArgs(
            "give --input exactly twice (NAME=DIR)".into(),
        ));
    }
    let cmp = compare(&args.inputs)?;
    print!("{}", render(&cmp));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&cmp).map_err(|source| BenchError::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(path, text + "\n").map_err(|source| BenchError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Reads both result sets and builds the rows.
pub fn compare(inputs: &[(String, PathBuf)]) -> Result<Comparison, BenchError> {
    let mut files = BTreeSet::new();
    for (_, dir) in inputs {
        files.extend(json_files(dir)?);
    }
    let mut rows = Vec::new();
    for file in files {
        let reports: Vec<Option<Report>> = inputs
            .iter()
            .map(|(_, dir)| {
                let path = dir.join(&file);
                path.exists().then(|| Report::read_json(&path)).transpose()
            })
            .collect::<Result<_, _>>()?;
        let Some(first) = reports.iter().flatten().next() else {
            continue;
        };
        let case = first.title.clone();
        let mut keys: Vec<(String, String, Better)> = Vec::new();
        for r in reports.iter().flatten() {
            for m in r.metrics.iter().filter(|m| m.headline) {
                if !keys.iter().any(|(k, _, _)| *k == m.key) {
                    keys.push((m.key.clone(), format!("{}, {}", m.label, m.unit), m.better));
                }
            }
        }
        if keys.is_empty() {
            keys.push(("-".into(), "no result".into(), Better::None));
        }
        for (key, label, better) in keys {
            let values: Vec<Option<f64>> = reports
                .iter()
                .map(|r| r.as_ref().and_then(|r| r.get(&key)).map(|m| m.value))
                .collect();
            let complete = reports
                .iter()
                .map(|r| r.as_ref().is_some_and(|r| r.complete))
                .collect();
            let ratio = match (
                values.first().copied().flatten(),
                values.get(1).copied().flatten(),
            ) {
                (Some(a), Some(b)) if b != 0.0 => Some(a / b),
                _ => None,
            };
            rows.push(Row {
                case: case.clone(),
                file: file.clone(),
                metric: key,
                label,
                better,
                values,
                complete,
                ratio,
            });
        }
    }
    Ok(Comparison {
        inputs: inputs.iter().map(|(n, _)| n.clone()).collect(),
        rows,
    })
}

/// The comparison as a text table.
pub fn render(cmp: &Comparison) -> String {
    let mut headers = vec!["scenario"];
    headers.extend(cmp.inputs.iter().map(String::as_str));
    headers.push("ratio");
    let mut any_incomplete = false;
    let rows: Vec<Vec<String>> = cmp
        .rows
        .iter()
        .map(|row| {
            let mut cells = vec![format!("{}: {}", row.case, row.label)];
            for (v, complete) in row.values.iter().zip(&row.complete) {
                cells.push(match v {
                    None => "failed".to_string(),
                    Some(v) if *complete => format_value(*v),
                    Some(v) => {
                        any_incomplete = true;
                        format!("{}*", format_value(*v))
                    }
                });
            }
            cells.push(match (row.ratio, &row.values[..]) {
                (Some(r), _) => format!("{r:.2}×"),
                (None, [Some(a), Some(b)]) if *a == 0.0 && *b == 0.0 => "=".into(),
                _ => "-".into(),
            });
            cells
        })
        .collect();
    let mut out = render_table(&headers, &rows);
    if let [a, b] = &cmp.inputs[..] {
        out.push_str(&format!(
            "ratio = {a} / {b}; for latency (µs), memory (B), loss and failures lower is better\n"
        ));
    }
    if any_incomplete {
        out.push_str(
            "* the run was incomplete (timeout, loss of set-up, or errors): see its report\n",
        );
    }
    out
}

/// Names of the `.json` files in a directory; a missing directory holds none.
fn json_files(dir: &Path) -> Result<Vec<String>, BenchError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(BenchError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut names = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            names.push(name);
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(title: &str, rate: f64, complete: bool) -> Report {
        let mut r = Report::new("throughput", title.into(), "mqtt://127.0.0.1:1".into());
        r.headline(
            "delivered_per_sec",
            "delivered",
            rate,
            "msg/s",
            Better::Higher,
        );
        r.headline("loss", "lost", 0.0, "msg", Better::Lower);
        r.metric("sent", "sent", 5.0, "msg", Better::None);
        r.complete = complete;
        r
    }

    #[test]
    fn side_by_side_with_ratios() -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        std::fs::create_dir_all(&a)?;
        std::fs::create_dir_all(&b)?;
        report("1→1", 300.0, true).write_json(&a.join("01.json"))?;
        report("1→1", 100.0, true).write_json(&b.join("01.json"))?;
        report("fan-out", 50.0, false).write_json(&b.join("02.json"))?;
        let inputs = vec![("gw".to_string(), a), ("mq".to_string(), b)];
        let cmp = compare(&inputs)?;
        assert_eq!(cmp.rows.len(), 4, "{cmp:?}");
        assert_eq!(cmp.rows[0].ratio, Some(3.0));
        assert_eq!(cmp.rows[1].ratio, None);
        assert_eq!(cmp.rows[2].values, vec![None, Some(50.0)]);
        let table = render(&cmp);
        assert!(table.contains("3.00×"), "{table}");
        assert!(table.contains("failed"), "{table}");
        assert!(table.contains("50*"), "{table}");
        assert!(
            !table.contains("sent"),
            "non-headline metric shown:\n{table}"
        );
        Ok(())
    }

    #[test]
    fn input_syntax() {
        assert!(parse_input("gateway=out/gw").is_ok());
        assert!(parse_input("gateway").is_err());
        assert!(parse_input("=dir").is_err());
    }
}
