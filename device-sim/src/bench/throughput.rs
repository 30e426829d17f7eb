//! `bench throughput`: N publishers → M subscribers, every subscriber receiving every message.
//!
//! Topic layout: all publishers share `bench/<prefix>/tp/all`, or with `--topic-per-publisher`
//! publisher *i* uses `bench/<prefix>/tp/<i>` and subscribers use the wildcard
//! `bench/<prefix>/tp/+`. That expresses 1→1, fan-in (100→1 through a wildcard) and fan-out
//! (1→100).
//!
//! Subscribers connect and subscribe first, then publishers connect, then all publishers start
//! together. At QoS 0 the clients are raw connections: a publisher writes its PUBLISH, encoded
//! once, 64 KiB at a time as fast as the socket takes it, and a subscriber counts PUBLISH
//! frames without decoding them (rumqttc saturated the load generator's core before a fast
//! broker). At QoS 1 and 2 the clients are rumqttc's: a publisher keeps `--inflight`
//! publishes unacknowledged. The run ends when every
//! subscriber has what it expects, when deliveries stop for `--settle`, or at `--timeout`;
//! whatever is missing is reported as loss.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::watch;
use tokio::time::Instant;

use super::mqtt::{self, Tally, bump};
use super::pubsub::{
    Deliveries, PubOutcome, PublisherSpec, SubscriberSpec, await_ready, spawn_publisher,
    spawn_raw_publisher, spawn_raw_subscriber, spawn_subscriber,
};
use super::report::{Better, Report};
use super::stats::{extra, loss, per_second};
use super::sys::{CpuMeter, CpuUsage};
use super::{BenchError, CommonArgs};
use crate::cli::parse_duration;

/// Options of `bench throughput`.
#[derive(Debug, Clone, Args)]
pub struct ThroughputArgs {
    /// Options shared by all scenarios.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Publishing clients.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub publishers: u32,

    /// Subscribing clients; each one receives every message published.
    #[arg(long, default_value_t = 1, value_name = "M")]
    pub subscribers: u32,

    /// QoS of the publishes and of the subscriptions: 0 or 1.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,

    /// Payload size in bytes.
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    pub payload: usize,

    /// Messages each publisher sends (ignored with --duration).
    #[arg(long, default_value_t = 100_000, value_name = "K")]
    pub messages: u64,

    /// Publish for this long instead of a fixed number of messages.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// Give each publisher its own topic and make subscribers use a `+` wildcard (fan-in).
    #[arg(long)]
    pub topic_per_publisher: bool,

    /// QoS 1 publishes each publisher keeps in flight (sent, not yet acknowledged).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..), value_name = "N")]
    pub inflight: u16,

    /// Requests each publisher may queue ahead of its connection (rumqttc channel capacity).
    /// Default: 10,000 shared by all publishers, at least 100 each.
    #[arg(long, value_name = "N")]
    pub queue: Option<usize>,

    /// Once publishing is over, stop waiting after this long without a new delivery.
    #[arg(long, default_value = "3s", value_parser = parse_duration, value_name = "DURATION")]
    pub settle: Duration,
}

/// Publish requests queued across all publishers by default: deep enough that a publisher
/// never waits for its own task, small enough that 100 publishers stay a few megabytes.
const DEFAULT_QUEUE_TOTAL: usize = 10_000;

/// Smallest default queue per publisher.
const MIN_QUEUE: usize = 100;

/// Largest payload the scenario accepts.
const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// Everything the run measured, before it becomes a report.
struct Measured {
    outcomes: Vec<PubOutcome>,
    /// Deliveries per subscriber.
    received: Vec<u64>,
    /// Publishing: from the start to the last write (QoS 0) or PUBACK (QoS 1).
    publish_elapsed: Duration,
    /// Delivering: from the start to the last delivery.
    deliver_elapsed: Duration,
    cpu: CpuUsage,
    timed_out: bool,
    errors: Tally,
}

