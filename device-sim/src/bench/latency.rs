//! `bench latency`: one publisher → one subscriber at a fixed rate; end-to-end latency
//! percentiles.
//!
//! Each payload starts with a probe: the sequence number and the send time, both big-endian
//! u64, the time in nanoseconds since an `Instant` shared by publisher and subscriber (same
//! process, monotonic clock). The send time is taken just before the publish is handed to the
//! client, so client queueing counts. Messages sent during `--warmup` are delivered and checked
//! but left out of the percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, timeout_at};

use super::mqtt::{self, Tally, bump};
use super::report::{Better, Report};
use super::stats::{LatencySummary, new_histogram, per_second, record_ns};
use super::sys::CpuMeter;
use super::{BenchError, CommonArgs};
use crate::cli::parse_duration;

/// Options of `bench latency`.
#[derive(Debug, Clone, Args)]
pub struct LatencyArgs {
    /// Options shared by all scenarios.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Messages per second.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: u32,

    /// How long to publish, warm-up included.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Duration,

    /// Leading part of the run left out of the percentiles.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub warmup: Duration,

    /// QoS of the publishes and of the subscription: 0 or 1.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,

    /// Payload size in bytes (at least 16: sequence number and send time).
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    pub payload: usize,

    /// Once publishing is over, stop waiting after this long without a new delivery.
    #[arg(long, default_value = "3s", value_parser = parse_duration, value_name = "DURATION")]
    pub settle: Duration,
}

/// Most messages one run may send (the subscriber keeps one bit per message).
const MAX_MESSAGES: u64 = 100_000_000;

/// Bytes of the probe at the start of each payload.
pub const PROBE_LEN: usize = 16;

/// Builds a payload of `size` bytes (at least [`PROBE_LEN`]) carrying `seq` and `sent_ns`.
pub fn encode_probe(seq: u64, sent_ns: u64, size: usize) -> Vec<u8> {
    let mut payload = Vec::with_capacity(size.max(PROBE_LEN));
    payload.extend_from_slice(&seq.to_be_bytes());
    payload.extend_from_slice(&sent_ns.to_be_bytes());
    payload.resize(size.max(PROBE_LEN), b'x');
    payload
}

/// Reads `(seq, sent_ns)` back from a payload; `None` when it is too short.
pub fn decode_probe(payload: &[u8]) -> Option<(u64, u64)> {
    let seq = payload.get(0..8)?.try_into().ok()?;
    let sent = payload.get(8..16)?.try_into().ok()?;
    Some((u64::from_be_bytes(seq), u64::from_be_bytes(sent)))
}

/// What the subscriber saw.
struct Received {
    hist: Histogram<u64>,
    unique: u64,
    duplicates: u64,
    reordered: u64,
    malformed: u64,
    errors: Tally,
}

