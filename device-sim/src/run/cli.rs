//! The `device-sim run` command: arguments, Ctrl-C handling, progress mode (live block on a
//! terminal, plain lines otherwise), the summary and the `--json` report.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{DisplayMode, RunOptions};
use crate::cli::parse_duration;
use crate::scenario::{self, Broker};

/// Arguments of `device-sim run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario file (TOML) describing the device classes; see device-sim/scenarios/ for
    /// examples and README.md there for every field.
    #[arg(value_name = "SCENARIO.toml")]
    pub scenario: PathBuf,

    /// Broker to connect to: mqtt://HOST:PORT, mqtts://HOST:PORT, ws://HOST:PORT/mqtt or
    /// wss://HOST:PORT/mqtt. Overrides the scenario's `broker`; default mqtt://127.0.0.1:1883.
    #[arg(long, value_name = "URL")]
    pub broker: Option<Broker>,

    /// How long to run (e.g. 30s, 5m). Overrides the scenario's `duration`.
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Write the final report as JSON to FILE (per class and overall).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Time between progress lines when stdout is not a terminal.
    #[arg(long, value_name = "D", default_value = "5s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Print plain progress lines even on a terminal.
    #[arg(long)]
    pub plain: bool,

    /// No progress output; only the summary at the end.
    #[arg(long, short)]
    pub quiet: bool,

    /// Seed of every random choice (payloads, jitter, faults). Overrides the scenario's
    /// `seed`; the report shows the seed used.
    #[arg(long)]
    pub seed: Option<u64>,

    /// At the end, how long devices wait for acks of messages still in flight before they
    /// disconnect.
    #[arg(long, value_name = "D", default_value = "3s", value_parser = parse_duration)]
    pub drain: Duration,

    /// Only check the scenario file and print what it describes.
    #[arg(long)]
    pub check: bool,
}

/// Runs `device-sim run`.
pub async fn execute(args: RunArgs) -> anyhow::Result<()> {
    let scenario = scenario::load(&args.scenario)?;
    if args.check {
        println!("{}", describe(&scenario, args.duration));
        return Ok(());
    }
    let display = if args.quiet {
        DisplayMode::Off
    } else if std::io::stdout().is_terminal() && !args.plain {
        DisplayMode::Live
    } else {
        DisplayMode::Lines(args.interval)
    };
    if display != DisplayMode::Live && !args.quiet {
        println!("{}", describe(&scenario, args.duration));
    }
    let stop = CancellationToken::new();
    let ctrl_c = tokio::spawn(watch_ctrl_c(stop.clone()));
    let opts = RunOptions {
        broker: args.broker,
        duration: args.duration,
        seed: args.seed,
        display,
        drain: args.drain,
    };
    let report = super::run(&scenario, opts, stop).await;
    ctrl_c.abort();
    let report = report?;
    print!("{}", report.summary());
    if let Some(path) = &args.json {
        report.write_json(path)?;
        println!("report written to {}", path.display());
    }
    if report.overall.ever_connected == 0 {
        anyhow::bail!(
            "no device could connect to {}; is the broker running there?",
            report.broker
        );
    }
    Ok(())
}

/// First Ctrl-C: stop gracefully (devices disconnect, the summary is printed). Second: quit.
async fn watch_ctrl_c(stop: CancellationToken) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    eprintln!("\nstopping: disconnecting devices (Ctrl-C again to quit at once)");
    stop.cancel();
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(130);
    }
}

/// One line per class: what the scenario will do.
fn describe(s: &scenario::Scenario, duration: Option<Duration>) -> String {
    let mut out = format!(
        "scenario {} ({}): {} devices in {} classes, {} s",
        s.name,
        s.file.display(),
        s.devices(),
        s.classes.len(),
        duration.unwrap_or(s.duration).as_secs_f64()
    );
    for c in &s.classes {
        out.push_str(&format!(
            "\n  {}: {} x MQTT {}, {} telemetry streams, {} command subscriptions",
            c.name,
            c.count,
            match c.protocol {
                scenario::Protocol::V311 => "3.1.1",
                scenario::Protocol::V5 => "5",
            },
            c.telemetry.len(),
            c.commands.len()
        ));
    }
    out
}