/// Runs the scenario.
pub async fn run(args: &ThroughputArgs) -> Result<Report, BenchError> {
    if args.publishers == 0 {
        return Err(BenchError::InvalidArgs(
            "--publishers must be at least 1".into(),
        ));
    }
    if args.payload > MAX_PAYLOAD {
        return Err(BenchError::InvalidArgs(format!(
            "--payload {} is above the {MAX_PAYLOAD}-byte limit",
            args.payload
        )));
    }
    let broker = &args.common.broker;
    let deadline = Instant::now() + args.common.timeout;
    let prefix = args.common.prefix();
    let topic_base = format!("bench/{prefix}/tp");
    let topic_of = |i: u32| match args.topic_per_publisher {
        true => format!("{topic_base}/{i}"),
        false => format!("{topic_base}/all"),
    };
    let filter = match args.topic_per_publisher {
        true => format!("{topic_base}/+"),
        false => topic_of(0),
    };
    let qos = mqtt::qos(args.qos);
    // QoS 0 runs on raw connections (publishes encoded once, deliveries counted undecoded):
    // with rumqttc the load generator's core saturated before a fast broker's did.
    let raw = args.qos == 0;
    let max_packet = args.payload + topic_base.len() + 64;
    let base = Instant::now();
    let mut errors = Tally::new();

    // Subscribers first, each confirmed by its SUBACK.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (mut sub_tasks, mut ready, mut counters) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.subscribers {
        let spec = SubscriberSpec {
            broker: broker.clone(),
            client_id: format!("{prefix}-sub-{i}"),
            filter: filter.clone(),
            qos,
            max_packet,
            base,
            deadline,
        };
        let (task, ready_rx, counter) = if raw {
            spawn_raw_subscriber(spec, stop_rx.clone())
        } else {
            spawn_subscriber(spec, stop_rx.clone())
        };
        sub_tasks.push(task);
        ready.push(ready_rx);
        counters.push(counter);
    }
    await_ready(ready).await?;

    // Publishers: all connected, then released together.
    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    let payload: Arc<[u8]> = vec![b'x'; args.payload].into();
    let queue = args
        .queue
        .unwrap_or(DEFAULT_QUEUE_TOTAL / args.publishers as usize)
        .max(MIN_QUEUE);
    let (mut pub_tasks, mut ready) = (Vec::new(), Vec::new());
    for i in 0..args.publishers {
        let spec = PublisherSpec {
            broker: broker.clone(),
            client_id: format!("{prefix}-pub-{i}"),
            topic: topic_of(i),
            qos,
            payload: payload.clone(),
            messages: args.messages,
            duration: args.duration,
            inflight: args.inflight,
            queue,
            max_packet,
            deadline,
        };
        let (task, ready_rx) = if raw {
            spawn_raw_publisher(spec, start_rx.clone())
        } else {
            spawn_publisher(spec, start_rx.clone())
        };
        pub_tasks.push(task);
        ready.push(ready_rx);
    }
    await_ready(ready).await?;
    let cpu = CpuMeter::start(args.common.pid);
    let t0 = Instant::now();
    let _ = start_tx.send(Some(t0));

    let mut outcomes = Vec::new();
    for task in pub_tasks {
        match task.await {
            Ok(outcome) => outcomes.push(outcome),
            Err(_) => bump(&mut errors, "publisher_task_failed"),
        }
    }
    let sent: u64 = outcomes.iter().map(|o| o.sent).sum();
    let publish_end = outcomes
        .iter()
        .filter_map(|o| o.done_at)
        .max()
        .unwrap_or(t0);
    let window = Window {
        publish_end,
        settle: args.settle,
        deadline,
    };
    let (complete, cpu) = wait_for_deliveries(&counters, sent, window, &cpu).await;
    let timed_out = !complete;
    let _ = stop_tx.send(true);
    for task in sub_tasks {
        match task.await {
            Ok(errs) => mqtt::merge(&mut errors, &errs),
            Err(_) => bump(&mut errors, "subscriber_task_failed"),
        }
    }

    let last_delivery = counters
        .iter()
        .map(|c| base + Duration::from_nanos(c.last_ns()))
        .max()
        .filter(|at| *at > t0)
        .unwrap_or(t0);
    let measured = Measured {
        outcomes,
        received: counters.iter().map(|c| c.count()).collect(),
        publish_elapsed: publish_end.duration_since(t0),
        deliver_elapsed: last_delivery.duration_since(t0),
        cpu,
        timed_out,
        errors,
    };
    Ok(build_report(args, measured))
}

/// When waiting for deliveries ends.
struct Window {
    /// Publishing ended here; the settle time counts from here at the earliest.
    publish_end: Instant,
    /// Stop after this long without a new delivery.
    settle: Duration,
    /// Hard end of the run.
    deadline: Instant,
}

