//! Hostile input against one in-process gateway: every class of bad input from the
//! foundation issue's "Bad input" item, each on its own raw TCP connection, all at once.
//!
//! Each case must end only its own connection, with the CONNACK return code or MQTT 5
//! DISCONNECT reason code the specification gives. Afterwards clients connected before the
//! attacks still receive, fresh 3.1.1 and 5 clients still connect, subscribe and get a round
//! trip, and nothing in the process panicked.
//!
//! Layout (`hostile_input/`):
//! - `ending.rs`: how a case is written and how the end of a connection is judged.
//! - `handshake.rs`: garbage, a wrong first packet, bad CONNECT fields, invalid client ids.
//! - `packets.rs`: bad packets after CONNECT (topic names, server-only packets, malformed,
//!   truncated and oversized packets, a second CONNECT, MQTT 5 aliases and properties,
//!   forbidden filters, stray acknowledgements).
//! - `topics.rs`: odd but valid topics are delivered; `$SYS` from a client is refused.
//! - `load.rs`: slowloris and flood, with round trips meanwhile.

#[path = "hostile_input/ending.rs"]
mod ending;
#[path = "hostile_input/handshake.rs"]
mod handshake;
#[path = "hostile_input/load.rs"]
mod load;
#[path = "hostile_input/packets.rs"]
mod packets;
#[path = "hostile_input/topics.rs"]
mod topics;

use e2e_tests::GatewayHarness;
use e2e_tests::mqtt::{V4, V5, v4_options, v5_options};
use ending::{Case, case};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::task::JoinSet;

/// The gateway's maximum packet size for this test: small, so oversized packets are cheap.
const MAX_PACKET: u32 = 1024;
/// The gateway's MQTT 5 topic alias maximum for this test.
const ALIAS_MAX: u16 = 10;
/// Patience for a close that follows the offending bytes at once (no timer involved).
const AT_ONCE: Duration = Duration::from_secs(5);
/// Patience for a close driven by a timer of about a second (connect timeout 1 s,
/// keep-alive 1 s × 1.5).
const BY_TIMER: Duration = Duration::from_secs(8);
/// Bound on a round trip while the gateway is under attack.
const ROUND_TRIP: Duration = Duration::from_secs(10);
/// Bound on the whole set of cases; a case still running then counts as a stall.
const ALL_CASES: Duration = Duration::from_secs(90);

fn all_cases(addr: SocketAddr) -> Vec<Case> {
    let mut cases = Vec::new();
    handshake::first_packet(&mut cases, addr);
    handshake::connect_fields(&mut cases, addr);
    handshake::client_ids(&mut cases, addr);
    packets::bad_topic_names(&mut cases, addr);
    packets::wrong_direction(&mut cases, addr);
    packets::malformed(&mut cases, addr);
    packets::v5_properties(&mut cases, addr);
    packets::truncated(&mut cases, addr);
    packets::bad_filters(&mut cases, addr);
    packets::stray_acks(&mut cases, addr);
    cases.push(case(
        "odd topics are delivered",
        topics::odd_topics_are_delivered(addr),
    ));
    cases.push(case(
        "$SYS/x publish (3.1.1)",
        topics::sys_publish_is_refused(addr, false),
    ));
    cases.push(case(
        "$SYS/x publish (5)",
        topics::sys_publish_is_refused(addr, true),
    ));
    cases.push(case("slowloris", load::slowloris(addr)));
    cases.push(case("flood", load::flood(addr)));
    cases
}

