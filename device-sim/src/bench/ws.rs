//! `bench ws`: the browser side. An MQTT publisher (the same rumqttc generator as the other
//! scenarios) feeds WebSocket subscribers: the gateway's JSON protocol (`--protocol
//! gateway`), or MQTT over WebSocket (`--protocol mqtt`, e.g. against Mosquitto's
//! `protocol websockets` listener).
//!
//! Modes:
//! - `fanout`: `--clients` subscribers on one topic, `--messages` QoS 1 publishes as fast as
//!   the window allows; deliveries/s from the first publish to the last delivery;
//! - `latency`: one subscriber, `--rate` msg/s for `--duration`; p50/p99 of publish → receive
//!   (the payload carries the send time; same process, monotonic clock);
//! - `idle`: `--clients` subscribed connections that then stay idle (`--protocol sse` for
//!   SSE streams); growth of the broker's VmRSS (`--pid`) per connection.
//!
//! Example: `device-sim bench ws --mode fanout --clients 1000 --url ws://127.0.0.1:8080/ws
//! --broker mqtt://127.0.0.1:1883`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use rumqttc::{Event, Packet};
use tokio::time::{Instant, sleep, timeout_at};

use super::report::{Better, Report};
use super::stats::{LatencySummary, new_histogram, per_second, record_ns};
use super::sys::{ensure_fd_limit, vm_rss};
use super::ws_client::{self, Protocol};
use super::{BenchError, CommonArgs, mqtt};
use crate::cli::parse_duration;

/// What `bench ws` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WsMode {
    /// 1 publisher → N WebSocket subscribers, deliveries/s.
    Fanout,
    /// 1 → 1 latency at a fixed rate.
    Latency,
    /// Broker memory per idle subscribed connection.
    Idle,
}

/// Options of `bench ws`.
#[derive(Debug, Clone, Args)]
pub struct WsArgs {
    /// Options shared by all scenarios (`--broker` is where the MQTT publisher connects).
    #[command(flatten)]
    pub common: CommonArgs,
    /// What to measure.
    #[arg(long, value_enum, default_value = "fanout")]
    pub mode: WsMode,
    /// Subscriber protocol.
    #[arg(long, value_enum, default_value = "gateway")]
    pub protocol: Protocol,
    /// WebSocket URL (`ws://HOST:PORT/ws` for the gateway, `ws://HOST:PORT` for Mosquitto);
    /// for SSE the gateway's `http://HOST:PORT`.
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// Subscribers (fanout, idle).
    #[arg(long, default_value_t = 1000)]
    pub clients: u32,
    /// Messages published (fanout).
    #[arg(long, default_value_t = 200)]
    pub messages: u64,
    /// Publish rate (latency), messages per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// How long to publish (latency).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// QoS of the MQTT publishes (the gateway delivers QoS 1 and 2 only once durable).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Padding bytes in each payload.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Connections opened at once.
    #[arg(long, default_value_t = 50)]
    pub concurrency: u32,
    /// Idle: wait this long after the last connection before reading memory.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub settle: Duration,
}

