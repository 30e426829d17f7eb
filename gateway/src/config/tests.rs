//! Tests for loading and validating the configuration.

use super::*;
use std::time::Duration;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("test.toml"))
}

fn invalid_field(config: &Config) -> String {
    match config.validate() {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => format!("expected an Invalid error, got {other:?}"),
    }
}

#[test]
fn example_file_is_exactly_the_defaults() {
    let parsed = parse(EXAMPLE_CONFIG).expect("config.example.toml parses");
    assert_eq!(parsed, Config::default());
    assert!(Config::default().validate().is_ok());
}

#[test]
fn documented_defaults() {
    let c = Config::default();
    assert_eq!(c.data.dir, PathBuf::from("./data"));
    assert_eq!(c.mqtt.listen, "127.0.0.1:1883");
    assert_eq!(c.http.listen, "127.0.0.1:8080");
    assert_eq!(c.admin.listen, "127.0.0.1:9090");
    assert_eq!(c.mqtt.connect_timeout, Duration::from_secs(10));
    assert_eq!(c.mqtt.max_packet_size, 1_048_576);
    assert_eq!(c.log.max_batch, 4096);
    assert_eq!(c.history.max_messages, 10_000);
    assert_eq!(c.history.max_age, Some(Duration::from_secs(7 * 86_400)));
    assert!(c.history.store_qos0);
    assert!(c.namespace.is_empty());
}

#[test]
fn example_namespaces_parse_once_uncommented() {
    let start = EXAMPLE_CONFIG
        .find("# [[namespace]]")
        .expect("the example shows a namespace");
    let uncommented: String = EXAMPLE_CONFIG[start..]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    let c = parse(&uncommented).expect("the commented example parses");
    c.validate().expect("the commented example is valid");
    assert_eq!(c.namespace.len(), 2);
    let rules = c.namespace_rules();
    let telemetry = rules.policy_for("plant1/line3/temp");
    assert_eq!(telemetry.max_messages, 100_000);
    assert_eq!(telemetry.max_age, Some(Duration::from_secs(30 * 86_400)));
    let commands = rules.policy_for("cmd/valve/open");
    assert_eq!(commands.max_age, None);
    assert!(!commands.store_qos0);
    assert_eq!(rules.policy_for("other"), &HistoryPolicy::default());
}

#[test]
fn namespace_inherits_unset_history_settings() {
    let c = parse(
        "[history]\nmax_messages = 7\nmax_age = \"none\"\nstore_qos0 = false\n\
         [[namespace]]\nname = \"a\"\nfilter = \"a/#\"\nmax_age = \"1h\"\n",
    )
    .expect("parses");
    let p = c.namespace_rules().policy_for("a/b").clone();
    assert_eq!(p.max_messages, 7);
    assert_eq!(p.max_age, Some(Duration::from_secs(3600)));
    assert!(!p.store_qos0);
    assert_eq!(c.namespace_rules().policy_for("b").max_age, None);
}

#[test]
fn env_overrides_apply_over_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("gw.toml");
    std::fs::write(
        &file,
        "[mqtt]\nlisten = \"127.0.0.1:1999\"\nmax_inflight = 10\n",
    )
    .expect("write config");
    let c = Config::load(
        Some(&file),
        vars(&[
            ("GATEWAY__MQTT__LISTEN", "127.0.0.1:0"),
            ("GATEWAY__HISTORY__MAX_MESSAGES", "5"),
            ("GATEWAY__HISTORY__MAX_AGE", "0"),
            ("GATEWAY__MQTT__CONNECT_TIMEOUT", "30s"),
            ("GATEWAY__HISTORY__STORE_QOS0", "false"),
            ("gateway__not_ours", "ignored"),
            ("PATH", "/usr/bin"),
        ]),
    )
    .expect("loads");
    assert_eq!(c.mqtt.listen, "127.0.0.1:0");
    assert_eq!(
        c.mqtt.max_inflight, 10,
        "file value kept when not overridden"
    );
    assert_eq!(c.history.max_messages, 5);
    assert_eq!(c.history.max_age, None);
    assert_eq!(c.mqtt.connect_timeout, Duration::from_secs(30));
    assert!(!c.history.store_qos0);
}

