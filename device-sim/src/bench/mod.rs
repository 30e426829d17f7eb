//! `device-sim bench`: the load generator the benchmarks use.
//!
//! Each scenario connects to one broker, measures, and returns a [`report::Report`]: printed as
//! a table, and written as JSON with `--json FILE`. `compare` puts two sets of such JSON files
//! side by side (gateway vs Mosquitto).
//!
//! Every scenario is bounded by `--timeout`; when the bound is hit the report says so
//! (`complete: false`) instead of hanging. Odd broker behaviour (refused connections, dropped
//! sockets, malformed packets) is counted in the report's `errors`, never a panic.
//!
//! # Layout
//! - [`throughput`], [`latency`], [`idle`], [`storm`]: one scenario each.
//! - [`compare`]: side-by-side table of two result directories.
//! - [`report`]: the report type, the text table and the JSON file.
//! - [`stats`]: rates and latency percentiles.
//! - [`broker`]: the `--broker` URL.
//! - [`raw`]: a minimal MQTT client (CONNECT, SUBSCRIBE, PINGREQ, DISCONNECT) for scenarios that
//!   hold thousands of connections, where a full client would cost more than the broker.
//! - [`mqtt`]: helpers around rumqttc for the scenarios that move messages.
//! - [`pubsub`]: the counting subscriber and full-speed publisher tasks of `throughput`.
//! - [`sys`]: `/proc` memory readings and the open-file limit.
//! - [`ws`], [`ws_client`]: the browser side (WebSocket fan-out, latency, idle memory).

pub mod broker;
pub mod compare;
mod error;
pub mod idle;
pub mod latency;
pub mod mqtt;
pub mod pubsub;
pub mod raw;
pub mod report;
pub mod stats;
pub mod storm;
pub mod sys;
pub mod throughput;
pub mod ws;
pub mod ws_client;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

pub use broker::BrokerUrl;
pub use error::BenchError;
pub use report::Report;

use crate::cli::parse_duration;

/// `device-sim bench <SCENARIO> [options]`.
#[derive(Debug, Args)]
#[command(
    after_help = "Every scenario takes --broker, --timeout, --json, --pid, --target, --title \
                  and --prefix. Run `device-sim bench <SCENARIO> --help` for its options."
)]
pub struct BenchCommand {
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The benchmark scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Publishers → subscribers message rate and loss (1→1, N→1 fan-in, 1→N fan-out).
    ///
    /// Every subscriber receives every message. Publishers share one topic, or with
    /// --topic-per-publisher each has its own and subscribers use a `+` wildcard. Subscribers
    /// subscribe first; then all publishers start together and send as fast as their
    /// connection takes it (QoS 1: --inflight unacknowledged). The run ends when every
    /// subscriber has everything, when deliveries stop for --settle, or at --timeout; what is
    /// missing is reported as loss.
    ///
    /// Examples: fan-in `--publishers 100 --topic-per-publisher`; fan-out `--subscribers 100`.
    Throughput(throughput::ThroughputArgs),
    /// End-to-end latency percentiles of 1 publisher → 1 subscriber at a fixed rate.
    ///
    /// Each payload carries a sequence number and its send time; the subscriber records
    /// receive time minus send time (same process, monotonic clock) after --warmup, and
    /// counts lost, duplicated and reordered messages.
    Latency(latency::LatencyArgs),
    /// Memory the broker spends per idle connection, read from /proc/PID/status.
    ///
    /// Opens --connections idle MQTT connections (CONNECT, CONNACK, then nothing but
    /// keep-alive pings), waits --settle, and divides the growth of the broker's VmRSS (--pid)
    /// by the connections still open. Raises this process's open-file limit as needed.
    Idle(idle::IdleArgs),
    /// Connections per second when many clients connect at once.
    ///
    /// --clients connect (CONNECT → CONNACK → DISCONNECT), --concurrency at a time. With
    /// --persistent they ask for persistent sessions and subscribe, then a second wave
    /// reconnects them all and counts the sessions the broker kept.
    ReconnectStorm(storm::StormArgs),
    /// The browser side: MQTT publish → WebSocket delivery (fan-out, latency) and memory per
    /// idle WebSocket or SSE connection, for the gateway's /ws or MQTT over WebSocket.
    Ws(ws::WsArgs),
    /// Side-by-side table of two result directories written by `--json`.
    ///
    /// Example: `device-sim bench compare --input gateway=out/gateway --input
    /// mosquitto=out/mosquitto`. Reports are matched by file name; ratios are first / second.
    Compare(compare::CompareArgs),
}