/// Runs every case at once; returns the failures, each naming its case.
async fn run_all(cases: Vec<Case>) -> Vec<String> {
    let mut set = JoinSet::new();
    let mut names = HashMap::new();
    for c in cases {
        let handle = set.spawn(c.run);
        names.insert(handle.id(), c.name);
    }
    let mut failures = Vec::new();
    let deadline = tokio::time::Instant::now() + ALL_CASES;
    loop {
        match tokio::time::timeout_at(deadline, set.join_next_with_id()).await {
            Ok(None) => break,
            Ok(Some(Ok((id, Ok(()))))) => {
                names.remove(&id);
            }
            Ok(Some(Ok((id, Err(e))))) => {
                failures.push(format!("{}: {e}", names.remove(&id).unwrap_or_default()));
            }
            Ok(Some(Err(e))) => {
                failures.push(format!(
                    "{}: {e}",
                    names.remove(&e.id()).unwrap_or_default()
                ));
            }
            Err(_) => {
                set.abort_all();
                let stalled = names
                    .values()
                    .map(|n| format!("{n}: still running after {ALL_CASES:?}"));
                failures.extend(stalled);
                break;
            }
        }
    }
    failures
}

/// Every panic in the process (gateway tasks included), as "location: message".
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let at = info.location().map(|l| l.to_string()).unwrap_or_default();
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        if let Ok(mut all) = PANICS.lock() {
            all.push(format!("{at}: {msg}"));
        }
        default(info);
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gateway_survives_every_class_of_hostile_input() {
    use rumqttc::QoS;
    record_panics();
    let gw = GatewayHarness::new()
        .with_config(|c| {
            c.mqtt.max_packet_size = MAX_PACKET;
            c.mqtt.connect_timeout = Duration::from_secs(1);
            c.mqtt.topic_alias_maximum = ALIAS_MAX;
            // Deep topics are valid MQTT; the default limit (128 levels) would refuse the
            // 200-level case.
            c.mqtt.max_topic_levels = 256;
        })
        .start()
        .await;
    let addr = gw.mqtt_addr();

    // Clients connected before the attacks, holding a subscription throughout.
    let (mut keep4, _) = V4::connect(v4_options(addr, "keeper-v4")).await;
    keep4.subscribe("keep/#", QoS::AtLeastOnce).await;
    let (mut keep5, _) = V5::connect(v5_options(addr, "keeper-v5")).await;
    let qos1 = rumqttc::v5::mqttbytes::QoS::AtLeastOnce;
    keep5
        .client
        .subscribe("keep/#", qos1)
        .await
        .expect("subscribe queued");
    keep5.suback().await;

    let cases = all_cases(addr);
    let total = cases.len();
    let mut failures = run_all(cases).await;

    // (b) The clients connected before the attacks still receive.
    let (publ, _) = V4::connect(v4_options(addr, "after-attacks")).await;
    publ.client
        .publish("keep/after", QoS::AtLeastOnce, false, "still here")
        .await
        .expect("queued");
    match keep4.try_next_publish(ROUND_TRIP).await {
        Some(p) if p.topic == "keep/after" && p.payload[..] == b"still here"[..] => {}
        other => failures.push(format!(
            "3.1.1 client connected before the attacks got {other:?}"
        )),
    }
    match keep5.try_next_publish(ROUND_TRIP).await {
        Some(p) if p.topic[..] == b"keep/after"[..] && p.payload[..] == b"still here"[..] => {}
        other => failures.push(format!(
            "MQTT 5 client connected before the attacks got {other:?}"
        )),
    }
    // (a) Fresh clients connect, subscribe and get a round trip.
    for result in [
        load::round_trip_v4(addr, "fresh-v4").await,
        load::round_trip_v5(addr, "fresh-v5").await,
    ] {
        if let Err(e) = result {
            failures.push(e);
        }
    }
    // Nothing panicked, apart from what the codec's guard caught inside rumqttc.
    let panics = PANICS.lock().map(|p| p.clone()).unwrap_or_default();
    for p in panics.iter().filter(|p| !p.contains("rumqttc")) {
        failures.push(format!("panic in the process: {p}"));
    }
    let caught = gateway::mqtt::codec::MqttCodec::panics_caught();
    if caught > 0 {
        eprintln!("the codec guard caught {caught} panic(s) inside rumqttc");
    }
    publ.disconnect().await;
    keep4.disconnect().await;
    keep5.disconnect().await;
    gw.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
