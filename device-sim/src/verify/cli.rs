//! The `device-sim verify` command: options, then connect, verify, print the tables, write
//! the JSON, and fail (non-zero exit) when the report has problems.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{Config, Expectations, MqttSettings, Source, Verifier, VerifyError};
use crate::cli::parse_duration;

/// Options of `device-sim verify`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "\
Counting rules: a gap in a device's sequence is lost (a late arrival is reordered instead). \
Without --from-start the first sequence number seen per device is the baseline; messages \
missing at the end of a stream count as lost only with --expect-last-seq. Resets (history no \
longer covers the resume position, or an MQTT session the broker did not keep) always fail \
the run.

Examples:
  device-sim verify --source ws://127.0.0.1:8080/ws --filter 'sim/#' --until-idle 5s
  device-sim verify --source http://127.0.0.1:8080/sse --disconnect-every 2s --duration 60s
  device-sim verify --source mqtt://127.0.0.1:1883 --expect-devices 100 --expect-last-seq 600 \
--from-start --allow-duplicates")]
pub struct VerifyArgs {
    /// Where to subscribe: `ws://HOST:PORT/ws` (gateway WebSocket), `http://HOST:PORT/sse`
    /// (gateway SSE) or `mqtt://HOST:PORT` (any broker).
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws", value_name = "URL")]
    pub source: Source,

    /// Filter to subscribe to; repeat for several (overlapping MQTT filters may deliver a
    /// message twice).
    #[arg(long = "filter", default_value = "sim/#", value_name = "FILTER")]
    pub filters: Vec<String>,

    /// Stop after this long (default: run until Ctrl-C, or --until-idle).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,

    /// Stop after this long without a stamped message.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub until_idle: Option<Duration>,

    /// Devices that must be seen; fewer fails the run.
    #[arg(long, value_name = "N")]
    pub expect_devices: Option<u64>,

    /// Every device's last sequence number: missing ends count as lost, and the run stops
    /// as soon as everything arrived (with --expect-devices).
    #[arg(long, value_name = "SEQ")]
    pub expect_last_seq: Option<u64>,

    /// The verifier sees every device from its first message: sequence 1 is expected.
    #[arg(long)]
    pub from_start: bool,

    /// Report duplicates without failing (MQTT QoS 1 may redeliver after a reconnect).
    #[arg(long)]
    pub allow_duplicates: bool,

    /// Start after this gateway position (`<epoch>-<seq>`, WS/SSE) instead of now.
    #[arg(long, value_name = "POS")]
    pub since: Option<String>,

    /// Drop the connection every DURATION and resume from the last position (tests resume).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub disconnect_every: Option<Duration>,

    /// Drop the connection after every N stamped messages and resume.
    #[arg(long, value_name = "N")]
    pub disconnect_after: Option<u64>,

    /// How long to stay disconnected after a planned disconnect (messages published
    /// meanwhile must arrive on resume).
    #[arg(long, default_value = "200ms", value_parser = parse_duration, value_name = "DURATION")]
    pub offline: Duration,

    /// MQTT protocol version: 5 (stamps in user properties or payload) or 4 (3.1.1).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(4..=5))]
    pub mqtt_version: u8,

    /// MQTT subscription QoS.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,

    /// MQTT client id (default: unique per run). Fixed, so the session resumes.
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,

    /// MQTT: no persistent session (a reconnect then misses what was sent meanwhile).
    #[arg(long)]
    pub clean: bool,

    /// Bound on each connect-and-subscribe.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub connect_timeout: Duration,

    /// Print a progress line to stderr this often (0 for never).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub progress_every: Duration,

    /// Devices shown in the table, worst first.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub top: usize,

    /// Also write the full report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

impl VerifyArgs {
    /// The run these options describe.
    pub fn config(&self) -> Config {
        let mut c = Config::new(self.source.clone(), String::new());
        c.filters = self.filters.clone();
        c.since = self.since.clone();
        c.expect = Expectations {
            from_start: self.from_start,
            devices: self.expect_devices,
            last_seq: self.expect_last_seq,
            allow_duplicates: self.allow_duplicates,
        };
        c.duration = self.duration;
        c.until_idle = self.until_idle;
        c.disconnect_every = self.disconnect_every;
        c.disconnect_after = self.disconnect_after;
        c.offline = self.offline;
        c.mqtt = MqttSettings {
            version: self.mqtt_version,
            qos: self.qos,
            client_id: self.client_id.clone().unwrap_or(c.mqtt.client_id),
            persistent: !self.clean,
        };
        c.connect_timeout = self.connect_timeout;
        c.progress_every = (!self.progress_every.is_zero()).then_some(self.progress_every);
        c
    }
}

/// Runs `device-sim verify`: the tables on stdout, progress on stderr; an error when the
/// run found problems.
pub async fn execute(args: VerifyArgs) -> Result<(), VerifyError> {
    let config = args.config();
    let verifier = Verifier::connect(config.clone()).await?;
    match verifier.start_position() {
        Some(pos) => eprintln!(
            "verify: subscribed to {} at {} after position {pos}",
            config.filters.join(" "),
            config.source
        ),
        None => eprintln!(
            "verify: subscribed to {} at {}",
            config.filters.join(" "),
            config.source
        ),
    }
    let stop = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let report = verifier.run(stop).await?;
    print!("{}", report.render(args.top));
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    if report.passed {
        Ok(())
    } else {
        Err(VerifyError::Failed(report.problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> VerifyArgs {
        let mut all = vec!["device-sim", "verify"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all) {
            Ok(Cli {
                command: Command::Verify(a),
                ..
            }) => a,
            other => panic!("verify did not parse: {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).config();
        assert_eq!(c.filters, vec!["sim/#".to_string()]);
        assert_eq!(c.source.kind(), "ws");
        assert_eq!(
            (c.mqtt.version, c.mqtt.qos, c.mqtt.persistent),
            (5, 1, true)
        );
        assert!(c.validate().is_ok());
    }

    #[test]
    fn options_map_to_the_config() {
        let c = parse(&[
            "--source",
            "mqtt://127.0.0.1:1884",
            "--filter",
            "a/#",
            "--filter",
            "b/+",
            "--until-idle",
            "2s",
            "--expect-devices",
            "3",
            "--expect-last-seq",
            "10",
            "--from-start",
            "--disconnect-after",
            "50",
            "--client-id",
            "v1",
            "--mqtt-version",
            "4",
        ])
        .config();
        assert_eq!(c.filters.len(), 2);
        assert_eq!(c.until_idle, Some(Duration::from_secs(2)));
        assert_eq!((c.expect.devices, c.expect.last_seq), (Some(3), Some(10)));
        assert!(c.expect.from_start && !c.expect.allow_duplicates);
        assert_eq!(c.mqtt.client_id, "v1");
        assert!(c.validate().is_ok());
    }

    #[test]
    fn nonsense_is_refused() {
        let mqtt_since = parse(&["--source", "mqtt://h", "--since", "1-2"]).config();
        assert!(mqtt_since.validate().is_err());
        let clean_resume =
            parse(&["--source", "mqtt://h", "--clean", "--disconnect-after", "5"]).config();
        assert!(clean_resume.validate().is_err());
        let zero = parse(&["--disconnect-after", "0"]).config();
        assert!(zero.validate().is_err());
        let none = parse(&["--filter", ""]).config();
        assert!(none.validate().is_err());
    }
}