#[test]
fn env_values_fall_back_to_strings() {
    let c = Config::load(
        None,
        vars(&[
            ("GATEWAY__DATA__DIR", "1234"),
            ("GATEWAY__NAMESPACE", r#"[{ name = "n", filter = "n/#" }]"#),
        ]),
    )
    .expect("loads");
    assert_eq!(c.data.dir, PathBuf::from("1234"));
    assert_eq!(c.namespace.len(), 1);
    assert_eq!(c.namespace[0].filter, "n/#");
}

#[test]
fn env_errors_name_the_variable() {
    for (var, value) in [
        ("GATEWAY__MQTT__LISTN", "127.0.0.1:0"),
        ("GATEWAY__NOPE__KEY", "1"),
        ("GATEWAY__HISTORY__MAX_MESSAGES", "many"),
        ("GATEWAY__MQTT__LISTEN__PORT", "1"),
        ("GATEWAY____X", "1"),
    ] {
        match Config::load(None, vars(&[(var, value)])) {
            Err(ConfigError::Env { var: v, .. }) => assert_eq!(v, var),
            other => panic!("{var}={value}: expected an Env error, got {other:?}"),
        }
    }
}

#[test]
fn file_errors_name_file_and_line() {
    let err = parse("[mqtt]\nlisten = \"127.0.0.1:1\"\nmax_packet_sise = 5\n")
        .expect_err("unknown field");
    let text = err.to_string();
    assert!(text.contains("test.toml"), "{text}");
    assert!(text.contains("line 3"), "{text}");
    assert!(text.contains("max_packet_sise"), "{text}");

    let err = parse("[history]\nmax_age = \"a week\"\n").expect_err("bad duration");
    let text = err.to_string();
    assert!(
        text.contains("line 2") && text.contains("not a duration"),
        "{text}"
    );

    let err = parse("[mqtt]\nmax_inflight = -1\n").expect_err("negative");
    assert!(err.to_string().contains("line 2"), "{err}");

    let err = parse("[unknown]\n").expect_err("unknown section");
    assert!(err.to_string().contains("unknown"), "{err}");

    let err = Config::load(Some(Path::new("no/such/gateway.toml")), Vec::new())
        .expect_err("missing file");
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
}

#[test]
fn validation_names_the_field() {
    let mut c = Config::default();
    c.mqtt.max_packet_size = 10;
    assert_eq!(invalid_field(&c), "mqtt.max_packet_size");

    let mut c = Config::default();
    c.http.listen = "localhost:8080".into();
    assert_eq!(invalid_field(&c), "http.listen");

    let mut c = Config::default();
    c.mqtt.connect_timeout = Duration::ZERO;
    assert_eq!(invalid_field(&c), "mqtt.connect_timeout");

    let mut c = Config::default();
    c.mqtt.receive_maximum = 0;
    assert_eq!(invalid_field(&c), "mqtt.receive_maximum");

    let mut c = Config::default();
    c.mqtt.max_topic_length = 70_000;
    assert_eq!(invalid_field(&c), "mqtt.max_topic_length");

    let mut c = Config::default();
    c.log.max_batch = 0;
    assert_eq!(invalid_field(&c), "log.max_batch");

    let mut c = Config::default();
    c.admin.listen = c.mqtt.listen.clone();
    assert_eq!(invalid_field(&c), "admin.listen");

    for bad in [
        "dash.example.com",
        "https://dash.example.com/",
        "ftp://x",
        "https://",
    ] {
        let mut c = Config::default();
        c.browser.allowed_origins = vec![bad.into()];
        assert_eq!(invalid_field(&c), "browser.allowed_origins", "{bad}");
    }
    let mut c = Config::default();
    c.browser.allowed_origins = vec![
        "https://dash.example.com".into(),
        "http://localhost:5173".into(),
    ];
    assert!(c.validate().is_ok());
    assert!(c.browser.origin_allowed("http://localhost:5173"));
    assert!(!c.browser.origin_allowed("http://localhost:5174"));
}

#[test]
fn port_zero_everywhere_is_fine() {
    let mut c = Config::default();
    c.apply(&Overrides {
        data_dir: Some("elsewhere".into()),
        mqtt_listen: Some("127.0.0.1:0".into()),
        http_listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("[::1]:0".into()),
    });
    assert_eq!(c.data.dir, PathBuf::from("elsewhere"));
    assert_eq!(c.admin.listen, "[::1]:0");
    c.validate().expect("valid");
}

#[test]
fn non_loopback_listeners_refuse_to_start() {
    for (field, addr) in [
        ("mqtt.listen", "0.0.0.0:1883"),
        ("http.listen", "192.0.2.10:8080"),
        ("admin.listen", "[::]:9090"),
    ] {
        let mut c = Config::default();
        match field {
            "mqtt.listen" => c.mqtt.listen = addr.into(),
            "http.listen" => c.http.listen = addr.into(),
            _ => c.admin.listen = addr.into(),
        }
        let err = c.validate().expect_err("must refuse");
        let text = err.to_string();
        assert!(text.starts_with(field), "{text}");
        assert!(text.contains("authentication"), "{text}");
        assert!(text.contains("loopback"), "{text}");
    }
}

fn with_namespaces(namespace: Vec<NamespaceConfig>) -> Config {
    Config {
        namespace,
        ..Config::default()
    }
}

#[test]
fn namespace_filters_are_checked() {
    let ns = |name: &str, filter: &str| NamespaceConfig {
        name: name.into(),
        filter: filter.into(),
        max_messages: None,
        max_age: None,
        store_qos0: None,
    };
    for (filter, why) in [
        ("a/#/b", "misplaced #"),
        ("a+/b", "misplaced +"),
        ("", "empty"),
        ("$share/g/a/#", "shared"),
    ] {
        let c = with_namespaces(vec![ns("ok", "ok/#"), ns("bad", filter)]);
        assert_eq!(invalid_field(&c), "namespace[1] (\"bad\").filter", "{why}");
    }

    let c = with_namespaces(vec![ns("same", "a/#"), ns("same", "b/#")]);
    assert_eq!(invalid_field(&c), "namespace[1] (\"same\").name");

    let c = with_namespaces(vec![ns(" ", "a/#")]);
    assert_eq!(invalid_field(&c), "namespace[0].name");
}
