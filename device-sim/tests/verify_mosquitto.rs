//! `device-sim verify` over MQTT against a real Mosquitto: the built binary subscribes, the
//! test publishes a crafted stamped stream (a gap, a duplicate, reorderings, an unstamped
//! message, stamps in the payload and in MQTT 5 user properties), and the exit status and
//! the JSON report must say exactly what was injected. A clean stream must pass, over
//! MQTT 5 and 3.1.1, and a verifier that keeps dropping its own connection must resume its
//! persistent session without losing anything.
//!
//! Needs Debian's `mosquitto`; `./scripts/test.sh` installs it.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use device_sim::verify::Report;
use support::{Crafted, Mosquitto, clean_stream, publish_stream, start_mosquitto};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// Bound on one verifier run (its own --duration is shorter).
const PATIENCE: Duration = Duration::from_secs(60);

/// A verifier process, subscribed.
struct Run {
    child: Child,
    stderr: Vec<String>,
}

/// Starts `device-sim verify` on the broker and returns once it has subscribed.
async fn start_verify(broker: &Mosquitto, json: &Path, args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_device-sim"))
        .arg("verify")
        .args(["--source", &broker.url(), "--duration", "40s"])
        .args(args)
        .arg("--json")
        .arg(json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run device-sim: {e}"));
    let Some(stderr) = child.stderr.take() else {
        panic!("no stderr pipe");
    };
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let subscribed = tokio::time::timeout(Duration::from_secs(15), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let done = line.contains("subscribed");
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(subscribed, Ok(true), "verify did not subscribe: {seen:?}");
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Run {
        child,
        stderr: seen,
    }
}

/// Waits for the verifier to exit; returns (success, stdout, report).
async fn finish(mut run: Run, json: &Path) -> (bool, String, Report) {
    let mut stdout = String::new();
    let Some(mut out) = run.child.stdout.take() else {
        panic!("no stdout pipe");
    };
    let status = tokio::time::timeout(PATIENCE, async {
        let _ = out.read_to_string(&mut stdout).await;
        run.child.wait().await
    })
    .await;
    let status = match status {
        Ok(Ok(s)) => s,
        other => panic!("verify did not end: {other:?}; stderr {:?}", run.stderr),
    };
    let report = Report::read_json(json).unwrap_or_else(|e| panic!("{e}\n{stdout}"));
    (status.success(), stdout, report)
}

#[tokio::test]
async fn verify_over_mqtt_reports_an_injected_gap_duplicate_and_reorder() {
    let broker = start_mosquitto();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let json = dir.path().join("crafted.json");
    let run = start_verify(
        &broker,
        &json,
        &["--filter", "crafted/#", "--until-idle", "1500ms"],
    )
    .await;
    use Crafted::*;
    // Device a (payload stamps): 1 2 4 3 3 5 7 9 8 → 6 lost, one duplicate (3), two
    // reordered (3, 8). Device b (user properties): 1 2 3 clean. One unstamped message.
    let stream = [
        Payload("a", 1),
        Props("b", 1),
        Payload("a", 2),
        Payload("a", 4),
        Props("b", 2),
        Payload("a", 3),
        Payload("a", 3),
        Unstamped,
        Payload("a", 5),
        Payload("a", 7),
        Props("b", 3),
        Payload("a", 9),
        Payload("a", 8),
    ];
    publish_stream(broker.addr(), "crafted", &stream, Duration::ZERO).await;
    let (ok, stdout, r) = finish(run, &json).await;
    assert!(!ok, "verify passed a broken stream:\n{stdout}");
    assert!(stdout.contains("FAIL"), "{stdout}");
    let t = &r.totals;
    assert_eq!(t.devices, 2, "{r:#?}");
    assert_eq!((t.received, t.unique), (12, 11), "{r:#?}");
    assert_eq!((t.lost, t.duplicates, t.reordered), (1, 1, 2), "{r:#?}");
    assert_eq!(t.unstamped, 1, "{r:#?}");
    let a = r.devices.iter().find(|d| d.device == "a");
    assert_eq!(
        a.map(|d| d.lost_ranges.clone()),
        Some(vec![(6, 6)]),
        "{r:#?}"
    );
    let b = r.devices.iter().find(|d| d.device == "b");
    assert_eq!(b.map(|d| d.badness()), Some((0, 0, 0)), "{r:#?}");
    assert!(!r.passed && r.problems.len() == 3, "{:?}", r.problems);
    assert!(r.latency_us.count == 11 && r.latency_us.max > 0.0, "{r:#?}");
}

#[tokio::test]
async fn verify_over_mqtt_passes_a_clean_stream_with_5_and_3_1_1() {
    let broker = start_mosquitto();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    for version in ["5", "4"] {
        let json = dir.path().join(format!("clean-{version}.json"));
        let topic = format!("clean{version}");
        let filter = format!("{topic}/#");
        let run = start_verify(
            &broker,
            &json,
            &[
                "--filter",
                &filter,
                "--mqtt-version",
                version,
                "--from-start",
                "--expect-devices",
                "3",
                "--expect-last-seq",
                "20",
                "--until-idle",
                "5s",
            ],
        )
        .await;
        let stream = clean_stream(&["d1", "d2", "d3"], 20);
        publish_stream(broker.addr(), &topic, &stream, Duration::ZERO).await;
        let (ok, stdout, r) = finish(run, &json).await;
        assert!(ok, "MQTT {version}: a clean stream failed:\n{stdout}");
        assert!(stdout.contains("PASS"), "{stdout}");
        let t = &r.totals;
        assert_eq!((t.devices, t.received, t.lost), (3, 60, 0), "{r:#?}");
        assert_eq!((t.duplicates, t.reordered, t.resets), (0, 0, 0), "{r:#?}");
    }
}

#[tokio::test]
async fn verify_over_mqtt_resumes_its_persistent_session() {
    let broker = start_mosquitto();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let json = dir.path().join("resume.json");
    let run = start_verify(
        &broker,
        &json,
        &[
            "--filter",
            "resume/#",
            "--from-start",
            "--expect-devices",
            "2",
            "--expect-last-seq",
            "150",
            "--disconnect-after",
            "40",
            // QoS 1 may redeliver what was in flight at a disconnect: counted, not failed.
            "--allow-duplicates",
            "--until-idle",
            "10s",
        ],
    )
    .await;
    let stream = clean_stream(&["r1", "r2"], 150);
    publish_stream(broker.addr(), "resume", &stream, Duration::from_millis(2)).await;
    let (ok, stdout, r) = finish(run, &json).await;
    assert!(ok, "resume lost continuity:\n{stdout}");
    let t = &r.totals;
    assert_eq!((t.lost, t.reordered, t.resets), (0, 0, 0), "{r:#?}");
    assert_eq!(t.unique, 300, "{r:#?}");
    assert!(t.planned_disconnects >= 5, "{r:#?}");
}
