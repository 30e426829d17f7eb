//! `device-sim run` (the library, in-process) against the gateway: a small fleet's telemetry
//! reaches an MQTT 5 subscriber with gap-free stamps and commands are answered; random
//! disconnects and a reconnect storm produce reconnects while every device's sequence goes
//! on without a gap; MQTT over WebSocket works; the fault proxy adds its latency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use device_sim::run::{self, CancellationToken, RunOptions, RunReport};
use device_sim::scenario::{self, Broker};
use device_sim::stamp::Stamp;
use e2e_tests::GatewayHarness;
use e2e_tests::mqtt::{V5, v5_options};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use serde_json::{Value, json};

/// One message the watcher received: topic, payload, stamp, correlation data.
type Got = (String, Bytes, Option<Stamp>, Option<Bytes>);

/// An MQTT 5 subscriber on `filter` whose messages are collected in the background.
async fn watch(
    addr: std::net::SocketAddr,
    filter: &str,
) -> (rumqttc::v5::AsyncClient, Arc<Mutex<Vec<Got>>>) {
    let (mut sub, _) = V5::connect(v5_options(addr, "watcher")).await;
    sub.client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    sub.suback().await;
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let client = sub.client.clone();
    tokio::spawn(async move {
        loop {
            match sub.next_packet().await {
                Ok(Packet::Publish(p)) => {
                    let (props, corr) = match &p.properties {
                        Some(pp) => (pp.user_properties.clone(), pp.correlation_data.clone()),
                        None => (Vec::new(), None),
                    };
                    let stamp =
                        Stamp::from_user_properties(props.iter().map(|(k, v)| (&**k, &**v)))
                            .or_else(|| Stamp::from_payload(&p.payload));
                    let topic = String::from_utf8_lossy(&p.topic).into_owned();
                    sink.lock()
                        .expect("lock")
                        .push((topic, p.payload.clone(), stamp, corr));
                }
                Ok(_) => {}
                // Quiet for a while: keep listening.
                Err(e) if e.contains("patience") => {}
                Err(_) => return,
            }
        }
    });
    (client, got)
}

fn seqs(got: &Mutex<Vec<Got>>) -> BTreeMap<String, BTreeSet<u64>> {
    let mut out: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for (_, _, stamp, _) in got.lock().expect("lock").iter() {
        if let Some(s) = stamp {
            out.entry(s.device.clone()).or_default().insert(s.seq);
        }
    }
    out
}

/// Every device's sequence is exactly 1..=max; returns max per device.
fn no_gaps(seqs: &BTreeMap<String, BTreeSet<u64>>) -> BTreeMap<String, u64> {
    seqs.iter()
        .map(|(dev, set)| {
            let max = set.iter().next_back().copied().unwrap_or(0);
            let missing: Vec<u64> = (1..=max).filter(|s| !set.contains(s)).collect();
            assert!(
                missing.is_empty(),
                "{dev}: missing sequence numbers {missing:?}"
            );
            (dev.clone(), max)
        })
        .collect()
}