/// Runs the scenario.
pub async fn run(args: &WsArgs) -> Result<Report, BenchError> {
    ensure_fd_limit(u64::from(args.clients) + 256)?;
    let deadline = Instant::now() + args.common.timeout;
    let prefix = args.common.prefix();
    let topic = format!("{prefix}/ws");
    let clients = if args.mode == WsMode::Latency {
        1
    } else {
        args.clients
    };
    let rss_before = args.common.pid.map(vm_rss).transpose()?;
    let subs = open(args, clients, &topic, &prefix, deadline).await?;
    let title = match args.mode {
        WsMode::Fanout => format!("ws fan-out 1→{clients}"),
        WsMode::Latency => format!("ws latency 1→1 at {} msg/s QoS {}", args.rate, args.qos),
        WsMode::Idle => format!("idle {:?} connections ×{clients}", args.protocol).to_lowercase(),
    };
    let mut report = Report::new("ws", args.common.title_or(title), args.url.clone());
    report.param("protocol", format!("{:?}", args.protocol).to_lowercase());
    report.param("clients", clients);
    report.param("payload", args.payload);
    report.param("qos", args.qos);
    if args.mode == WsMode::Idle {
        sleep(args.settle).await;
        let rss_after = args.common.pid.map(vm_rss).transpose()?;
        report.param("opened", subs.len());
        if let (Some(b), Some(a)) = (rss_before, rss_after) {
            let per = a.saturating_sub(b) as f64 / subs.len().max(1) as f64;
            report.headline(
                "rss_per_conn",
                "memory per connection",
                per,
                "B",
                Better::Lower,
            );
            report.metric(
                "rss_delta",
                "broker RSS growth",
                a.saturating_sub(b) as f64,
                "B",
                Better::Lower,
            );
        }
        report.complete = subs.len() == clients as usize;
        drop(subs);
        return Ok(report);
    }
    // Readers: each counts its deliveries; the latency reader records the histogram.
    let delivered = Arc::new(AtomicU64::new(0));
    let last_ns = Arc::new(AtomicU64::new(0));
    let origin = Instant::now();
    let hist = Arc::new(parking_hist());
    let mut readers = Vec::new();
    for mut s in subs {
        let (delivered, last_ns, hist) = (delivered.clone(), last_ns.clone(), hist.clone());
        let latency = args.mode == WsMode::Latency;
        readers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while s.next_payloads(&mut got).await.is_some() {
                let now = origin.elapsed().as_nanos() as u64;
                delivered.fetch_add(got.len() as u64, Ordering::Relaxed);
                last_ns.store(now, Ordering::Relaxed);
                if latency {
                    for p in got.iter() {
                        if let Some(sent) = sent_ns(p) {
                            if let Ok(mut h) = hist.lock() {
                                record_ns(&mut h, now.saturating_sub(sent));
                            }
                        }
                    }
                }
                got.clear();
            }
        }));
    }
    let make_client = if args.mode == WsMode::Latency {
        mqtt::latency_client
    } else {
        mqtt::client
    };
    let (client, mut el) = make_client(
        mqtt::options(
            &args.common.broker,
            format!("{prefix}-wspub"),
            1 << 20,
            1024,
        ),
        4096,
    );
    mqtt::connect(&mut el, &args.common.broker, deadline).await?;
    let pad = "x".repeat(args.payload);
    let total = match args.mode {
        WsMode::Fanout => args.messages,
        _ => args.rate.saturating_mul(args.duration.as_secs().max(1)),
    };
    let interval = (args.mode == WsMode::Latency)
        .then(|| Duration::from_nanos(1_000_000_000 / args.rate.max(1)));
    let started = origin.elapsed().as_nanos() as u64;
    let publisher = {
        let client = client.clone();
        let topic = topic.clone();
        let qos = mqtt::qos(args.qos);
        tokio::spawn(async move {
            let t0 = Instant::now();
            for i in 0..total {
                if let Some(iv) = interval {
                    tokio::time::sleep_until(t0 + iv * i as u32).await;
                }
                let sent = origin.elapsed().as_nanos() as u64;
                let p = format!(r#"{{"s":{i},"t":{sent},"p":"{pad}"}}"#);
                if client.publish(&topic, qos, false, p).await.is_err() {
                    break;
                }
            }
        })
    };
    let expected = total * u64::from(clients);
    let mut acked = 0u64;
    let mut complete = false;
    while Instant::now() < deadline {
        if delivered.load(Ordering::Relaxed) >= expected {
            complete = true;
            break;
        }
        match timeout_at(Instant::now() + Duration::from_millis(50), el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Err(e)) => return Err(BenchError::Setup(format!("publisher: {e}"))),
            _ => {}
        }
    }
    publisher.abort();
    for r in readers {
        r.abort();
    }
    let got = delivered.load(Ordering::Relaxed);
    let elapsed = Duration::from_nanos(last_ns.load(Ordering::Relaxed).saturating_sub(started));
    report.complete = complete;
    report.param("messages", total);
    report.metric(
        "acked",
        "publishes acknowledged",
        acked as f64,
        "msg",
        Better::None,
    );
    report.metric("delivered", "deliveries", got as f64, "msg", Better::None);
    report.metric(
        "lost",
        "not delivered",
        expected.saturating_sub(got) as f64,
        "msg",
        Better::Lower,
    );
    match args.mode {
        WsMode::Fanout => report.headline(
            "deliveries_per_sec",
            "deliveries/s",
            per_second(got, elapsed),
            "msg/s",
            Better::Higher,
        ),
        _ => {
            let h = hist.lock().map(|h| LatencySummary::from_ns(&h)).ok();
            if let Some(l) = h {
                report.headline("p50", "latency p50", l.p50_us, "µs", Better::Lower);
                report.headline("p99", "latency p99", l.p99_us, "µs", Better::Lower);
                report.metric("max", "latency max", l.max_us, "µs", Better::Lower);
            }
        }
    }
    Ok(report)
}

fn parking_hist() -> std::sync::Mutex<hdrhistogram::Histogram<u64>> {
    std::sync::Mutex::new(new_histogram())
}

/// The send time carried in a payload `{"s":…,"t":NS,…}`.
fn sent_ns(p: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(p).ok()?;
    let i = s.find(r#""t":"#)? + 4;
    let rest = &s[i..];
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

/// Opens and subscribes `n` connections, `concurrency` at a time.
async fn open(
    args: &WsArgs,
    n: u32,
    topic: &str,
    prefix: &str,
    deadline: Instant,
) -> Result<Vec<ws_client::Sub>, BenchError> {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.min(n.max(1)) {
        let (next, url, topic, prefix) = (
            next.clone(),
            args.url.clone(),
            topic.to_owned(),
            prefix.to_owned(),
        );
        let (protocol, idle) = (args.protocol, args.mode == WsMode::Idle);
        workers.push(tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= u64::from(n) || Instant::now() >= deadline {
                    return Ok(held);
                }
                // Idle connections each watch their own topic, as dashboards on devices do.
                let t = if idle {
                    format!("{topic}/{i}")
                } else {
                    topic.clone()
                };
                let id = format!("{prefix}-ws-{i}");
                match timeout_at(deadline, ws_client::connect(protocol, &url, &t, &id)).await {
                    Ok(Ok(s)) => held.push(s),
                    Ok(Err(e)) => return Err(BenchError::Setup(format!("client {i}: {e}"))),
                    Err(_) => {
                        return Err(BenchError::Setup(
                            "connections not open before the timeout".into(),
                        ));
                    }
                }
            }
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        match w.await {
            Ok(Ok(h)) => all.extend(h),
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(BenchError::Setup(format!("worker: {e}"))),
        }
    }
    Ok(all)
}