/// Waits until every subscriber has `expected` deliveries, or none arrived for `settle` after
/// publishing ended. Returns false when the deadline came first, and the CPU use up to the last
/// delivery (sampled at most every 20 ms), so the settle wait does not dilute it.
async fn wait_for_deliveries(
    counters: &[Arc<Deliveries>],
    expected: u64,
    window: Window,
    cpu: &CpuMeter,
) -> (bool, CpuUsage) {
    let mut last_total = 0;
    let mut last_progress = window.publish_end;
    let mut usage = cpu.stop();
    let mut sampled = Instant::now();
    loop {
        if counters.iter().all(|c| c.count() >= expected) {
            return (true, cpu.stop());
        }
        let total: u64 = counters.iter().map(|c| c.count()).sum();
        let now = Instant::now();
        if total != last_total {
            last_total = total;
            last_progress = now.max(window.publish_end);
            if now.duration_since(sampled) >= Duration::from_millis(20) {
                usage = cpu.stop();
                sampled = now;
            }
        }
        if now >= window.deadline {
            return (false, usage);
        }
        if now.duration_since(last_progress) >= window.settle {
            return (true, usage);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn build_report(args: &ThroughputArgs, m: Measured) -> Report {
    let sent: u64 = m.outcomes.iter().map(|o| o.sent).sum();
    let acked: u64 = m.outcomes.iter().map(|o| o.acked).sum();
    let delivered: u64 = m.received.iter().sum();
    let published = if args.qos == 0 { sent } else { acked };
    let default_title = format!(
        "{}→{} QoS {} {} B",
        args.publishers, args.subscribers, args.qos, args.payload
    );
    let title = args.common.title_or(default_title);
    let mut r = Report::new("throughput", title, args.common.broker.to_string());
    r.param("publishers", args.publishers);
    r.param("subscribers", args.subscribers);
    r.param("qos", args.qos);
    r.param("payload", args.payload);
    match args.duration {
        Some(d) => r.param("duration", humantime::format_duration(d)),
        None => r.param("messages_per_publisher", args.messages),
    }
    r.param("topic_per_publisher", args.topic_per_publisher);
    r.param("clients", if args.qos == 0 { "raw" } else { "rumqttc" });
    if args.qos == 1 {
        r.param("inflight", args.inflight);
    }
    let label = match args.qos {
        0 => "published (written)",
        _ => "published (acked)",
    };
    let publish_rate = per_second(published, m.publish_elapsed);
    r.headline(
        "published_per_sec",
        label,
        publish_rate,
        "msg/s",
        Better::Higher,
    );
    if args.subscribers > 0 {
        let rate = per_second(delivered, m.deliver_elapsed);
        let lost = loss(sent, &m.received) as f64;
        let dup = extra(sent, &m.received) as f64;
        r.headline(
            "delivered_per_sec",
            "delivered (all subscribers)",
            rate,
            "msg/s",
            Better::Higher,
        );
        r.headline("loss", "lost deliveries", lost, "msg", Better::Lower);
        r.metric("duplicates", "extra deliveries", dup, "msg", Better::Lower);
    }
    r.metric("sent", "messages sent", sent as f64, "msg", Better::None);
    if args.qos == 1 {
        let unacked = sent.saturating_sub(acked) as f64;
        r.metric(
            "unacked",
            "sent but not acked",
            unacked,
            "msg",
            Better::Lower,
        );
    }
    let expected = (sent * u64::from(args.subscribers)) as f64;
    r.metric(
        "expected_deliveries",
        "deliveries expected",
        expected,
        "msg",
        Better::None,
    );
    r.metric(
        "delivered",
        "deliveries received",
        delivered as f64,
        "msg",
        Better::None,
    );
    let (p, d) = (
        m.publish_elapsed.as_secs_f64(),
        m.deliver_elapsed.as_secs_f64(),
    );
    r.metric("publish_secs", "publishing took", p, "s", Better::None);
    r.metric("deliver_secs", "last delivery after", d, "s", Better::None);
    m.cpu.add_to(&mut r);
    for o in &m.outcomes {
        r.merge_errors(&o.errors);
    }
    r.merge_errors(&m.errors);
    if m.timed_out {
        r.complete = false;
        r.notes
            .push("--timeout reached while waiting for deliveries".into());
    }
    let all_publishers = m.outcomes.len() == args.publishers as usize;
    if !all_publishers || !r.errors.is_empty() {
        r.complete = false;
    }
    r
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::bench::Scenario;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<ThroughputArgs, String> {
        let mut all = vec!["device-sim", "bench", "throughput"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).map_err(|e| e.to_string())?.command {
            Command::Bench(b) => match b.scenario {
                Scenario::Throughput(t) => Ok(t),
                other => Err(format!("parsed as {other:?}")),
            },
            other => Err(format!("parsed as {other:?}")),
        }
    }

    #[test]
    fn defaults_are_one_to_one_qos0() -> Result<(), String> {
        let a = parse(&[])?;
        assert_eq!(
            (a.publishers, a.subscribers, a.qos, a.payload),
            (1, 1, 0, 100)
        );
        assert_eq!(a.messages, 100_000);
        assert!(a.duration.is_none());
        assert!(!a.topic_per_publisher);
        Ok(())
    }

    #[test]
    fn fan_in_and_duration() -> Result<(), String> {
        let a = parse(&[
            "--publishers",
            "100",
            "--subscribers",
            "1",
            "--topic-per-publisher",
            "--qos",
            "1",
            "--inflight",
            "200",
            "--duration",
            "5s",
        ])?;
        assert_eq!(a.publishers, 100);
        assert!(a.topic_per_publisher);
        assert_eq!(a.inflight, 200);
        assert_eq!(a.duration, Some(Duration::from_secs(5)));
        Ok(())
    }

    #[test]
    fn rejects_what_it_cannot_do() {
        assert!(parse(&["--qos", "2"]).is_err());
        assert!(parse(&["--inflight", "0"]).is_err());
        assert!(parse(&["--messages", "10", "--duration", "1s", "--bogus"]).is_err());
    }

    fn measured(received: Vec<u64>, errors: Tally) -> Measured {
        let outcome = |sent, acked| PubOutcome {
            sent,
            acked,
            done_at: None,
            errors: Tally::new(),
        };
        Measured {
            outcomes: vec![outcome(60, 60), outcome(40, 39)],
            received,
            publish_elapsed: Duration::from_millis(500),
            deliver_elapsed: Duration::from_secs(2),
            cpu: CpuUsage {
                client_pct: None,
                broker_pct: None,
                client_rss: None,
            },
            timed_out: false,
            errors,
        }
    }

    fn metric(r: &Report, key: &str) -> f64 {
        r.get(key).map_or(f64::NAN, |m| m.value)
    }

    #[test]
    fn report_counts_rates_and_loss_per_subscriber() -> Result<(), String> {
        let args = parse(&["--publishers", "2", "--subscribers", "2", "--qos", "1"])?;
        // 100 sent; one subscriber got 90, the other 103 (3 duplicates).
        let r = build_report(&args, measured(vec![90, 103], Tally::new()));
        assert_eq!(metric(&r, "published_per_sec"), 198.0); // 99 acked in 0.5 s
        assert_eq!(metric(&r, "delivered_per_sec"), 96.5); // 193 deliveries in 2 s
        assert_eq!(metric(&r, "loss"), 10.0);
        assert_eq!(metric(&r, "duplicates"), 3.0);
        assert_eq!(metric(&r, "unacked"), 1.0);
        assert_eq!(metric(&r, "expected_deliveries"), 200.0);
        assert!(r.complete);
        assert_eq!(r.title, "2→2 QoS 1 100 B");
        let headlines: Vec<&str> = r
            .metrics
            .iter()
            .filter(|m| m.headline)
            .map(|m| m.key.as_str())
            .collect();
        assert_eq!(
            headlines,
            ["published_per_sec", "delivered_per_sec", "loss"]
        );
        Ok(())
    }

    #[test]
    fn errors_make_a_report_incomplete() -> Result<(), String> {
        let args = parse(&[])?;
        let errors = Tally::from([("closed_by_broker".to_string(), 1)]);
        let r = build_report(&args, measured(vec![100], errors));
        assert!(!r.complete);
        assert_eq!(r.errors.get("closed_by_broker"), Some(&1));
        // QoS 0: published counts writes, not acks.
        assert_eq!(metric(&r, "published_per_sec"), 200.0);
        Ok(())
    }
}
