//! `device-sim verify` against an in-process gateway over its WebSocket and SSE: a crafted
//! stamped stream published over MQTT (a gap, a duplicate, reorderings, an unstamped
//! message, stamps in the payload and in MQTT 5 user properties) must be reported with
//! exactly the injected counts and fail; a clean stream must pass; and a verifier that keeps
//! dropping its own connection must resume by position with no loss and no duplicate.

use std::time::Duration;

use device_sim::stamp::Stamp;
use device_sim::verify::{Config, Report, Source, Verifier};
use e2e_tests::GatewayHarness;
use e2e_tests::mqtt::{V5, v5_options};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use tokio::task::JoinHandle;

/// Bound on a verifier run.
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy)]
enum Crafted {
    Payload(&'static str, u64),
    Props(&'static str, u64),
    Unstamped,
}

/// Publishes `stream` in order over MQTT 5 at QoS 1 to `topic/<device>`, `pace` apart,
/// waiting for each PUBACK (so the gateway's order is the publish order).
async fn publish(gw: std::net::SocketAddr, topic: &str, stream: &[Crafted], pace: Duration) {
    let (mut c, _) = V5::connect(v5_options(gw, &format!("pub-{topic}"))).await;
    for m in stream {
        let (channel, payload, props) = match *m {
            Crafted::Payload(dev, seq) => {
                let mut obj = serde_json::Map::new();
                obj.insert("temp".into(), serde_json::json!(21.5));
                Stamp::now(dev, seq).insert_into(&mut obj);
                let body = serde_json::Value::Object(obj).to_string().into_bytes();
                (format!("{topic}/{dev}"), body, None)
            }
            Crafted::Props(dev, seq) => {
                let p = PublishProperties {
                    user_properties: Stamp::now(dev, seq).user_properties(),
                    ..PublishProperties::default()
                };
                (format!("{topic}/{dev}"), b"\xff\x00raw".to_vec(), Some(p))
            }
            Crafted::Unstamped => (format!("{topic}/plain"), b"hello".to_vec(), None),
        };
        let sent = match props {
            Some(p) => {
                c.client
                    .publish_with_properties(channel, QoS::AtLeastOnce, false, payload, p)
                    .await
            }
            None => {
                c.client
                    .publish(channel, QoS::AtLeastOnce, false, payload)
                    .await
            }
        };
        sent.unwrap_or_else(|e| panic!("publish: {e}"));
        c.puback().await;
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
    }
    c.disconnect().await;
}

fn clean(devices: &[&'static str], count: u64) -> Vec<Crafted> {
    (1..=count)
        .flat_map(|seq| devices.iter().map(move |d| Crafted::Payload(d, seq)))
        .collect()
}

fn source(text: String) -> Source {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Connects a verifier (subscribed when this returns) and runs it in a task.
async fn start(config: Config) -> JoinHandle<Report> {
    let v = Verifier::connect(config)
        .await
        .unwrap_or_else(|e| panic!("verify cannot subscribe: {e}"));
    assert!(v.start_position().is_some(), "the gateway gave no position");
    tokio::spawn(async move {
        v.run(std::future::pending())
            .await
            .unwrap_or_else(|e| panic!("verify failed to run: {e}"))
    })
}

async fn finish(run: JoinHandle<Report>) -> Report {
    match tokio::time::timeout(PATIENCE, run).await {
        Ok(Ok(r)) => r,
        other => panic!("verify did not finish: {other:?}"),
    }
}

/// A WebSocket and an SSE config on the same filter.
fn both(http: std::net::SocketAddr, filter: &str) -> [Config; 2] {
    [
        Config::new(source(format!("ws://{http}/ws")), filter),
        Config::new(source(format!("http://{http}/sse")), filter),
    ]
}

#[tokio::test]
async fn verify_over_ws_and_sse_reports_an_injected_gap_duplicate_and_reorder() {
    let gw = GatewayHarness::new().start().await;
    let mut runs = Vec::new();
    for mut c in both(gw.http_addr(), "crafted/#") {
        c.until_idle = Some(Duration::from_millis(1500));
        c.duration = Some(Duration::from_secs(40));
        runs.push(start(c).await);
    }
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
    publish(gw.mqtt_addr(), "crafted", &stream, Duration::ZERO).await;
    for run in runs {
        let r = finish(run).await;
        let t = &r.totals;
        assert!(!r.passed, "{}", r.render(10));
        assert_eq!(t.devices, 2, "{r:#?}");
        assert_eq!((t.received, t.unique), (12, 11), "{r:#?}");
        assert_eq!((t.lost, t.duplicates, t.reordered), (1, 1, 2), "{r:#?}");
        assert_eq!((t.unstamped, t.resets, t.dropped), (1, 0, 0), "{r:#?}");
        let a = r.devices.iter().find(|d| d.device == "a");
        assert_eq!(
            a.map(|d| d.lost_ranges.clone()),
            Some(vec![(6, 6)]),
            "{r:#?}"
        );
        assert_eq!(r.problems.len(), 3, "{:?}", r.problems);
    }
    gw.stop().await;
}

#[tokio::test]
async fn verify_over_ws_and_sse_passes_a_clean_stream() {
    let gw = GatewayHarness::new().start().await;
    let mut runs = Vec::new();
    for mut c in both(gw.http_addr(), "clean/#") {
        c.expect.from_start = true;
        c.expect.devices = Some(4);
        c.expect.last_seq = Some(25);
        c.until_idle = Some(Duration::from_secs(10));
        runs.push(start(c).await);
    }
    publish(
        gw.mqtt_addr(),
        "clean",
        &clean(&["c1", "c2", "c3", "c4"], 25),
        Duration::ZERO,
    )
    .await;
    for run in runs {
        let r = finish(run).await;
        assert!(r.passed, "{}", r.render(10));
        assert_eq!((r.totals.devices, r.totals.received), (4, 100), "{r:#?}");
        assert!(
            r.latency_us.count == 100 && r.latency_us.p50 > 0.0,
            "{r:#?}"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn verify_resumes_by_position_over_ws_and_sse() {
    let gw = GatewayHarness::new().start().await;
    let [mut ws, mut sse] = both(gw.http_addr(), "resume/#");
    ws.disconnect_after = Some(15);
    sse.disconnect_every = Some(Duration::from_millis(150));
    let mut runs = Vec::new();
    for mut c in [ws, sse] {
        // Away long enough that messages are published meanwhile: the resume must fetch them.
        c.offline = Duration::from_millis(100);
        c.expect.from_start = true;
        c.expect.devices = Some(3);
        c.expect.last_seq = Some(100);
        c.until_idle = Some(Duration::from_secs(10));
        runs.push(start(c).await);
    }
    publish(
        gw.mqtt_addr(),
        "resume",
        &clean(&["r1", "r2", "r3"], 100),
        Duration::from_millis(3),
    )
    .await;
    for run in runs {
        let r = finish(run).await;
        let t = &r.totals;
        assert!(r.passed, "{}", r.render(10));
        assert_eq!((t.lost, t.duplicates, t.reordered), (0, 0, 0), "{r:#?}");
        assert_eq!(t.received, 300, "{r:#?}");
        assert!(t.planned_disconnects >= 3, "it never resumed: {r:#?}");
    }
    gw.stop().await;
}
