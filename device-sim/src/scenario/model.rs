//! Payload models of telemetry streams: what value each message carries. A model is
//! immutable and shared by every device of a class; each device keeps a small
//! [`ModelState`] per stream (a counter's next value, a random walk's position) and its own
//! random generator, so a seeded run is reproducible.
//!
//! Rendering: a JSON object becomes JSON bytes (with the [`Stamp`] inserted when asked); a
//! string is sent as its raw UTF-8 text; any other value as its JSON text (`21.5`, `true`).

use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use serde_json::{Map, Value};

use super::template::{Template, Vars};
use crate::stamp::Stamp;

/// How one value is made.
#[derive(Debug, Clone, PartialEq)]
pub enum Model {
    /// The same value every time.
    Constant(Constant),
    /// `start`, `start + step`, `start + 2 step`, ... (integers; saturates at the limits).
    Counter {
        /// First value.
        start: i64,
        /// Added per message.
        step: i64,
    },
    /// `offset + amplitude * sin(2π t / period)` with `t` the time since the run started,
    /// plus uniform noise in `±noise`.
    Sine {
        /// One full wave.
        period: Duration,
        /// Peak deviation from `offset`.
        amplitude: f64,
        /// Centre value.
        offset: f64,
        /// Uniform noise added on top (0 for none).
        noise: f64,
        /// Decimal places kept (`None`: full precision).
        decimals: Option<u32>,
    },
    /// Starts at `start`; each message moves by a uniform step in `±step`, kept in
    /// `min..=max`.
    RandomWalk {
        /// First value.
        start: f64,
        /// Largest move per message.
        step: f64,
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
        /// Decimal places kept (`None`: full precision).
        decimals: Option<u32>,
    },
    /// One of `values`, uniformly or by weight.
    Choice {
        /// The candidates.
        values: Vec<Constant>,
        /// Running sums of the weights (same length as `values`); empty for uniform.
        cumulative: Vec<f64>,
    },
    /// A JSON object whose members are models.
    Json(Vec<(String, Model)>),
}

/// A fixed value: a string template (expanded per device) or any other JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Constant {
    /// A string; may use `{class}`, `{id}`, `{n}`.
    Text(Template),
    /// A number, boolean, array or object, as written.
    Value(Value),
}

/// Per device and stream: where a stateful model stands.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelState {
    /// The model keeps no state.
    Stateless,
    /// A counter's next value.
    Counter(i64),
    /// A random walk's next value.
    Walk(f64),
    /// The states of a JSON object's members, in order.
    Fields(Vec<ModelState>),
}

impl Constant {
    fn value(&self, vars: &Vars<'_>) -> Value {
        match self {
            Constant::Text(t) => Value::String(t.expand(vars)),
            Constant::Value(v) => v.clone(),
        }
    }
}

impl Model {
    /// The state a device starts with.
    pub fn initial_state(&self) -> ModelState {
        match self {
            Model::Counter { start, .. } => ModelState::Counter(*start),
            Model::RandomWalk { start, .. } => ModelState::Walk(*start),
            Model::Json(fields) => {
                ModelState::Fields(fields.iter().map(|(_, m)| m.initial_state()).collect())
            }
            _ => ModelState::Stateless,
        }
    }

    /// The next value. `elapsed` is the time since the run started.
    pub fn next(
        &self,
        state: &mut ModelState,
        elapsed: Duration,
        vars: &Vars<'_>,
        rng: &mut impl Rng,
    ) -> Value {
        match (self, state) {
            (Model::Constant(c), _) => c.value(vars),
            (Model::Counter { step, .. }, ModelState::Counter(next)) => {
                let value = *next;
                *next = next.saturating_add(*step);
                Value::from(value)
            }
            (
                Model::Sine {
                    period,
                    amplitude,
                    offset,
                    noise,
                    decimals,
                },
                _,
            ) => {
                let phase = elapsed.as_secs_f64() / period.as_secs_f64().max(1e-9);
                let mut v = offset + amplitude * (std::f64::consts::TAU * phase).sin();
                if *noise > 0.0 {
                    v += rng.random_range(-noise..=*noise);
                }
                number(v, *decimals)
            }
            (
                Model::RandomWalk {
                    step,
                    min,
                    max,
                    decimals,
                    ..
                },
                ModelState::Walk(next),
            ) => {
                let value = *next;
                let delta = if *step > 0.0 {
                    rng.random_range(-step..=*step)
                } else {
                    0.0
                };
                *next = (value + delta).clamp(*min, *max);
                number(value, *decimals)
            }
            (Model::Choice { values, cumulative }, _) => {
                let i = if cumulative.is_empty() {
                    rng.random_range(0..values.len().max(1))
                } else {
                    let total = cumulative.last().copied().unwrap_or(0.0);
                    let x = rng.random_range(0.0..total.max(f64::MIN_POSITIVE));
                    cumulative.partition_point(|c| *c <= x)
                };
                values.get(i).map_or(Value::Null, |c| c.value(vars))
            }
            (Model::Json(fields), ModelState::Fields(states)) => {
                let mut object = Map::with_capacity(fields.len() + 1);
                for ((name, model), state) in fields.iter().zip(states.iter_mut()) {
                    object.insert(name.clone(), model.next(state, elapsed, vars, rng));
                }
                Value::Object(object)
            }
            // A state that does not belong to the model (cannot happen when it came from
            // `initial_state`): start the model afresh.
            (model, state) => {
                *state = model.initial_state();
                model.next(state, elapsed, vars, rng)
            }
        }
    }
}

