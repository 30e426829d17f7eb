//! `bench idle`: opens many idle MQTT connections and reports the broker's resident memory per
//! connection, read from `/proc/PID/status` (`VmRSS`) before and after.
//!
//! Connections use the raw client: CONNECT with a keep-alive, wait for CONNACK, then hold the
//! socket and nothing else (no task, no buffer), so this process stays small. If the hold
//! outlasts half the keep-alive, every connection sends a PINGREQ so the broker keeps it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use clap::Args;
use tokio::time::{Instant, timeout, timeout_at};

use super::mqtt::{Tally, bump, merge};
use super::raw::{ConnectSpec, IdleConnection, RawConnection};
use super::report::{Better, Report};
use super::stats::per_second;
use super::sys::{CpuMeter, ensure_fd_limit, own_rss, vm_rss};
use super::{BenchError, CommonArgs};
use crate::cli::parse_duration;

/// Options of `bench idle`.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Options shared by all scenarios.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Idle connections to open and hold.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub connections: u32,

    /// Connections being opened at the same time.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub concurrency: u32,

    /// Keep-alive announced in each CONNECT.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub keep_alive: Duration,

    /// After the last CONNACK, wait this long before reading the broker's memory.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub settle: Duration,

    /// Bound on one connection's TCP connect plus CONNACK.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: Duration,
}

/// Open files kept free for everything that is not a benchmark connection.
const FD_MARGIN: u64 = 256;

/// Runs the scenario.
pub async fn run(args: &IdleArgs) -> Result<Report, BenchError> {
    ensure_fd_limit(u64::from(args.connections) + FD_MARGIN)?;
    let broker = &args.common.broker;
    let addr = broker.resolve().await?;
    let deadline = Instant::now() + args.common.timeout;
    let keep_alive_secs = u16::try_from(args.keep_alive.as_secs()).unwrap_or(u16::MAX);
    let pid = args.common.pid;
    let rss_before = pid.map(vm_rss).transpose()?;
    let cpu = CpuMeter::start(pid);
    let own_before = own_rss();

    // Open: `concurrency` workers take connection numbers from a shared counter.
    let next = Arc::new(AtomicU32::new(0));
    let prefix = Arc::new(args.common.prefix());
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.min(args.connections.max(1)) {
        let (next, prefix, total) = (next.clone(), prefix.clone(), args.connections);
        let connect_timeout = args.connect_timeout;
        workers.push(tokio::spawn(async move {
            let mut held = Vec::new();
            let mut errors = Tally::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || Instant::now() >= deadline {
                    break;
                }
                let id = format!("{prefix}-idle-{i}");
                let spec = ConnectSpec {
                    client_id: &id,
                    keep_alive_secs,
                    clean_session: true,
                };
                match timeout(connect_timeout, RawConnection::connect(addr, spec)).await {
                    Ok(Ok((conn, _))) => held.push(conn.into_idle()),
                    Ok(Err(e)) => bump(&mut errors, e.kind()),
                    Err(_) => bump(&mut errors, "connect_timeout"),
                }
            }
            (held, errors)
        }));
    }
    let mut held: Vec<IdleConnection> = Vec::with_capacity(args.connections as usize);
    let mut errors = Tally::new();
    for w in workers {
        match w.await {
            Ok((conns, errs)) => {
                held.extend(conns);
                merge(&mut errors, &errs);
            }
            Err(_) => bump(&mut errors, "worker_task_failed"),
        }
    }
    let open_elapsed = started.elapsed();
    let opened = held.len() as u64;

    // Hold for `settle`, pinging when the keep-alive asks for it.
    let settle_end = Instant::now() + args.settle;
    let ping_every = (args.keep_alive / 2).max(Duration::from_secs(1));
    let mut next_ping = started + ping_every;
    while Instant::now() < settle_end {
        let wake = settle_end.min(next_ping);
        if timeout_at(deadline, tokio::time::sleep_until(wake))
            .await
            .is_err()
        {
            break;
        }
        if args.keep_alive > Duration::ZERO && Instant::now() >= next_ping {
            for conn in &held {
                conn.drain();
                conn.ping();
            }
            next_ping += ping_every;
        }
    }
    let alive = held.iter().filter(|c| c.drain()).count() as u64;
    let rss_after = pid.map(vm_rss).transpose()?;
    let own_after = own_rss();
    let cpu = cpu.stop();

    let default_title = format!("idle memory, {} connections", args.connections);
    let mut report = Report::new(
        "idle",
        args.common.title_or(default_title),
        broker.to_string(),
    );
    report.param("connections", args.connections);
    report.param("concurrency", args.concurrency);
    report.param("keep_alive", humantime::format_duration(args.keep_alive));
    if let Some(pid) = pid {
        report.param("pid", pid);
    }
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        let delta = after.saturating_sub(before);
        let per_conn = if alive > 0 {
            delta as f64 / alive as f64
        } else {
            0.0
        };
        report.headline(
            "bytes_per_connection",
            "broker memory per connection",
            per_conn,
            "B",
            Better::Lower,
        );
        report.metric(
            "broker_rss_before",
            "broker RSS before",
            before as f64,
            "B",
            Better::None,
        );
        report.metric(
            "broker_rss_after",
            "broker RSS after",
            after as f64,
            "B",
            Better::None,
        );
    } else {
        report
            .notes
            .push("no --pid: broker memory not measured".into());
    }
    report.headline(
        "connections_held",
        "connections held",
        alive as f64,
        "conn",
        Better::Higher,
    );
    report.metric(
        "connections_opened",
        "connections opened",
        opened as f64,
        "conn",
        Better::None,
    );
    report.metric(
        "dropped_by_broker",
        "closed by the broker while idle",
        (opened - alive) as f64,
        "conn",
        Better::Lower,
    );
    report.metric(
        "open_per_sec",
        "opening rate",
        per_second(opened, open_elapsed),
        "conn/s",
        Better::Higher,
    );
    if let (Some(before), Some(after)) = (own_before, own_after) {
        let per = after.saturating_sub(before) as f64 / opened.max(1) as f64;
        let label = "device-sim memory per connection";
        report.metric("client_bytes_per_connection", label, per, "B", Better::None);
    }
    cpu.add_to(&mut report);
    report.merge_errors(&errors);
    if alive < u64::from(args.connections) {
        report.complete = false;
        report
            .notes
            .push(format!("held {alive} of {} connections", args.connections));
    }
    drop(held);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::bench::Scenario;
    use crate::cli::{Cli, Command};

    #[test]
    fn parses_connections_and_pid() {
        let cli = Cli::try_parse_from([
            "device-sim",
            "bench",
            "idle",
            "--connections",
            "10000",
            "--pid",
            "4242",
            "--keep-alive",
            "30s",
        ]);
        let Ok(Cli {
            command: Command::Bench(b),
            ..
        }) = cli
        else {
            panic!("did not parse: {cli:?}");
        };
        let Scenario::Idle(a) = b.scenario else {
            panic!("not idle");
        };
        assert_eq!(a.connections, 10_000);
        assert_eq!(a.common.pid, Some(4242));
        assert_eq!(a.keep_alive, Duration::from_secs(30));
        assert_eq!(a.concurrency, 100);
    }
}