/// Runs the scenario.
pub async fn run(args: &LatencyArgs) -> Result<Report, BenchError> {
    if args.payload < PROBE_LEN {
        return Err(BenchError::InvalidArgs(format!(
            "--payload must be at least {PROBE_LEN} bytes (sequence number and send time)"
        )));
    }
    if args.warmup >= args.duration {
        return Err(BenchError::InvalidArgs(
            "--warmup must be shorter than --duration".into(),
        ));
    }
    let broker = &args.common.broker;
    let deadline = Instant::now() + args.common.timeout;
    let prefix = args.common.prefix();
    let topic = format!("bench/{prefix}/lat");
    let qos = mqtt::qos(args.qos);
    let max_packet = args.payload + topic.len() + 64;
    let rate = u64::from(args.rate);
    let total = (args.duration.as_secs_f64() * rate as f64).round() as u64;
    let warmup_count = (args.warmup.as_secs_f64() * rate as f64).round() as u64;
    if total > MAX_MESSAGES {
        return Err(BenchError::InvalidArgs(format!(
            "--rate × --duration is {total} messages; the limit is {MAX_MESSAGES}"
        )));
    }
    let base = Instant::now();

    let opts = mqtt::options(broker, format!("{prefix}-lat-sub"), max_packet, 100);
    let (sub_client, mut sub_loop) = mqtt::latency_client(opts, 16);
    mqtt::connect(&mut sub_loop, broker, deadline).await?;
    mqtt::subscribe(&sub_client, &mut sub_loop, &topic, qos, deadline).await?;

    let queue = (args.rate as usize).clamp(1000, 100_000);
    let opts = mqtt::options(broker, format!("{prefix}-lat-pub"), max_packet, 1000);
    let (pub_client, mut pub_loop) = mqtt::latency_client(opts, queue);
    mqtt::connect(&mut pub_loop, broker, deadline).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let unique = Arc::new(AtomicU64::new(0));
    let sub_task = tokio::spawn(subscribe_loop(
        sub_client,
        sub_loop,
        stop_rx.clone(),
        SubPlan {
            base,
            total,
            warmup_count,
            unique: unique.clone(),
        },
    ));
    let pub_task = tokio::spawn(pump(pub_client.clone(), pub_loop, stop_rx));

    let cpu = CpuMeter::start(args.common.pid);
    // The ticker: at each tick, send every message due by now.
    let t0 = Instant::now();
    let period = Duration::from_secs_f64((1.0 / rate as f64).max(0.001));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut sent: u64 = 0;
    let mut timed_out = false;
    while sent < total {
        if timeout_at(deadline, ticker.tick()).await.is_err() {
            timed_out = true;
            break;
        }
        let due = ((t0.elapsed().as_nanos() * u128::from(rate)) / 1_000_000_000) as u64;
        while sent < due.min(total) {
            let payload = encode_probe(sent, base.elapsed().as_nanos() as u64, args.payload);
            match timeout_at(
                deadline,
                pub_client.publish(topic.as_str(), qos, false, payload),
            )
            .await
            {
                Ok(Ok(())) => sent += 1,
                Ok(Err(_)) => break,
                Err(_) => {
                    timed_out = true;
                    break;
                }
            }
        }
        if timed_out || pub_task.is_finished() {
            break;
        }
    }
    let publish_elapsed = t0.elapsed();

    // Wait for the subscriber: everything sent, or no progress for `settle`, or the timeout.
    let mut last = unique.load(Ordering::Relaxed);
    let mut last_progress = Instant::now();
    while last < sent {
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            break;
        }
        if now.duration_since(last_progress) >= args.settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        let current = unique.load(Ordering::Relaxed);
        if current != last {
            last = current;
            last_progress = Instant::now();
        }
    }
    let cpu = cpu.stop();
    let _ = stop_tx.send(true);
    let pub_errors = pub_task
        .await
        .unwrap_or_else(|_| Tally::from([("publisher_task_failed".to_string(), 1)]));
    let received = match sub_task.await {
        Ok(r) => r,
        Err(_) => return Err(BenchError::Setup("the subscriber task failed".into())),
    };

    let s = LatencySummary::from_ns(&received.hist);
    let default_title = format!("latency QoS {} @ {} msg/s", args.qos, args.rate);
    let mut report = Report::new(
        "latency",
        args.common.title_or(default_title),
        broker.to_string(),
    );
    report.param("rate", args.rate);
    report.param("duration", humantime::format_duration(args.duration));
    report.param("warmup", humantime::format_duration(args.warmup));
    report.param("qos", args.qos);
    report.param("payload", args.payload);
    report.headline("p50_us", "p50", s.p50_us, "µs", Better::Lower);
    report.metric("p90_us", "p90", s.p90_us, "µs", Better::Lower);
    report.headline("p99_us", "p99", s.p99_us, "µs", Better::Lower);
    report.metric("p999_us", "p99.9", s.p999_us, "µs", Better::Lower);
    report.metric("max_us", "max", s.max_us, "µs", Better::Lower);
    report.metric("mean_us", "mean", s.mean_us, "µs", Better::Lower);
    report.metric("min_us", "min", s.min_us, "µs", Better::Lower);
    report.metric(
        "samples",
        "samples (after warm-up)",
        s.count as f64,
        "msg",
        Better::None,
    );
    report.metric("sent", "messages sent", sent as f64, "msg", Better::None);
    report.metric(
        "sent_per_sec",
        "achieved rate",
        per_second(sent, publish_elapsed),
        "msg/s",
        Better::None,
    );
    report.headline(
        "loss",
        "lost",
        sent.saturating_sub(received.unique) as f64,
        "msg",
        Better::Lower,
    );
    report.metric(
        "duplicates",
        "duplicates",
        received.duplicates as f64,
        "msg",
        Better::Lower,
    );
    report.metric(
        "reordered",
        "out of order",
        received.reordered as f64,
        "msg",
        Better::Lower,
    );
    report.add_errors("malformed_probe", received.malformed);
    cpu.add_to(&mut report);
    report.merge_errors(&received.errors);
    report.merge_errors(&pub_errors);
    if timed_out || sent < total {
        report.complete = false;
        report
            .notes
            .push(format!("sent {sent} of {total} messages before stopping"));
    }
    Ok(report)
}

