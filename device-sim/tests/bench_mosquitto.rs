//! `device-sim bench` against a real Mosquitto started on an ephemeral port: small throughput
//! (1→1, fan-in, fan-out), latency, reconnect-storm and idle runs through the built binary,
//! checked through their JSON reports. Nothing may be lost.
//!
//! Needs Debian's `mosquitto`; `./scripts/test.sh` installs it.

mod support;

use std::path::Path;
use std::process::Command;

use device_sim::bench::Report;
use support::{Mosquitto, start_mosquitto_with};

/// Mosquitto as the benchmarks need it: deep queues and a wide in-flight window.
fn start_mosquitto() -> Mosquitto {
    start_mosquitto_with("max_queued_messages 100000\nmax_inflight_messages 100\n")
}

/// Runs `device-sim bench <args>` against the broker and returns its JSON report.
fn bench(broker: &Mosquitto, out: &Path, name: &str, args: &[&str]) -> Report {
    let json = out.join(format!("{name}.json"));
    let url = broker.url();
    let output = Command::new(env!("CARGO_BIN_EXE_device-sim"))
        .arg("bench")
        .args(args)
        .args(["--broker", &url, "--timeout", "60s", "--prefix", name])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap_or_else(|e| panic!("cannot run device-sim: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "device-sim bench {args:?} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("metric"), "no table printed:\n{stdout}");
    Report::read_json(&json).unwrap_or_else(|e| panic!("{e}\n{stdout}"))
}

fn value(report: &Report, key: &str) -> f64 {
    match report.get(key) {
        Some(m) => m.value,
        None => panic!("report {} has no {key}: {report:#?}", report.title),
    }
}

fn assert_clean(report: &Report) {
    assert!(report.complete, "incomplete run: {report:#?}");
    assert!(report.errors.is_empty(), "errors: {report:#?}");
}

#[test]
fn bench_scenarios_against_mosquitto_lose_nothing() {
    let broker = start_mosquitto();
    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let out = out.path();

    let cases: [(&str, &[&str], u64); 3] = [
        (
            "one-to-one",
            &["throughput", "--messages", "2000", "--qos", "0"],
            2000,
        ),
        (
            "fan-in",
            &[
                "throughput",
                "--publishers",
                "4",
                "--messages",
                "300",
                "--qos",
                "1",
                "--topic-per-publisher",
            ],
            1200,
        ),
        (
            "fan-out",
            &[
                "throughput",
                "--subscribers",
                "3",
                "--messages",
                "400",
                "--qos",
                "1",
                "--inflight",
                "50",
            ],
            1200,
        ),
    ];
    for (name, args, deliveries) in cases {
        let r = bench(&broker, out, name, args);
        assert_clean(&r);
        assert_eq!(value(&r, "loss"), 0.0, "{r:#?}");
        assert_eq!(value(&r, "delivered") as u64, deliveries, "{r:#?}");
        assert!(value(&r, "delivered_per_sec") > 0.0, "{r:#?}");
    }

    let lat = bench(
        &broker,
        out,
        "latency",
        &[
            "latency",
            "--rate",
            "500",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--qos",
            "1",
        ],
    );
    assert_clean(&lat);
    assert_eq!(value(&lat, "loss"), 0.0, "{lat:#?}");
    assert_eq!(value(&lat, "sent"), 500.0, "{lat:#?}");
    assert_eq!(
        value(&lat, "samples"),
        400.0,
        "warm-up must be excluded: {lat:#?}"
    );
    assert_eq!(value(&lat, "duplicates") + value(&lat, "reordered"), 0.0);
    let (p50, p99, max) = (
        value(&lat, "p50_us"),
        value(&lat, "p99_us"),
        value(&lat, "max_us"),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{lat:#?}");

    let storm = bench(
        &broker,
        out,
        "storm",
        &[
            "reconnect-storm",
            "--clients",
            "60",
            "--concurrency",
            "10",
            "--persistent",
        ],
    );
    assert_clean(&storm);
    assert_eq!(value(&storm, "connected"), 60.0, "{storm:#?}");
    assert_eq!(value(&storm, "failures"), 0.0, "{storm:#?}");
    assert_eq!(value(&storm, "resume_session_present"), 60.0, "{storm:#?}");

    let pid = broker.pid().to_string();
    let idle = bench(
        &broker,
        out,
        "idle",
        &[
            "idle",
            "--connections",
            "40",
            "--pid",
            &pid,
            "--settle",
            "100ms",
        ],
    );
    assert_clean(&idle);
    assert_eq!(value(&idle, "connections_held"), 40.0, "{idle:#?}");
    assert!(value(&idle, "broker_rss_after") > 0.0, "{idle:#?}");
}
