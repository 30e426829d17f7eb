//! End to end in a real browser: headless Chromium (Debian's `chromium`, driven by
//! playwright-core from `tests/browser/`) loads a page that uses the gateway's `/client.js`.
//! An MQTT device publishes numbered QoS 1 messages; mid-stream the page's connection is cut
//! (a relay drops every socket) and later the gateway is restarted; the page must end with
//! every number exactly once, in order. Run for WebSocket and for SSE (+ REST publish), and
//! the page's command must reach an MQTT subscriber.
//!
//! `scripts/test.sh` installs chromium and the npm package; without them these fail with a
//! message saying so.

use e2e_tests::GatewayHarness;
use e2e_tests::mqtt::{V4, v4_options};
use e2e_tests::proxy::Proxy;
use rumqttc::QoS;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

const TOTAL: i64 = 300;

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn check_tools() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: run scripts/test.sh, which installs Debian's chromium"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").is_dir(),
        "tests/browser/node_modules is missing: run scripts/test.sh (or `npm ci` in tests/browser)"
    );
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>, log: &mut Vec<String>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(90), lines.next_line())
        .await
        .expect("the browser script reports in time")
        .expect("read")
        .unwrap_or_else(|| panic!("browser script ended; its output: {log:#?}"));
    log.push(line.clone());
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    assert!(
        v["event"] != "failed" && v["event"] != "pageerror",
        "browser: {v}"
    );
    v
}

/// Reads progress lines until the page has at least `n` messages (or reports done).
async fn wait_progress(
    lines: &mut Lines<BufReader<ChildStdout>>,
    log: &mut Vec<String>,
    n: i64,
) -> Option<Value> {
    loop {
        let v = next_line(lines, log).await;
        if v["event"] == "done" {
            return Some(v);
        }
        if v["count"].as_i64().is_some_and(|c| c >= n) {
            return None;
        }
    }
}

async fn publish(dev: &mut V4, range: std::ops::Range<i64>) {
    for i in range {
        let topic = format!("e2e/{}/n", i % 4);
        dev.client
            .publish(topic, QoS::AtLeastOnce, false, i.to_string())
            .await
            .expect("publish");
        dev.puback().await;
    }
}

async fn run(transport: &str) {
    check_tools();
    let gw = GatewayHarness::new().start().await;
    let proxy = Proxy::start(gw.http_addr()).await;
    let mut child = Command::new("node")
        .arg(browser_dir().join("run.mjs"))
        .env("BASE", format!("http://{}", proxy.addr()))
        .env("TRANSPORT", transport)
        .env("TOTAL", TOTAL.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut log = Vec::new();
    assert_eq!(next_line(&mut lines, &mut log).await["event"], "ready");

    let (mut dev, _) = V4::connect(v4_options(gw.mqtt_addr(), "e2e-device")).await;
    // 1. A first stretch; cut the page's connection while it is receiving.
    let publisher = tokio::spawn(async move {
        publish(&mut dev, 0..100).await;
        dev
    });
    wait_progress(&mut lines, &mut log, 40).await;
    let cut = proxy.cut();
    let mut dev = publisher.await.expect("publisher");
    // 2. More while the page reconnects.
    publish(&mut dev, 100..200).await;
    dev.disconnect().await;
    // The page is back (it received messages published after the cut) before the restart,
    // so the restart cuts a live connection again.
    assert!(
        wait_progress(&mut lines, &mut log, 150).await.is_none(),
        "the page finished early"
    );
    // 3. Restart the gateway under the page, and publish the rest while it comes back.
    let gw = gw.restart().await;
    proxy.retarget(gw.http_addr());
    let (mut cmd, _) = V4::connect(v4_options(gw.mqtt_addr(), "e2e-commands")).await;
    cmd.subscribe("cmd/#", QoS::AtLeastOnce).await;
    let (mut dev, _) = V4::connect(v4_options(gw.mqtt_addr(), "e2e-device")).await;
    publish(&mut dev, 200..TOTAL).await;

    let done = match wait_progress(&mut lines, &mut log, TOTAL + 1).await {
        Some(d) => d,
        None => unreachable!("progress never exceeds TOTAL before done"),
    };
    let numbers: Vec<i64> = done["numbers"]
        .as_array()
        .expect("numbers")
        .iter()
        .map(|n| n.as_i64().expect("number"))
        .collect();
    assert!(
        cut >= 1,
        "the page had a connection through the relay to cut"
    );
    assert!(
        done["opens"].as_u64().is_some_and(|o| o >= 3),
        "the page connected, reconnected after the cut and after the restart: {done}"
    );
    assert_eq!(
        numbers,
        (0..TOTAL).collect::<Vec<_>>(),
        "every number exactly once, in order ({transport}); page log: {}",
        done["log"]
    );
    let cmd_line = next_line(&mut lines, &mut log).await;
    assert_eq!(cmd_line["event"], "command", "{cmd_line}");
    assert!(cmd_line["ack"]["pos"].is_string());
    let p = cmd.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("cmd/e2e", &br#"{"n":7}"#[..])
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("browser script exits")
        .expect("status");
    assert!(status.success(), "browser script: {log:#?}");
    println!(
        "{transport}: {TOTAL} numbers in order through a cut and a restart; log: {}",
        done["log"]
    );
    dev.disconnect().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_page_gets_every_number_once_through_cut_and_restart() {
    run("ws").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_page_gets_every_number_once_through_cut_and_restart() {
    run("sse").await;
}