/// A JSON number rounded to `decimals` places (non-finite values become `null`).
fn number(v: f64, decimals: Option<u32>) -> Value {
    let v = match decimals {
        Some(d) => {
            let scale = 10f64.powi(i32::try_from(d.min(15)).unwrap_or(15));
            (v * scale).round() / scale
        }
        None => v,
    };
    Value::from(v)
}

/// The payload bytes of `value`; `stamp` goes into JSON objects.
pub fn render(value: Value, stamp: Option<&Stamp>) -> Bytes {
    match value {
        Value::Object(mut object) => {
            if let Some(stamp) = stamp {
                stamp.insert_into(&mut object);
            }
            Bytes::from(Value::Object(object).to_string())
        }
        Value::String(s) => Bytes::from(s),
        other => Bytes::from(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::template::Scope;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    const VARS: Vars<'static> = Vars {
        class: "press",
        id: "press-2",
        n: 2,
        command: None,
    };

    fn run(model: &Model, count: usize, seed: u64) -> Vec<Value> {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut state = model.initial_state();
        (0..count)
            .map(|i| model.next(&mut state, Duration::from_secs(i as u64), &VARS, &mut rng))
            .collect()
    }

    #[test]
    fn constant_and_counter() {
        let text = Model::Constant(Constant::Text(
            Template::parse("{id} ok", Scope::Device).unwrap_or_else(|e| panic!("{e}")),
        ));
        assert_eq!(run(&text, 2, 1), vec![Value::from("press-2 ok"); 2]);
        let counter = Model::Counter { start: 10, step: 5 };
        assert_eq!(
            run(&counter, 3, 1),
            vec![Value::from(10), Value::from(15), Value::from(20)]
        );
        let top = Model::Counter {
            start: i64::MAX - 1,
            step: 5,
        };
        assert_eq!(run(&top, 3, 1)[2], Value::from(i64::MAX));
    }

    #[test]
    fn sine_follows_the_wave() {
        let sine = Model::Sine {
            period: Duration::from_secs(4),
            amplitude: 10.0,
            offset: 20.0,
            noise: 0.0,
            decimals: Some(3),
        };
        // t = 0, 1, 2, 3 s: a quarter period each.
        let got = run(&sine, 4, 1);
        assert_eq!(
            got,
            vec![
                Value::from(20.0),
                Value::from(30.0),
                Value::from(20.0),
                Value::from(10.0)
            ]
        );
        let noisy = Model::Sine {
            period: Duration::from_secs(4),
            amplitude: 10.0,
            offset: 20.0,
            noise: 0.5,
            decimals: None,
        };
        for (i, v) in run(&noisy, 50, 3).iter().enumerate() {
            let v = v.as_f64().unwrap_or(f64::NAN);
            let clean = 20.0 + 10.0 * (std::f64::consts::TAU * i as f64 / 4.0).sin();
            assert!((v - clean).abs() <= 0.5, "{v} vs {clean}");
        }
    }

    #[test]
    fn random_walk_stays_in_bounds_and_is_reproducible() {
        let walk = Model::RandomWalk {
            start: 1.0,
            step: 0.4,
            min: 0.0,
            max: 2.0,
            decimals: None,
        };
        let a = run(&walk, 500, 7);
        assert_eq!(a, run(&walk, 500, 7), "same seed, same values");
        assert_ne!(a, run(&walk, 500, 8), "another seed, other values");
        assert_eq!(a[0], Value::from(1.0));
        let mut prev = 1.0;
        for v in &a {
            let v = v.as_f64().unwrap_or(f64::NAN);
            assert!((0.0..=2.0).contains(&v), "{v}");
            assert!((v - prev).abs() <= 0.4 + 1e-9, "{prev} -> {v}");
            prev = v;
        }
    }

    #[test]
    fn weighted_choice_follows_the_weights() {
        let choice = Model::Choice {
            values: vec![
                Constant::Value(Value::from("run")),
                Constant::Value(Value::from("idle")),
                Constant::Value(Value::from("never")),
            ],
            cumulative: vec![9.0, 10.0, 10.0],
        };
        let got = run(&choice, 2000, 11);
        let runs = got.iter().filter(|v| *v == "run").count();
        assert!(
            got.iter().all(|v| *v != "never"),
            "a zero weight is never chosen"
        );
        assert!(
            (1650..=1950).contains(&runs),
            "{runs} of 2000 should be about 90 %"
        );
        let uniform = Model::Choice {
            values: vec![
                Constant::Value(Value::from(1)),
                Constant::Value(Value::from(2)),
            ],
            cumulative: vec![],
        };
        let ones = run(&uniform, 1000, 5).iter().filter(|v| **v == 1).count();
        assert!((400..=600).contains(&ones), "{ones}");
    }

    #[test]
    fn json_objects_mix_models_and_carry_the_stamp() {
        let json = Model::Json(vec![
            ("count".into(), Model::Counter { start: 1, step: 1 }),
            (
                "unit".into(),
                Model::Constant(Constant::Value(Value::from("C"))),
            ),
        ]);
        let got = run(&json, 2, 1);
        assert_eq!(got[1], serde_json::json!({"count": 2, "unit": "C"}));
        let stamp = Stamp {
            device: "press-2".into(),
            seq: 5,
            sent_at_us: 1,
        };
        let bytes = render(got[1].clone(), Some(&stamp));
        assert_eq!(Stamp::from_payload(&bytes), Some(stamp.clone()));
        assert_eq!(render(Value::from("on"), Some(&stamp)), Bytes::from("on"));
        assert_eq!(render(Value::from(21.5), None), Bytes::from("21.5"));
    }
}
