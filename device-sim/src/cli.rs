//! The `device-sim` command line: argument structs (clap derive), value parsers shared by the
//! subcommands, and [`execute`], which the binary calls once the runtime is built.

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::bench::{self, BenchCommand};

/// MQTT device simulator, end-to-end verifier and load generator.
///
/// `run` simulates a fleet of devices from a scenario file; `verify` checks what subscribers
/// receive (lost, duplicated, reordered, latency); `proxy` puts a bad network in between;
/// `bench` measures any MQTT broker (the gateway, Mosquitto, ...) with the same client code,
/// so two brokers can be compared side by side. See docs/device-sim.md.
#[derive(Debug, Parser)]
#[command(name = "device-sim", version, about, long_about)]
pub struct Cli {
    /// Worker threads of the async runtime. Default: the CPUs this process may run on, so
    /// `taskset -c 1 device-sim ...` measures what one core can drive.
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `device-sim`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure a broker: throughput, latency, idle memory per connection, reconnect storm.
    ///
    /// Example: `device-sim bench throughput --broker mqtt://127.0.0.1:1883 --qos 1`.
    Bench(BenchCommand),
    /// Check end to end what subscribers receive: loss, duplicates, reordering, latency,
    /// resume after a disconnect (gateway WebSocket or SSE, or any MQTT broker).
    ///
    /// Example: `device-sim verify --source ws://127.0.0.1:8080/ws --filter 'sim/#'
    /// --until-idle 5s`. Exits non-zero when anything was lost or reordered.
    Verify(crate::verify::cli::VerifyArgs),
    /// Relay TCP to a broker through a bad network: latency, jitter, loss (as TCP
    /// retransmission stalls), bandwidth limits, connection cuts.
    ///
    /// Example: `device-sim proxy --listen 127.0.0.1:1884 --upstream 127.0.0.1:1883
    /// --latency 50ms --jitter 10ms --loss 0.01`.
    Proxy(crate::proxy::cli::ProxyArgs),
    /// Simulate a fleet of devices described by a scenario file: telemetry, commands and
    /// faults, with live progress and a summary (and `--json FILE` for a report).
    ///
    /// Example: `device-sim run device-sim/scenarios/factory.toml --broker
    /// mqtt://127.0.0.1:1883 --duration 30s`.
    Run(crate::run::cli::RunArgs),
}

/// Builds the tokio runtime: multi-threaded, with `threads` workers when given.
pub fn build_runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = threads {
        builder.worker_threads(n.max(1));
    }
    builder.build()
}

/// Runs the parsed command line to completion.
pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Bench(cmd) => bench::execute(cmd).await?,
        Command::Verify(args) => crate::verify::cli::execute(args).await?,
        Command::Proxy(args) => crate::proxy::cli::execute(args).await?,
        Command::Run(args) => crate::run::cli::execute(args).await?,
    }
    Ok(())
}

/// Parses a duration written for a person: `10s`, `500ms`, `2m`, `1h 30m`; a bare number is
/// seconds (`30` = 30 s, `0.5` = 500 ms). At most 30 days.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let duration = match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..=MAX_DURATION.as_secs_f64()).contains(&secs) => {
            Duration::from_secs_f64(secs)
        }
        Ok(_) => return Err(format!("`{text}` is not a duration between 0 and 30 days")),
        Err(_) => humantime::parse_duration(text).map_err(|e| {
            format!("`{text}` is not a duration ({e}); write e.g. `10s` or `500ms`")
        })?,
    };
    if duration > MAX_DURATION {
        return Err(format!("`{text}` is longer than 30 days"));
    }
    Ok(duration)
}

/// Longest duration any option takes: far beyond any benchmark, and far from the overflow of
/// `Instant + Duration`.
const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("1000000000s").is_err());
        assert!(parse_duration("1e300").is_err());
        assert_eq!(parse_duration("30days"), Ok(MAX_DURATION));
    }

    #[test]
    fn threads_is_global() {
        let cli = Cli::try_parse_from([
            "device-sim",
            "bench",
            "latency",
            "--threads",
            "1",
            "--rate",
            "10",
        ]);
        let cli = match cli {
            Ok(cli) => cli,
            Err(e) => panic!("parse failed: {e}"),
        };
        assert_eq!(cli.threads, Some(1));
    }
}
