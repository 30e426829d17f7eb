//! Third-party clients: Debian's `mosquitto_pub` and `mosquitto_sub` against the gateway,
//! for QoS 0/1/2 round trips, retained messages, a will, and a persistent session across a
//! gateway restart. The test script installs `mosquitto-clients`; without it these fail.

use e2e_tests::GatewayHarness;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} is missing: run scripts/test.sh, which installs mosquitto-clients"
    );
    // Line-buffer stdout so each message is readable as soon as it is printed.
    let mut c = Command::new("stdbuf");
    c.arg("-oL").arg(name).kill_on_drop(true);
    c
}

fn base(c: &mut Command, addr: SocketAddr) -> &mut Command {
    c.args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
}

/// Starts `mosquitto_sub -d` and waits until it has its SUBACK, returning its output lines
/// (debug lines included).
async fn sub(addr: SocketAddr, extra: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut c = tool("mosquitto_sub");
    base(&mut c, addr)
        .arg("-d")
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("mosquitto_sub starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("SUBACK") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "mosquitto_sub got its SUBACK");
    (child, lines)
}

/// The next line that is not mosquitto's debug output.
async fn next_message(lines: &mut Lines<BufReader<ChildStdout>>) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if !l.starts_with("Client ") && !l.starts_with("Subscribed (mid") {
                return Some(l);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

async fn publish(addr: SocketAddr, args: &[&str]) {
    let mut c = tool("mosquitto_pub");
    let status = base(&mut c, addr)
        .args(args)
        .status()
        .await
        .expect("mosquitto_pub runs");
    assert!(status.success(), "mosquitto_pub {args:?} succeeded");
}

#[tokio::test]
async fn qos_round_trips() {
    let gw = GatewayHarness::new().start().await;
    let addr = gw.mqtt_addr();
    let (_s, mut lines) = sub(addr, &["-t", "cli/#", "-q", "2", "-F", "%t %q %p"]).await;
    for q in ["0", "1", "2"] {
        publish(
            addr,
            &[
                "-t",
                &format!("cli/q{q}"),
                "-q",
                q,
                "-m",
                &format!("hello {q}"),
            ],
        )
        .await;
        let line = next_message(&mut lines).await.expect("delivered");
        assert_eq!(line, format!("cli/q{q} {q} hello {q}"));
    }
    gw.stop().await;
}

#[tokio::test]
async fn retained_message_reaches_later_subscriber() {
    let gw = GatewayHarness::new().start().await;
    let addr = gw.mqtt_addr();
    publish(addr, &["-t", "cli/ret", "-q", "1", "-r", "-m", "kept"]).await;
    let (_s, mut lines) = sub(addr, &["-t", "cli/ret", "-q", "1", "-F", "%r %p"]).await;
    assert_eq!(next_message(&mut lines).await.as_deref(), Some("1 kept"));
    gw.stop().await;
}

#[tokio::test]
async fn will_of_killed_client_is_published() {
    let gw = GatewayHarness::new().start().await;
    let addr = gw.mqtt_addr();
    let (_w, mut lines) = sub(addr, &["-t", "cli/will", "-q", "1", "-F", "%p"]).await;
    let (mut dev, _dl) = sub(
        addr,
        &[
            "-t",
            "cli/unused",
            "--will-topic",
            "cli/will",
            "--will-payload",
            "lost",
            "--will-qos",
            "1",
            "-i",
            "dev",
        ],
    )
    .await;
    dev.start_kill().expect("kill mosquitto_sub");
    let _ = dev.wait().await;
    assert_eq!(next_message(&mut lines).await.as_deref(), Some("lost"));
    gw.stop().await;
}

#[tokio::test]
async fn persistent_session_across_restart() {
    let gw = GatewayHarness::new().start().await;
    let addr = gw.mqtt_addr();
    let (mut s, _l) = sub(addr, &["-t", "cli/p", "-q", "1", "-c", "-i", "keeper"]).await;
    s.start_kill().expect("stop subscriber");
    let _ = s.wait().await;
    for i in 0..5 {
        publish(addr, &["-t", "cli/p", "-q", "1", "-m", &format!("m{i}")]).await;
    }
    let gw = gw.restart().await;
    let addr = gw.mqtt_addr();
    // Queued messages may arrive before the SUBACK of the repeated subscription, so read
    // the output from the start.
    let mut c = tool("mosquitto_sub");
    base(&mut c, addr)
        .args([
            "-d", "-t", "cli/p", "-q", "1", "-c", "-i", "keeper", "-F", "%p",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = c.spawn().expect("mosquitto_sub starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for i in 0..5 {
        assert_eq!(
            next_message(&mut lines).await,
            Some(format!("m{i}")),
            "queued while offline, in order"
        );
    }
    gw.stop().await;
}