/// Options every measuring scenario takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Broker to measure: `mqtt://HOST:PORT` (or `HOST:PORT`). Plain TCP only.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883", value_name = "URL")]
    pub broker: BrokerUrl,

    /// Upper bound on the whole run, set-up included. When it is reached the report is
    /// printed with what was measured so far and marked incomplete.
    #[arg(long, default_value = "120s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,

    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Name of the broker under test, shown in reports (e.g. `gateway`, `mosquitto`).
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,

    /// Title of this case in reports and comparisons (e.g. "1→1 QoS 0 100 B").
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,

    /// PID of the broker process. Reports then include its CPU use, and `idle` its memory per
    /// connection (read from /proc/PID/stat and /proc/PID/status).
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,

    /// Prefix of client ids and topics, so runs sharing a broker do not collide.
    /// Default: `dsim<PID>`.
    #[arg(long, value_name = "TEXT")]
    pub prefix: Option<String>,
}

impl CommonArgs {
    /// The client-id and topic prefix: `--prefix`, or `dsim<PID>`.
    pub fn prefix(&self) -> String {
        self.prefix
            .clone()
            .unwrap_or_else(|| format!("dsim{}", std::process::id()))
    }

    /// The report title: `--title`, or the given default.
    pub fn title_or(&self, default: String) -> String {
        self.title.clone().unwrap_or(default)
    }
}

/// Runs one `device-sim bench` command: measures, prints the table, writes the JSON.
pub async fn execute(cmd: BenchCommand) -> Result<(), BenchError> {
    let (report, common) = match cmd.scenario {
        Scenario::Throughput(args) => (throughput::run(&args).await?, args.common),
        Scenario::Latency(args) => (latency::run(&args).await?, args.common),
        Scenario::Idle(args) => (idle::run(&args).await?, args.common),
        Scenario::ReconnectStorm(args) => (storm::run(&args).await?, args.common),
        Scenario::Ws(args) => (ws::run(&args).await?, args.common),
        Scenario::Compare(args) => return compare::run(&args),
    };
    let mut report = report;
    report.target = common.target.clone();
    println!("{}", report.render());
    if let Some(path) = &common.json {
        report.write_json(path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<Scenario, clap::Error> {
        let mut all = vec!["device-sim", "bench"];
        all.extend_from_slice(args);
        let cli = Cli::try_parse_from(all)?;
        match cli.command {
            Command::Bench(b) => Ok(b.scenario),
            other => panic!("not a bench command: {other:?}"),
        }
    }

    #[test]
    fn common_options_have_defaults() {
        let Ok(Scenario::Latency(args)) = parse(&["latency"]) else {
            panic!("latency did not parse");
        };
        assert_eq!(args.common.broker.to_string(), "mqtt://127.0.0.1:1883");
        assert_eq!(args.common.timeout, Duration::from_secs(120));
        assert!(args.common.json.is_none());
        assert!(args.common.prefix().starts_with("dsim"));
    }

    #[test]
    fn common_options_parse() {
        let parsed = parse(&[
            "reconnect-storm",
            "--broker",
            "mqtt://localhost:1999",
            "--timeout",
            "5s",
            "--json",
            "out.json",
            "--target",
            "mosquitto",
            "--title",
            "storm",
        ]);
        let Ok(Scenario::ReconnectStorm(args)) = parsed else {
            panic!("reconnect-storm did not parse: {parsed:?}");
        };
        assert_eq!(args.common.broker.port, 1999);
        assert_eq!(args.common.timeout, Duration::from_secs(5));
        assert_eq!(args.common.json, Some(PathBuf::from("out.json")));
        assert_eq!(args.common.target.as_deref(), Some("mosquitto"));
        assert_eq!(args.common.title_or("x".into()), "storm");
    }

    #[test]
    fn unsupported_broker_scheme_is_refused() {
        let err = parse(&["latency", "--broker", "ws://127.0.0.1:8080/mqtt"]);
        assert!(err.is_err());
    }
}
