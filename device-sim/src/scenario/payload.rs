//! Checks telemetry payload models and command replies, and converts TOML values to JSON.

use std::ops::Range;

use serde_json::{Map, Value};
use toml::Spanned;

use super::Reply;
use super::model::{Constant, Model};
use super::raw::{RawModel, RawPayload};
use super::template::{Scope, Template};
use super::validate::Checker;
use crate::stamp::PAYLOAD_KEY;

/// The model names, for messages.
const MODELS: &str = "constant, counter, sine, random_walk, choice, json";

/// Checks one payload (a bare constant or a model table). `stamp` says whether the stream's
/// JSON objects get the stamp member, whose name is then reserved.
pub(super) fn model(c: &mut Checker<'_>, p: Spanned<RawPayload>, stamp: bool) -> Option<Model> {
    let span = p.span();
    match p.into_inner() {
        RawPayload::Constant(v) => constant(c, v, &span).map(Model::Constant),
        RawPayload::Model(m) => table(c, *m, &span, stamp),
    }
}

fn table(c: &mut Checker<'_>, m: RawModel, span: &Range<usize>, stamp: bool) -> Option<Model> {
    let name = m.model.get_ref().as_str();
    let allowed: &[&str] = match name {
        "constant" => &["value"],
        "counter" => &["start", "step"],
        "sine" => &["period", "amplitude", "offset", "noise", "decimals"],
        "random_walk" => &["start", "step", "min", "max", "decimals"],
        "choice" => &["values", "weights"],
        "json" => &["fields"],
        other => {
            let msg = format!("unknown model `{other}`; use one of {MODELS}");
            c.error(m.model.span(), msg);
            return None;
        }
    };
    let given = [
        ("value", m.value.is_some()),
        ("start", m.start.is_some()),
        ("step", m.step.is_some()),
        ("min", m.min.is_some()),
        ("max", m.max.is_some()),
        ("period", m.period.is_some()),
        ("amplitude", m.amplitude.is_some()),
        ("offset", m.offset.is_some()),
        ("noise", m.noise.is_some()),
        ("decimals", m.decimals.is_some()),
        ("values", m.values.is_some()),
        ("weights", m.weights.is_some()),
        ("fields", m.fields.is_some()),
    ];
    for (field, set) in given {
        if set && !allowed.contains(&field) {
            let msg = format!(
                "`{field}` does not apply to model `{name}`, which takes {}",
                allowed.join(", ")
            );
            c.error(span.clone(), msg);
        }
    }
    let missing = |c: &mut Checker<'_>, field: &str| {
        c.error(m.model.span(), format!("model `{name}` needs `{field}`"));
    };
    let decimals = m.decimals.as_ref().map(|d| {
        if *d.get_ref() > 15 {
            c.error(d.span(), "decimals is at most 15");
        }
        *d.get_ref()
    });
    match name {
        "constant" => match m.value {
            Some(v) => constant(c, v, span).map(Model::Constant),
            None => {
                missing(c, "value");
                None
            }
        },
        "counter" => {
            let mut int = |v: &Option<Spanned<f64>>, default: i64| match v {
                Some(x) if x.get_ref().fract() != 0.0 || x.get_ref().abs() > 9.0e15 => {
                    c.error(x.span(), "a counter counts in whole numbers");
                    default
                }
                Some(x) => *x.get_ref() as i64,
                None => default,
            };
            let start = int(&m.start, 0);
            let step = int(&m.step, 1);
            Some(Model::Counter { start, step })
        }
        "sine" => {
            let Some(period) = &m.period else {
                missing(c, "period");
                return None;
            };
            if period.get_ref().0.is_zero() {
                c.error(period.span(), "period must be above zero");
            }
            let noise = m.noise.as_ref().map_or(0.0, |n| {
                if *n.get_ref() < 0.0 {
                    c.error(n.span(), "noise cannot be negative");
                }
                *n.get_ref()
            });
            Some(Model::Sine {
                period: period.get_ref().0,
                amplitude: m.amplitude.unwrap_or(1.0),
                offset: m.offset.unwrap_or(0.0),
                noise,
                decimals,
            })
        }
        "random_walk" => {
            let (Some(start), Some(step)) = (&m.start, &m.step) else {
                missing(c, "start` and `step");
                return None;
            };
            let min = m.min.as_ref().map_or(f64::MIN, |v| *v.get_ref());
            let max = m.max.as_ref().map_or(f64::MAX, |v| *v.get_ref());
            if *step.get_ref() < 0.0 {
                c.error(step.span(), "step cannot be negative");
            }
            if !(min..=max).contains(start.get_ref()) {
                c.error(
                    start.span(),
                    format!("start must lie within min..=max ({min}..={max})"),
                );
            }
            Some(Model::RandomWalk {
                start: *start.get_ref(),
                step: *step.get_ref(),
                min,
                max,
                decimals,
            })
        }
        "choice" => choice(c, &m, span),
        _ => json(c, m, span, stamp),
    }
}

