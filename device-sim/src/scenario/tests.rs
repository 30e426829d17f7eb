//! Scenario loading: the shipped examples load, and each kind of mistake is reported with
//! the file, the line and the field at fault.

use std::path::Path;

use super::*;

fn problems(text: &str) -> Vec<String> {
    match parse(text, Path::new("some/dir/f.toml")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.problems().iter().map(ToString::to_string).collect(),
    }
}

/// The single problem of `text`, which must start with `prefix`.
fn one_problem(text: &str, prefix: &str) -> String {
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with(prefix),
        "expected `{prefix}...`, got `{}`",
        p[0]
    );
    p[0].clone()
}

const GOOD_CLASS: &str = "[[classes]]\nname = \"a\"\ncount = 2\n";

fn with_stream(stream: &str) -> String {
    format!("{GOOD_CLASS}[[classes]]\nname = \"b\"\ncount = 1\n[[classes.telemetry]]\n{stream}")
}

#[test]
fn shipped_scenarios_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.extension().is_some_and(|x| x == "toml") {
            if let Err(e) = load(&path) {
                panic!("{}:\n{e}", path.display());
            }
            seen += 1;
        }
    }
    assert!(seen >= 3, "only {seen} scenarios in {}", dir.display());
    let factory = load(&dir.join("factory.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(factory.devices(), 16);
    assert_eq!(factory.seed, Some(2024));
    let flaky = load(&dir.join("flaky-network.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(flaky.proxy.as_ref().is_some_and(|p| p.loss == 0.01));
}

#[test]
fn defaults_are_filled_in() {
    let s = parse(GOOD_CLASS, Path::new("x/min.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.name, "min");
    assert_eq!(s.duration, Duration::from_secs(60));
    assert!(s.broker.is_none());
    let c = &s.classes[0];
    assert_eq!(c.protocol, Protocol::V311);
    let vars = Vars {
        class: "a",
        id: "",
        n: 2,
        command: None,
    };
    assert_eq!(c.client_id.expand(&vars), "a-2");
    assert!(c.clean_session);
}

#[test]
fn a_bad_duration_names_file_line_and_field() {
    let text = with_stream("topic = \"t/{id}\"\ninterval = \"5x\"\npayload = 1\n");
    one_problem(
        &text,
        "f.toml:9: classes[1].telemetry[0].interval: \"5x\" is not a duration",
    );
    let text = with_stream("topic = \"t\"\ninterval = \"-1s\"\npayload = 1\n");
    one_problem(
        &text,
        "f.toml:9: classes[1].telemetry[0].interval: \"-1s\" is negative",
    );
    let text = with_stream("topic = \"t\"\ninterval = -2\npayload = 1\n");
    one_problem(
        &text,
        "f.toml:9: classes[1].telemetry[0].interval: -2 is negative",
    );
    let text = with_stream("topic = \"t\"\ninterval = \"0s\"\npayload = 1\n");
    one_problem(
        &text,
        "f.toml:9: classes[1].telemetry[0].interval: interval must be above zero",
    );
}

#[test]
fn unknown_fields_are_refused() {
    let text = with_stream("topic = \"t\"\nintervall = \"1s\"\npayload = 1\n");
    let p = one_problem(
        &text,
        "f.toml:9: classes[1].telemetry[0].intervall: unknown field",
    );
    assert!(p.contains("`interval`"), "{p}");
    one_problem("colour = 1\n", "f.toml:1: colour: unknown field `colour`");
}

#[test]
fn semantic_mistakes_point_at_the_field() {
    let text = with_stream(
        "topic = \"t\"\ninterval = \"1s\"\npayload = { model = \"sinus\", period = \"1s\" }\n",
    );
    one_problem(
        &text,
        "f.toml:10: classes[1].telemetry[0].payload.model: unknown model `sinus`",
    );
    one_problem(
        "[[classes]]\nname = \"a\"\ncount = 0\n",
        "f.toml:3: classes[0].count: count must be between 1 and",
    );
    let text = with_stream("topic = \"t/{foo}\"\ninterval = \"1s\"\npayload = 1\n");
    one_problem(
        &text,
        "f.toml:8: classes[1].telemetry[0].topic: unknown placeholder `{foo}`",
    );
    let text = with_stream("topic = \"t\"\ninterval = \"1s\"\nqos = 3\npayload = 1\n");
    one_problem(
        &text,
        "f.toml:10: classes[1].telemetry[0].qos: 3 is not a QoS level",
    );
    let text = with_stream(
        "topic = \"t\"\ninterval = \"1s\"\n[classes.telemetry.payload]\nmodel = \"json\"\n\
         [classes.telemetry.payload.fields]\nok = 1\nbad = { model = \"random_walk\", start = 5.0, step = 1.0, max = 2.0 }\n",
    );
    one_problem(
        &text,
        "f.toml:14: classes[1].telemetry[0].payload.fields.bad.start: start must lie",
    );
    one_problem(
        "[[classes]]\nname = \"a\"\ncount = 1\nprotocol = 6\n",
        "f.toml:4: classes[0].protocol: 6 is not an MQTT protocol level",
    );
    one_problem(
        "[[classes]]\nname = \"a\"\ncount = 1\nprotocol = \"5\"\nkeep_alive = \"2s\"\n",
        "f.toml:5: classes[0].keep_alive: keep_alive must be at least 5s",
    );
    one_problem(
        "broker = \"http://h\"\n[[classes]]\nname = \"a\"\ncount = 1\n",
        "f.toml:1: broker: `http://` is not a broker scheme",
    );
}

#[test]
fn several_problems_are_listed_together() {
    let text = "[[classes]]\nname = \"a\"\ncount = 0\nclient_id = \"x-{m}\"\n\
                [[classes.commands]]\ntopic = \"cmd/#/x\"\nreply_topic = \"r/{cmd.id}\"\n";
    let p = problems(text);
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(p[0].starts_with("f.toml:3: classes[0].count"), "{p:#?}");
    assert!(p[1].starts_with("f.toml:4: classes[0].client_id: unknown placeholder `{m}`"));
    assert!(p[2].starts_with("f.toml:6: classes[0].commands[0].topic: `cmd/#/x` is not a valid"));
}

#[test]
fn missing_things_are_named() {
    one_problem("name = \"x\"\n", "f.toml:1: no device classes");
    let p = one_problem(
        "[[classes]]\nname = \"a\"\n",
        "f.toml:1: classes[0]: missing field `count`",
    );
    assert!(p.contains("count"), "{p}");
    let text = with_stream("topic = \"t\"\ninterval = \"1s\"\npayload = { model = \"sine\" }\n");
    one_problem(
        &text,
        "f.toml:10: classes[1].telemetry[0].payload.model: model `sine` needs `period`",
    );
}

#[test]
fn client_ids_must_be_unique() {
    let p = problems(
        "[[classes]]\nname = \"a\"\ncount = 2\nclient_id = \"dev-{n}\"\n\
         [[classes]]\nname = \"b\"\ncount = 2\nclient_id = \"dev-{n}\"\n",
    );
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].contains("client id `dev-1` is also used by class `a`"),
        "{p:#?}"
    );
    assert!(p[0].starts_with("f.toml:5: classes[1]"), "{p:#?}");
    let p = problems("[[classes]]\nname = \"a\"\ncount = 2\nclient_id = \"same\"\n");
    assert!(p[0].contains("add `{n}`"), "{p:#?}");
}

#[test]
fn syntax_errors_give_the_line() {
    let p = one_problem("[[classes]\nname = 1\n", "f.toml:1: ");
    assert!(!p.contains("classes[0]"), "{p}");
}

#[test]
fn unreadable_files_say_so() {
    let err = load(Path::new("/nonexistent/s.toml"))
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("cannot read scenario /nonexistent/s.toml")));
}
