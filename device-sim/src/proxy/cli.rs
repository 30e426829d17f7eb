//! The `device-sim proxy` command: options, and running the proxy until Ctrl-C with a stats
//! line printed periodically.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::{Faults, Proxy, ProxyError};
use crate::cli::parse_duration;

/// Options of `device-sim proxy`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "\
Fault model: the proxy never drops or reorders bytes, because TCP never shows that to an \
application. --loss is the probability per chunk that a transmission is lost: the chunk is \
held back one --rto (doubling for each further loss of it) and everything behind it in that \
direction waits, as a TCP retransmission stalls the stream. After --max-retransmits losses in \
a row the connection is cut. --cut is the probability per chunk that the connection ends at \
once (both sides reset), as a link failure ends it. Latency and jitter apply to each \
direction independently; jitter never reorders.

Example: device-sim proxy --listen 127.0.0.1:1884 --upstream 127.0.0.1:1883 --latency 50ms \
--jitter 10ms --loss 0.01")]
pub struct ProxyArgs {
    /// Address the proxy listens on; devices connect here instead of to the broker.
    #[arg(long, default_value = "127.0.0.1:1884", value_name = "ADDR")]
    pub listen: SocketAddr,

    /// The broker (or any TCP server) to relay to: `HOST:PORT`.
    #[arg(long, default_value = "127.0.0.1:1883", value_name = "HOST:PORT")]
    pub upstream: String,

    /// Delay added to every chunk, in each direction.
    #[arg(long, default_value = "0ms", value_parser = parse_duration, value_name = "DURATION")]
    pub latency: Duration,

    /// Random variation of the delay, ± this much (order is kept).
    #[arg(long, default_value = "0ms", value_parser = parse_duration, value_name = "DURATION")]
    pub jitter: Duration,

    /// Probability (0 to 1) that a chunk's transmission is lost and retransmitted after --rto.
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability, value_name = "P")]
    pub loss: f64,

    /// Retransmission timeout charged per lost transmission (doubling per further loss).
    #[arg(long, default_value = "200ms", value_parser = parse_duration, value_name = "DURATION")]
    pub rto: Duration,

    /// Lost transmissions in a row after which the connection is cut.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub max_retransmits: u32,

    /// Probability (0 to 1) per chunk that the connection is cut (reset both ways).
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability, value_name = "P")]
    pub cut: f64,

    /// Link rate per direction in bytes per second (`k`, `M`, `G` = ×1000); unlimited if
    /// left out.
    #[arg(long, value_parser = parse_rate, value_name = "BYTES_PER_SEC")]
    pub bandwidth: Option<u64>,

    /// Seed for the random choices, to repeat a run exactly.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// How often to print the counters.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub stats_every: Duration,
}

impl ProxyArgs {
    /// The fault settings these options describe.
    pub fn faults(&self) -> Faults {
        Faults {
            latency: self.latency,
            jitter: self.jitter,
            loss: self.loss,
            rto: self.rto,
            max_retransmits: self.max_retransmits.max(1),
            cut: self.cut,
            bandwidth: self.bandwidth,
            seed: self.seed,
        }
    }
}

/// Runs the proxy until Ctrl-C, printing the counters every `--stats-every`.
pub async fn execute(args: ProxyArgs) -> Result<(), ProxyError> {
    let upstream = resolve(&args.upstream).await?;
    let faults = args.faults();
    let proxy = Proxy::start(args.listen, upstream, faults.clone()).await?;
    println!(
        "proxy: {} -> {} ({})",
        proxy.local_addr(),
        upstream,
        faults.describe()
    );
    let mut tick = tokio::time::interval(args.stats_every.max(Duration::from_millis(100)));
    tick.tick().await;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = tick.tick() => println!("proxy: {}", proxy.stats()),
        }
    }
    let stats = proxy.stats();
    proxy.shutdown().await;
    println!("proxy: stopped; {stats}");
    Ok(())
}

async fn resolve(upstream: &str) -> Result<SocketAddr, ProxyError> {
    let err = |detail: String| ProxyError::Resolve {
        upstream: upstream.to_string(),
        detail,
    };
    let host = upstream
        .strip_prefix("mqtt://")
        .or_else(|| upstream.strip_prefix("tcp://"))
        .unwrap_or(upstream);
    let mut addrs = tokio::net::lookup_host(host)
        .await
        .map_err(|e| err(e.to_string()))?;
    addrs.next().ok_or_else(|| err("no address".into()))
}

/// Parses a probability between 0 and 1.
pub fn parse_probability(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "`{text}` is not a probability between 0 and 1 (e.g. 0.01)"
        )),
    }
}

/// Parses a rate in bytes per second: `125000`, `125k`, `1.5M`, `1G`.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, scale) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'M')) => (&t[..i], 1e6),
        Some((i, 'G')) => (&t[..i], 1e9),
        _ => (t, 1.0),
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n * scale >= 1.0 && n * scale <= 1e12 => {
            Ok((n * scale).round() as u64)
        }
        _ => Err(format!(
            "`{text}` is not a rate in bytes per second (e.g. 125000, 125k, 1.5M)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn rates_and_probabilities_parse() {
        assert_eq!(parse_rate("125000"), Ok(125_000));
        assert_eq!(parse_rate("125k"), Ok(125_000));
        assert_eq!(parse_rate("1.5M"), Ok(1_500_000));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
        assert_eq!(parse_probability("0.01"), Ok(0.01));
        assert!(parse_probability("1.01").is_err());
        assert!(parse_probability("NaN").is_err());
    }

    #[test]
    fn command_line_maps_to_faults() {
        let cli = Cli::try_parse_from([
            "device-sim",
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "localhost:1883",
            "--latency",
            "50ms",
            "--jitter",
            "10ms",
            "--loss",
            "0.01",
            "--cut",
            "0.001",
            "--bandwidth",
            "1M",
            "--seed",
            "3",
        ]);
        let Ok(Cli {
            command: Command::Proxy(args),
            ..
        }) = cli
        else {
            panic!("proxy did not parse: {cli:?}");
        };
        let f = args.faults();
        assert_eq!(f.latency, Duration::from_millis(50));
        assert_eq!(f.jitter, Duration::from_millis(10));
        assert_eq!((f.loss, f.cut), (0.01, 0.001));
        assert_eq!(f.rto, Duration::from_millis(200));
        assert_eq!(f.bandwidth, Some(1_000_000));
        assert_eq!(f.seed, Some(3));
        assert!(f.validate().is_ok());
    }
}