async fn settle(got: &Mutex<Vec<Got>>) {
    let mut last = usize::MAX;
    for _ in 0..25 {
        let n = got.lock().expect("lock").len();
        if n == last {
            return;
        }
        last = n;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn load(text: &str) -> scenario::Scenario {
    scenario::parse(text, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn opts(broker: String) -> RunOptions {
    RunOptions {
        broker: Some(broker.parse::<Broker>().expect("broker url")),
        ..RunOptions::default()
    }
}

/// Runs scenario `text` against `broker` to its end.
async fn run_to_end(text: &str, broker: String) -> RunReport {
    run::run(&load(text), opts(broker), CancellationToken::new())
        .await
        .expect("run")
}

/// Every one of `devices` connected, at least ten messages went out, each was acknowledged,
/// and the watcher received every device's sequence whole.
async fn assert_delivered(report: &RunReport, got: &Mutex<Vec<Got>>, devices: u64) {
    settle(got).await;
    assert_eq!(report.overall.ever_connected, devices, "{report:#?}");
    assert!(report.overall.sent >= 10, "{report:#?}");
    assert_eq!(report.overall.sent, report.overall.acked, "{report:#?}");
    assert_eq!(
        no_gaps(&seqs(got)).values().sum::<u64>(),
        report.overall.sent
    );
}

async fn run_in_background(
    s: scenario::Scenario,
    o: RunOptions,
) -> tokio::task::JoinHandle<RunReport> {
    tokio::spawn(async move {
        run::run(&s, o, CancellationToken::new())
            .await
            .expect("run starts")
    })
}

const FLEET: &str = r#"
duration = "3s"
seed = 11

[[classes]]
name = "meter"
count = 3
client_id = "gw-meter-{n}"

[[classes.telemetry]]
topic = "gw/{class}/{id}/fast"
interval = "100ms"
qos = 0
payload = { model = "json", fields = { n = { model = "counter" } } }

[[classes.telemetry]]
topic = "gw/{class}/{id}/slow"
interval = "250ms"
qos = 1
payload = { model = "json", fields = { v = { model = "random_walk", start = 1.0, step = 0.1 } } }

[[classes]]
name = "valve"
count = 2
client_id = "gw-valve-{n}"
protocol = 5

[[classes.telemetry]]
topic = "gw/{class}/{id}/position"
interval = "200ms"
qos = 2
payload = { model = "choice", values = ["open", "closed"], weights = [1, 3] }

[[classes.commands]]
topic = "gw/{class}/{id}/set"
reply_topic = "gw/{class}/{id}/ack"
reply = { ok = true, request = "{cmd.id}", device = "{id}" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_telemetry_and_commands_through_the_gateway() {
    let gw = GatewayHarness::new().start().await;
    let (client, got) = watch(gw.mqtt_addr(), "gw/#").await;
    let handle = run_in_background(load(FLEET), opts(format!("mqtt://{}", gw.mqtt_addr()))).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !["gw-valve-1", "gw-valve-2"]
        .iter()
        .all(|v| got.lock().expect("lock").iter().any(|m| m.0.contains(v)))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no valve telemetry within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
        .publish(
            "gw/valve/gw-valve-1/set",
            QoS::AtLeastOnce,
            false,
            r#"{"id": 1}"#,
        )
        .await
        .expect("publish");
    let props = PublishProperties {
        response_topic: Some("gw/replies".into()),
        correlation_data: Some(Bytes::from_static(b"c-9")),
        ..Default::default()
    };
    client
        .publish_with_properties(
            "gw/valve/gw-valve-2/set",
            QoS::AtLeastOnce,
            false,
            r#"{"id": 2}"#,
            props,
        )
        .await
        .expect("publish");

    let report = tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .expect("run ends")
        .expect("run task");
    settle(&got).await;
    let all = &report.overall;
    assert_eq!(
        (all.devices, all.ever_connected, all.connected),
        (5, 5, 5),
        "{report:#?}"
    );
    assert_eq!(
        (all.failed, all.dropped, all.sent),
        (0, 0, all.acked),
        "{report:#?}"
    );
    assert!(all.errors.is_empty(), "{report:#?}");

    let counts = no_gaps(&seqs(&got));
    for class in &report.classes {
        let seen: u64 = counts
            .iter()
            .filter(|(d, _)| d.starts_with(&format!("gw-{}-", class.name)))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(seen, class.sent, "class {}: {counts:?}", class.name);
        assert!(class.sent >= 10, "{report:#?}");
    }
    let got = got.lock().expect("lock").clone();
    let ack = got.iter().find(|m| m.0 == "gw/valve/gw-valve-1/ack");
    let ack: Option<Value> = ack.and_then(|m| serde_json::from_slice(&m.1).ok());
    assert_eq!(
        ack,
        Some(json!({"ok": true, "request": 1, "device": "gw-valve-1"}))
    );
    let resp = got.iter().find(|m| m.0 == "gw/replies");
    assert_eq!(
        resp.and_then(|m| m.3.clone()),
        Some(Bytes::from_static(b"c-9"))
    );
    let valve = report.classes.iter().find(|c| c.name == "valve");
    assert_eq!(valve.map(|v| (v.commands, v.replies)), Some((2, 2)));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_disconnects_and_a_storm_keep_sequences_whole() {
    let gw = GatewayHarness::new().start().await;
    let (_client, got) = watch(gw.mqtt_addr(), "flaky/#").await;
    let text = r#"
duration = "3s"
seed = 5

[[classes]]
name = "flaky"
count = 4

[[classes.telemetry]]
topic = "flaky/{id}"
interval = "50ms"
qos = 1
payload = { model = "json", fields = { n = { model = "counter" } } }

[classes.will]
topic = "flaky/{id}/status"
payload = "gone"
retain = false

[classes.faults]
disconnect_every = "800ms"
reconnect_delay = "100ms"

[[classes.faults.storm]]
at = "1500ms"
fraction = 1.0
"#;
    let report = run_to_end(text, format!("mqtt://{}", gw.mqtt_addr())).await;
    settle(&got).await;
    let c = &report.overall;
    // The storm alone takes all four down once; random drops come on top.
    assert!(c.injected_disconnects >= 4, "{report:#?}");
    assert!(c.reconnects >= 4, "{report:#?}");
    assert_eq!((c.failed, c.dropped), (0, 0), "{report:#?}");
    let counts = no_gaps(&seqs(&got));
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert_eq!(
        counts.values().sum::<u64>(),
        c.sent,
        "{counts:?} {report:#?}"
    );
    // Dropped without DISCONNECT: the gateway published the wills.
    let wills = got
        .lock()
        .expect("lock")
        .iter()
        .filter(|m| m.0.ends_with("/status"))
        .count();
    assert!(wills >= 4, "{wills} wills");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_websocket_and_through_the_fault_proxy() {
    let gw = GatewayHarness::new().start().await;
    let (_client, got) = watch(gw.mqtt_addr(), "ws/#").await;
    let text = r#"
duration = "1500ms"
[[classes]]
name = "wsdev"
count = 2
protocol = 5
[[classes.telemetry]]
topic = "ws/{id}"
interval = "100ms"
qos = 1
payload = "hello from {id}"
"#;
    let report = run_to_end(text, format!("ws://{}/mqtt", gw.http_addr())).await;
    assert_delivered(&report, &got, 2).await;

    let text = r#"
duration = "1500ms"
[faults.proxy]
latency = "30ms"
[[classes]]
name = "slow"
count = 2
[[classes.telemetry]]
topic = "ws/slow/{id}"
interval = "100ms"
qos = 1
payload = { model = "json", fields = { on = true } }
"#;
    let report = run_to_end(text, format!("mqtt://{}", gw.mqtt_addr())).await;
    assert!(
        report
            .proxy
            .as_ref()
            .is_some_and(|p| p.contains("latency 30ms")),
        "{report:#?}"
    );
    assert_eq!(report.overall.sent, report.overall.acked, "{report:#?}");
    // PUBLISH and PUBACK each cross the proxy once: at least two one-way delays.
    let p50 = report.overall.latency_us.as_ref().map_or(0, |l| l.p50);
    assert!(p50 >= 60_000, "ack p50 {p50} µs through a 30 ms proxy");
    gw.stop().await;
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
fn pki(dir: &Path) -> [std::path::PathBuf; 5] {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "device-sim test CA");
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("CA");
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write pem");
        path
    };
    let leaf = |name: &str, sans: &[&str], usage| {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(sans).expect("params");
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &ca).expect("sign");
        (
            write(&format!("{name}.pem"), cert.pem()),
            write(&format!("{name}-key.pem"), key.serialize_pem()),
        )
    };
    let (server, server_key) = leaf(
        "server",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client, client_key) = leaf("device", &["device"], ExtendedKeyUsagePurpose::ClientAuth);
    [
        write("ca.pem", ca.pem()),
        server,
        server_key,
        client,
        client_key,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_to_mosquitto() {
    use e2e_tests::mosquitto::{Mosquitto, TlsFiles};
    let dir = tempfile::tempdir().expect("temp dir");
    let [ca, server, server_key, client, client_key] = pki(dir.path());
    let m = Mosquitto::builder()
        .tls(TlsFiles {
            ca: ca.clone(),
            cert: server,
            key: server_key,
            require_client_cert: true,
        })
        .plain_listener()
        .start()
        .await;
    let (_client, got) = watch(m.plain_addr(), "tls/#").await;
    let scenario = |tls: &str| {
        format!(
            r#"
duration = "1500ms"
[[classes]]
name = "secure"
count = 2
[classes.tls]
{tls}
[classes.reconnect]
initial = "200ms"
[[classes.telemetry]]
topic = "tls/{{id}}"
interval = "100ms"
qos = 1
payload = {{ model = "json", fields = {{ ok = true }} }}
"#
        )
    };
    let broker = format!("mqtts://{}", m.addr());
    let good = format!("ca = {ca:?}\ncert = {client:?}\nkey = {client_key:?}");
    let report = run_to_end(&scenario(&good), broker.clone()).await;
    assert_delivered(&report, &got, 2).await;

    // Without a client certificate the broker refuses the handshake: retried and counted.
    let report = run_to_end(&scenario(&format!("ca = {ca:?}")), broker).await;
    assert_eq!(report.overall.ever_connected, 0, "{report:#?}");
    assert!(report.overall.connect_failures >= 2, "{report:#?}");
}
