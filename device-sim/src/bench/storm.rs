//! `bench reconnect-storm`: many clients connect at once (CONNECT → CONNACK → DISCONNECT),
//! `--concurrency` at a time; reports connections per second, connect-time percentiles and
//! failures.
//!
//! With `--persistent` the first wave asks for persistent sessions (clean session off) and
//! subscribes each client to its own topic, so the broker has session state to keep; a second
//! wave then reconnects every client with clean session off and counts how many sessions were
//! resumed (CONNACK session-present).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use clap::Args;
use hdrhistogram::Histogram;
use rumqttc::QoS;
use tokio::time::{Instant, timeout};

use super::mqtt::{Tally, bump, merge};
use super::raw::{ConnectSpec, RawConnection, RawError};
use super::report::{Better, Report};
use super::stats::{LatencySummary, new_histogram, per_second, record_ns};
use super::sys::{CpuMeter, ensure_fd_limit};
use super::{BenchError, CommonArgs};
use crate::cli::parse_duration;

/// Options of `bench reconnect-storm`.
#[derive(Debug, Clone, Args)]
pub struct StormArgs {
    /// Options shared by all scenarios.
    #[command(flatten)]
    pub common: CommonArgs,

    /// Clients in the storm.
    #[arg(long, default_value_t = 5000, value_name = "N")]
    pub clients: u32,

    /// Connections in progress at the same time.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub concurrency: u32,

    /// Use persistent sessions, then run a second wave that resumes them all.
    #[arg(long)]
    pub persistent: bool,

    /// Bound on one client's exchange (TCP connect, CONNACK, SUBACK).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: Duration,
}

/// What one wave does with each client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wave {
    /// Connect with a clean session, disconnect.
    Clean,
    /// Connect with clean session off, subscribe to the client's own topic, disconnect.
    CreateSessions,
    /// Reconnect with clean session off (expecting the session back), disconnect.
    ResumeSessions,
}

/// What one wave measured.
struct WaveResult {
    ok: u64,
    session_present: u64,
    elapsed: Duration,
    /// CONNACK times in nanoseconds, one per successful client (a histogram per worker would
    /// cost hundreds of kilobytes each).
    connect_ns: Vec<u64>,
    errors: Tally,
}

impl WaveResult {
    fn empty() -> Self {
        Self {
            ok: 0,
            session_present: 0,
            elapsed: Duration::ZERO,
            connect_ns: Vec::new(),
            errors: Tally::new(),
        }
    }

    fn connect_time(&self) -> Histogram<u64> {
        let mut hist = new_histogram();
        for ns in &self.connect_ns {
            record_ns(&mut hist, *ns);
        }
        hist
    }
}

/// Runs the scenario.
pub async fn run(args: &StormArgs) -> Result<Report, BenchError> {
    ensure_fd_limit(u64::from(args.concurrency) + 256)?;
    let broker = &args.common.broker;
    let addr = broker.resolve().await?;
    let deadline = Instant::now() + args.common.timeout;
    let prefix = args.common.prefix();

    let cpu = CpuMeter::start(args.common.pid);
    let first_wave = if args.persistent {
        Wave::CreateSessions
    } else {
        Wave::Clean
    };
    let first = wave(addr, &prefix, args, first_wave, deadline).await;
    let second = if args.persistent {
        Some(wave(addr, &prefix, args, Wave::ResumeSessions, deadline).await)
    } else {
        None
    };

    let default_title = format!("reconnect storm, {} clients", args.clients);
    let mut report = Report::new(
        "reconnect-storm",
        args.common.title_or(default_title),
        broker.to_string(),
    );
    report.param("clients", args.clients);
    report.param("concurrency", args.concurrency);
    report.param("persistent", args.persistent);
    add_wave(&mut report, "", "", &first);
    if let Some(second) = &second {
        add_wave(&mut report, "resume_", "resume: ", second);
        report.headline(
            "resume_session_present",
            "resume: sessions found",
            second.session_present as f64,
            "conn",
            Better::Higher,
        );
    }
    cpu.stop().add_to(&mut report);
    for w in std::iter::once(&first).chain(second.as_ref()) {
        if w.ok < u64::from(args.clients) {
            report.complete = false;
        }
    }
    if Instant::now() >= deadline {
        report
            .notes
            .push("--timeout reached: later clients were not attempted".into());
    }
    Ok(report)
}