fn choice(c: &mut Checker<'_>, m: &RawModel, span: &Range<usize>) -> Option<Model> {
    let Some(values) = &m.values else {
        c.error(span.clone(), "model `choice` needs `values`");
        return None;
    };
    if values.get_ref().is_empty() {
        c.error(values.span(), "values cannot be empty");
        return None;
    }
    let consts: Option<Vec<Constant>> = values
        .get_ref()
        .iter()
        .map(|v| constant(c, v.clone(), &values.span()))
        .collect();
    let mut cumulative = Vec::new();
    if let Some(w) = &m.weights {
        if w.get_ref().len() != values.get_ref().len() {
            let msg = format!(
                "{} weights for {} values; give one weight per value",
                w.get_ref().len(),
                values.get_ref().len()
            );
            c.error(w.span(), msg);
        } else if w.get_ref().iter().any(|x| !x.is_finite() || *x < 0.0)
            || w.get_ref().iter().sum::<f64>() <= 0.0
        {
            c.error(w.span(), "weights are >= 0 and at least one is above 0");
        }
        let mut sum = 0.0;
        for x in w.get_ref() {
            sum += x;
            cumulative.push(sum);
        }
    }
    Some(Model::Choice {
        values: consts?,
        cumulative,
    })
}

fn json(c: &mut Checker<'_>, m: RawModel, span: &Range<usize>, stamp: bool) -> Option<Model> {
    let Some(fields) = m.fields else {
        c.error(
            span.clone(),
            "model `json` needs `fields`, a table of field = model",
        );
        return None;
    };
    if fields.is_empty() {
        c.error(span.clone(), "fields cannot be empty");
    }
    let mut out = Vec::with_capacity(fields.len());
    let mut ok = true;
    for (name, value) in fields {
        if stamp && name == PAYLOAD_KEY {
            let msg =
                format!("field `{name}` is where the stamp goes; rename it or set stamp = false");
            c.error(value.span(), msg);
        }
        // Nested objects never get a stamp, so their names are free.
        match model(c, value, false) {
            Some(m) => out.push((name, m)),
            None => ok = false,
        }
    }
    ok.then_some(Model::Json(out))
}

/// A constant: strings are templates (`{class}`, `{id}`, `{n}`); anything else is JSON.
fn constant(c: &mut Checker<'_>, v: toml::Value, span: &Range<usize>) -> Option<Constant> {
    match v {
        toml::Value::String(s) => match Template::parse(&s, Scope::Device) {
            Ok(t) => Some(Constant::Text(t)),
            Err(e) => {
                c.error(span.clone(), e);
                None
            }
        },
        other => Some(Constant::Value(to_json(other))),
    }
}

/// A command reply: a string template, or a table/array whose strings are templates.
pub(super) fn reply(c: &mut Checker<'_>, v: Spanned<toml::Value>) -> Option<Reply> {
    let span = v.span();
    reply_value(c, v.into_inner(), &span)
}

fn reply_value(c: &mut Checker<'_>, v: toml::Value, span: &Range<usize>) -> Option<Reply> {
    Some(match v {
        toml::Value::String(s) => match Template::parse(&s, Scope::Reply) {
            Ok(t) => Reply::Text(t),
            Err(e) => {
                c.error(span.clone(), e);
                return None;
            }
        },
        toml::Value::Table(t) => Reply::Object(
            t.into_iter()
                .map(|(k, v)| reply_value(c, v, span).map(|r| (k, r)))
                .collect::<Option<_>>()?,
        ),
        toml::Value::Array(items) => Reply::Array(
            items
                .into_iter()
                .map(|v| reply_value(c, v, span))
                .collect::<Option<_>>()?,
        ),
        other => Reply::Value(to_json(other)),
    })
}

/// A TOML value as JSON (datetimes become strings; non-finite floats become `null`).
pub(super) fn to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => Value::from(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.into_iter()
                .map(|(k, v)| (k, to_json(v)))
                .collect::<Map<_, _>>(),
        ),
    }
}