/// What the subscriber needs to judge deliveries.
struct SubPlan {
    base: Instant,
    total: u64,
    warmup_count: u64,
    unique: Arc<AtomicU64>,
}

/// Receives probes until stopped, recording latency, duplicates and reordering.
async fn subscribe_loop(
    client: AsyncClient,
    mut eventloop: EventLoop,
    mut stop: watch::Receiver<bool>,
    plan: SubPlan,
) -> Received {
    let mut r = Received {
        hist: new_histogram(),
        unique: 0,
        duplicates: 0,
        reordered: 0,
        malformed: 0,
        errors: Tally::new(),
    };
    let mut seen = vec![0u64; plan.total.div_ceil(64) as usize];
    let mut next_expected: u64 = 0;
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.changed() => break,
            event = eventloop.poll() => event,
        };
        let publish = match event {
            Ok(Event::Incoming(Packet::Publish(p))) => p,
            Ok(_) => continue,
            Err(e) => {
                bump(&mut r.errors, mqtt::error_kind(&e));
                break;
            }
        };
        let now_ns = plan.base.elapsed().as_nanos() as u64;
        let Some((seq, sent_ns)) = decode_probe(&publish.payload).filter(|(s, _)| *s < plan.total)
        else {
            r.malformed += 1;
            continue;
        };
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if seen[word] & bit != 0 {
            r.duplicates += 1;
            continue;
        }
        seen[word] |= bit;
        r.unique += 1;
        plan.unique.store(r.unique, Ordering::Relaxed);
        if seq < next_expected {
            r.reordered += 1;
        }
        next_expected = next_expected.max(seq + 1);
        if seq >= plan.warmup_count {
            record_ns(&mut r.hist, now_ns.saturating_sub(sent_ns));
        }
    }
    mqtt::disconnect(&client, &mut eventloop).await;
    r
}

/// Drives the publisher's event loop until stopped; returns its errors.
async fn pump(
    client: AsyncClient,
    mut eventloop: EventLoop,
    mut stop: watch::Receiver<bool>,
) -> Tally {
    let mut errors = Tally::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            event = eventloop.poll() => match event {
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    bump(&mut errors, mqtt::error_kind(&e));
                    break;
                }
            },
        }
    }
    mqtt::disconnect(&client, &mut eventloop).await;
    errors
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::bench::Scenario;
    use crate::cli::{Cli, Command};

    #[test]
    fn probe_round_trips() {
        let p = encode_probe(42, 123_456_789, 100);
        assert_eq!(p.len(), 100);
        assert_eq!(decode_probe(&p), Some((42, 123_456_789)));
        assert_eq!(encode_probe(1, 2, 3).len(), PROBE_LEN);
        assert_eq!(decode_probe(&p[..15]), None);
    }

    #[test]
    fn parses_rate_duration_and_qos() {
        let cli = Cli::try_parse_from([
            "device-sim",
            "bench",
            "latency",
            "--rate",
            "1000",
            "--duration",
            "10s",
            "--qos",
            "1",
            "--warmup",
            "2s",
        ]);
        let Ok(Cli {
            command: Command::Bench(b),
            ..
        }) = cli
        else {
            panic!("did not parse: {cli:?}");
        };
        let Scenario::Latency(a) = b.scenario else {
            panic!("not latency");
        };
        assert_eq!((a.rate, a.qos, a.payload), (1000, 1, 100));
        assert_eq!(a.duration, Duration::from_secs(10));
        assert_eq!(a.warmup, Duration::from_secs(2));
        assert!(Cli::try_parse_from(["device-sim", "bench", "latency", "--rate", "0"]).is_err());
    }
}