fn add_wave(report: &mut Report, key: &str, label: &str, w: &WaveResult) {
    let s = LatencySummary::from_ns(&w.connect_time());
    let rate = per_second(w.ok, w.elapsed);
    report.headline(
        &format!("{key}connections_per_sec"),
        &format!("{label}connections/s"),
        rate,
        "conn/s",
        Better::Higher,
    );
    report.headline(
        &format!("{key}failures"),
        &format!("{label}failures"),
        w.errors.values().sum::<u64>() as f64,
        "conn",
        Better::Lower,
    );
    report.metric(
        &format!("{key}connected"),
        &format!("{label}connected"),
        w.ok as f64,
        "conn",
        Better::None,
    );
    report.metric(
        &format!("{key}connect_p50_us"),
        &format!("{label}CONNACK time p50"),
        s.p50_us,
        "µs",
        Better::Lower,
    );
    report.metric(
        &format!("{key}connect_p99_us"),
        &format!("{label}CONNACK time p99"),
        s.p99_us,
        "µs",
        Better::Lower,
    );
    report.metric(
        &format!("{key}secs"),
        &format!("{label}wave took"),
        w.elapsed.as_secs_f64(),
        "s",
        Better::None,
    );
    for (kind, n) in &w.errors {
        report.add_errors(&format!("{key}{kind}"), *n);
    }
}

/// Runs one wave over all clients with `concurrency` workers.
async fn wave(
    addr: SocketAddr,
    prefix: &str,
    args: &StormArgs,
    kind: Wave,
    deadline: Instant,
) -> WaveResult {
    let next = Arc::new(AtomicU32::new(0));
    let prefix: Arc<str> = prefix.into();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.min(args.clients.max(1)) {
        let (next, prefix, total, limit) = (
            next.clone(),
            prefix.clone(),
            args.clients,
            args.connect_timeout,
        );
        workers.push(tokio::spawn(async move {
            let mut r = WaveResult::empty();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || Instant::now() >= deadline {
                    break;
                }
                let id = format!("{prefix}-storm-{i}");
                let topic = format!("bench/{prefix}/storm/{i}");
                match timeout(limit, one_client(addr, &id, &topic, kind)).await {
                    Ok(Ok((connack_ns, present))) => {
                        r.ok += 1;
                        r.session_present += u64::from(present);
                        r.connect_ns.push(connack_ns);
                    }
                    Ok(Err(e)) => bump(&mut r.errors, e.kind()),
                    Err(_) => bump(&mut r.errors, "timeout"),
                }
            }
            r
        }));
    }
    let mut total = WaveResult::empty();
    for w in workers {
        match w.await {
            Ok(r) => {
                total.ok += r.ok;
                total.session_present += r.session_present;
                total.connect_ns.extend(r.connect_ns);
                merge(&mut total.errors, &r.errors);
            }
            Err(_) => bump(&mut total.errors, "worker_task_failed"),
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// One client's exchange. Returns the time from starting the TCP connect to CONNACK, and the
/// session-present flag.
async fn one_client(
    addr: SocketAddr,
    id: &str,
    topic: &str,
    kind: Wave,
) -> Result<(u64, bool), RawError> {
    let start = Instant::now();
    let spec = ConnectSpec {
        client_id: id,
        keep_alive_secs: 60,
        clean_session: kind == Wave::Clean,
    };
    let (mut conn, present) = RawConnection::connect(addr, spec).await?;
    let connack_ns = start.elapsed().as_nanos() as u64;
    if kind == Wave::CreateSessions {
        conn.subscribe(topic, QoS::AtLeastOnce, 1).await?;
    }
    conn.disconnect().await?;
    Ok((connack_ns, present))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::bench::Scenario;
    use crate::cli::{Cli, Command};

    #[test]
    fn parses_clients_concurrency_persistent() {
        let cli = Cli::try_parse_from([
            "device-sim",
            "bench",
            "reconnect-storm",
            "--clients",
            "5000",
            "--concurrency",
            "500",
            "--persistent",
        ]);
        let Ok(Cli {
            command: Command::Bench(b),
            ..
        }) = cli
        else {
            panic!("did not parse: {cli:?}");
        };
        let Scenario::ReconnectStorm(a) = b.scenario else {
            panic!("not reconnect-storm");
        };
        assert_eq!((a.clients, a.concurrency, a.persistent), (5000, 500, true));
        assert!(
            Cli::try_parse_from([
                "device-sim",
                "bench",
                "reconnect-storm",
                "--concurrency",
                "0"
            ])
            .is_err()
        );
    }
}
