//! `device-sim run` (the built binary) against a real Mosquitto on an ephemeral port: the
//! telemetry really arrives at a subscriber with gap-free stamps, commands are answered (to
//! a reply topic, and MQTT 5 request/response with correlation data), and the JSON report
//! agrees with what the subscriber saw.
//!
//! Needs Debian's `mosquitto`; `./scripts/test.sh` installs it.

mod support;

use std::time::Duration;

use bytes::Bytes;
use device_sim::run::RunReport;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use serde_json::{Value, json};
use support::{Collector, assert_no_gaps, scenario, start_mosquitto};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_against_mosquitto_delivers_stamped_telemetry_and_answers_commands() {
    let broker = start_mosquitto();
    let addr = broker.addr();
    let sub = Collector::start(addr, "mq-watcher", "mq/#").await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let file = dir.path().join("mq.toml");
    std::fs::write(&file, scenario("mq", "3s")).unwrap_or_else(|e| panic!("write: {e}"));
    let json_path = dir.path().join("report.json");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_device-sim"))
        .arg("run")
        .arg(&file)
        .args(["--broker", &format!("mqtt://{addr}"), "--interval", "1s"])
        .arg("--json")
        .arg(&json_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start device-sim: {e}"));

    // Valve telemetry shows its subscriptions are in place (SUBSCRIBE goes out first).
    let valves_up = wait_for(&sub, Duration::from_secs(10), |r| {
        ["mq-valve-1", "mq-valve-2"]
            .iter()
            .all(|v| r.iter().any(|m| m.topic.contains(v)))
    })
    .await;
    assert!(valves_up, "no valve telemetry within 10 s");
    sub.client
        .publish(
            "mq/valve/mq-valve-1/set",
            QoS::AtLeastOnce,
            false,
            r#"{"id": 42}"#,
        )
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
    let props = PublishProperties {
        response_topic: Some("mq/replies/watcher".into()),
        correlation_data: Some(Bytes::from_static(b"corr-1")),
        ..Default::default()
    };
    sub.client
        .publish_with_properties(
            "mq/valve/mq-valve-2/set",
            QoS::AtLeastOnce,
            false,
            r#"{"id": 43}"#,
            props,
        )
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));

    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("device-sim did not finish within 60 s"))
        .unwrap_or_else(|e| panic!("device-sim: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "device-sim failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("] connected 5/5"),
        "no progress lines:\n{stdout}"
    );
    assert!(
        stdout.contains("finished mq on mqtt://"),
        "no summary:\n{stdout}"
    );
    sub.settle(Duration::from_millis(300), Duration::from_secs(5))
        .await;

    let text = std::fs::read_to_string(&json_path).unwrap_or_else(|e| panic!("report: {e}"));
    let report: RunReport = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let all = &report.overall;
    assert_eq!(
        (all.devices, all.ever_connected, all.connected),
        (5, 5, 5),
        "{text}"
    );
    assert_eq!((all.failed, all.dropped), (0, 0), "{text}");
    assert_eq!(all.sent, all.acked, "{text}");
    assert!(
        all.latency_us.as_ref().is_some_and(|l| l.samples > 0),
        "{text}"
    );
    // The process's own memory is reported (a reading, not a limit).
    assert!(
        report
            .mem
            .is_some_and(|m| m.rss_bytes > 0 && m.peak_rss_bytes >= m.rss_bytes),
        "{text}"
    );
    assert!(stdout.contains("memory: "), "{stdout}");

    // What the subscriber saw matches the report, device by device, without gaps.
    let counts = assert_no_gaps(&sub.seqs());
    assert_eq!(counts.len(), 5, "{counts:?}");
    for class in &report.classes {
        let seen: u64 = counts
            .iter()
            .filter(|(dev, _)| dev.contains(&format!("-{}-", class.name)))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(seen, class.sent, "class {}: {counts:?}\n{text}", class.name);
        assert!(
            class.sent > 10,
            "class {} sent only {}",
            class.name,
            class.sent
        );
    }

    // Payload models: meter counters count up; valve payloads are text, stamped in properties.
    let got = sub.received();
    let counters: Vec<i64> = got
        .iter()
        .filter(|m| m.topic == "mq/meter/mq-meter-1/fast")
        .filter_map(|m| serde_json::from_slice::<Value>(&m.payload).ok())
        .filter_map(|v| v["n"].as_i64())
        .collect();
    assert!(counters.len() > 5, "{counters:?}");
    assert!(
        counters.windows(2).all(|w| w[1] == w[0] + 1),
        "{counters:?}"
    );
    assert!(
        got.iter()
            .filter(|m| m.topic.ends_with("/position"))
            .all(|m| m.stamp.is_some() && (m.payload == "open" || m.payload == "closed")),
        "valve payloads"
    );

    // Commands: one answered on the reply topic, one on its MQTT 5 response topic.
    let valve = report.classes.iter().find(|c| c.name == "valve");
    assert_eq!(
        valve.map(|v| (v.commands, v.replies)),
        Some((2, 2)),
        "{text}"
    );
    let ack = got.iter().find(|m| m.topic == "mq/valve/mq-valve-1/ack");
    let ack: Option<Value> = ack.and_then(|m| serde_json::from_slice(&m.payload).ok());
    assert_eq!(
        ack,
        Some(json!({"ok": true, "request": 42, "device": "mq-valve-1"}))
    );
    let resp = got.iter().find(|m| m.topic == "mq/replies/watcher");
    assert_eq!(
        resp.and_then(|m| m.correlation.clone()),
        Some(Bytes::from_static(b"corr-1"))
    );
    let resp: Option<Value> = resp.and_then(|m| serde_json::from_slice(&m.payload).ok());
    assert_eq!(
        resp,
        Some(json!({"ok": true, "request": 43, "device": "mq-valve-2"}))
    );
}

async fn wait_for(
    sub: &Collector,
    patience: Duration,
    cond: impl Fn(&[support::Received]) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + patience;
    while tokio::time::Instant::now() < deadline {
        if cond(&sub.received()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
