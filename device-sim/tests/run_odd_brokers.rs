//! `device-sim run` against brokers that misbehave: nobody listening, a refused CONNACK,
//! garbage instead of MQTT, a socket dropped right after CONNACK. The run must not panic; it
//! retries with backoff, counts and names each error, and still ends on time with a report.

mod support;

use std::path::Path;
use std::time::Duration;

use device_sim::run::{self, CancellationToken, RunOptions, RunReport};
use device_sim::scenario;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SCENARIO: &str = r#"
duration = "1500ms"
[[classes]]
name = "d"
count = 2
[classes.reconnect]
initial = "100ms"
max = "200ms"
[[classes.telemetry]]
topic = "odd/{id}"
interval = "50ms"
qos = 1
payload = { model = "json", fields = { x = 1 } }
"#;

async fn run_against(port: u16) -> RunReport {
    let s = scenario::parse(SCENARIO, Path::new("odd.toml")).unwrap_or_else(|e| panic!("{e}"));
    let opts = RunOptions {
        broker: Some(
            format!("mqtt://127.0.0.1:{port}")
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
        ),
        ..RunOptions::default()
    };
    let report = tokio::time::timeout(
        Duration::from_secs(20),
        run::run(&s, opts, CancellationToken::new()),
    )
    .await
    .unwrap_or_else(|_| panic!("the run did not end in time"));
    report.unwrap_or_else(|e| panic!("{e}"))
}

/// A fake broker on a free port that answers every connection with `reply` after reading
/// the CONNECT, then closes it after `linger`. Runs until the test ends.
async fn fake_broker(reply: &'static [u8], linger: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await;
                let _ = sock.write_all(reply).await;
                tokio::time::sleep(linger).await;
            });
        }
    });
    port
}

fn errors(r: &RunReport) -> String {
    format!("{:?}", r.overall.errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_listening_is_retried_with_backoff() {
    let r = run_against(support::free_port()).await;
    assert_eq!(r.overall.ever_connected, 0, "{r:#?}");
    // 1.5 s at 100-200 ms waits: several attempts per device, not a tight loop.
    let attempts = r.overall.connect_failures;
    assert!((4..=40).contains(&attempts), "{attempts} attempts: {r:#?}");
    assert_eq!(
        r.overall.errors.get("connection_refused"),
        Some(&attempts),
        "{}",
        errors(&r)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connack_and_garbage_are_counted() {
    // CONNACK with return code 5: not authorized.
    let refused = fake_broker(&[0x20, 0x02, 0x00, 0x05], Duration::from_millis(100)).await;
    let r = run_against(refused).await;
    assert_eq!(r.overall.ever_connected, 0, "{r:#?}");
    assert!(
        r.overall
            .errors
            .get("connection_refused_by_broker")
            .is_some_and(|n| *n >= 2),
        "{}",
        errors(&r)
    );

    let garbage = fake_broker(&[0xff; 16], Duration::from_millis(100)).await;
    let r = run_against(garbage).await;
    assert_eq!(r.overall.ever_connected, 0, "{r:#?}");
    assert!(r.overall.connect_failures >= 2, "{r:#?}");
    assert!(!r.overall.errors.is_empty(), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_dropped_after_connack_is_reconnected() {
    // Accept, then close 200 ms later: the device publishes, loses the connection, retries.
    let port = fake_broker(&[0x20, 0x02, 0x00, 0x00], Duration::from_millis(200)).await;
    let r = run_against(port).await;
    assert_eq!(r.overall.ever_connected, 2, "{r:#?}");
    assert!(r.overall.reconnects >= 2, "{r:#?}");
    // A close with unread data in the broker's buffer is a reset: either way, counted.
    let lost = ["closed_by_broker", "socket_error"];
    let kinds = errors(&r);
    assert!(
        r.overall.errors.keys().all(|k| lost.contains(&k.as_str())),
        "{kinds}"
    );
    assert!(r.overall.errors.values().sum::<u64>() >= 2, "{kinds}");
    // Nothing was ever acknowledged: what was written failed, what was not was dropped.
    assert_eq!(r.overall.acked, 0, "{r:#?}");
    assert_eq!(r.overall.sent, r.overall.failed, "{r:#?}");
}
