//! `gateway`: the IoT realtime gateway server.
//!
//! Run it with `cargo run --release -p gateway` (embedded defaults: data in `./data`, MQTT on
//! 127.0.0.1:1883, HTTP on 127.0.0.1:8080, admin on 127.0.0.1:9090), and see
//! `gateway --help` for the options.

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use gateway::config::{self, Config, Overrides, duration::format_duration};
use gateway::server::Gateway;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// mimalloc instead of the system allocator: the message path allocates and frees small
/// objects across threads, where glibc malloc showed up at the top of profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process (Linux). mimalloc asks for them on its
/// arenas, and then the first touch of every 2 MiB region faults in and zeroes a whole huge
/// page: connections, group commits and history memtables allocate and free fresh memory all
/// the time, and that zeroing showed up as 5-15 % of CPU in profiles of the message path and
/// of reconnect storms, besides keeping untouched memory resident. Small pages fault in only
/// what is used.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("warning: could not turn transparent huge pages off: {e}");
    }
}

/// IoT realtime gateway: MQTT devices and browser dashboards on one sequenced, durable log.
///
/// Without a command, `gateway` runs the server. With no config file it uses the built-in
/// defaults: data in ./data, MQTT on 127.0.0.1:1883, HTTP (MQTT over WebSocket at /mqtt) on
/// 127.0.0.1:8080, admin (/healthz, /readyz, /metrics) on 127.0.0.1:9090.
///
/// Settings come from the config file, then GATEWAY__SECTION__KEY environment variables
/// (e.g. GATEWAY__MQTT__LISTEN=127.0.0.1:1884), then the flags below. Log verbosity follows
/// RUST_LOG (default "info"; e.g. RUST_LOG=gateway=debug).
#[derive(Debug, Parser)]
#[command(name = "gateway", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway until SIGTERM or Ctrl-C (the default command).
    Run(RunArgs),
    /// Check a config file and print a summary of the settings it gives.
    ///
    /// GATEWAY__SECTION__KEY environment overrides are applied, as `run` would. Exits with
    /// status 1 and says what is wrong (file, line, setting) when the result is not valid.
    CheckConfig {
        /// The config file to check.
        file: PathBuf,
    },
    /// Print the default configuration: every option, documented, with its default.
    ///
    /// The same text as config.example.toml, and a good start for your own config file:
    /// `gateway print-default-config > gateway.toml`.
    PrintDefaultConfig,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Config file (TOML). Without it the built-in defaults apply; see
    /// `gateway print-default-config`.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (message log and sessions); created when missing. Overrides data.dir.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// MQTT listener address, IP:port (port 0 picks a free one). Overrides mqtt.listen.
    #[arg(long, value_name = "ADDR")]
    mqtt: Option<String>,
    /// HTTP listener address, IP:port (port 0 picks a free one). Overrides http.listen.
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Admin listener address, IP:port (port 0 picks a free one). Overrides admin.listen.
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,
}

fn main() -> ExitCode {
    no_huge_pages();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run(cli.run)) {
        Command::PrintDefaultConfig => {
            print!("{}", config::EXAMPLE_CONFIG);
            Ok(())
        }
        Command::CheckConfig { file } => check_config(&file),
        Command::Run(args) => run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn env_vars() -> Vec<(String, String)> {
    // `vars_os` so a variable that is not UTF-8 cannot panic; ours are always UTF-8.
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    init_tracing();
    let mut config = Config::load(args.config.as_deref(), env_vars())?;
    config.apply(&Overrides {
        data_dir: args.data_dir,
        mqtt_listen: args.mqtt,
        http_listen: args.http,
        admin_listen: args.admin,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let gateway = Gateway::start(config).await?;
        let signal = shutdown_signal().await;
        tracing::info!("{signal} received");
        gateway.shutdown().await;
        Ok(())
    })
}

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C) and names it.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; stop with Ctrl-C");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// Log filter when `RUST_LOG` is not set: `info`, with the storage engine's own
/// start-up chatter (one line per internal tree) lowered to warnings.
const DEFAULT_LOG_FILTER: &str = "info,fjall=warn,lsm_tree=warn";

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = match EnvFilter::try_from_default_env() {
        Ok(f) => f,
        Err(e) => {
            if std::env::var_os("RUST_LOG").is_some() {
                eprintln!("RUST_LOG is not a valid filter ({e}); using {DEFAULT_LOG_FILTER:?}");
            }
            EnvFilter::new(DEFAULT_LOG_FILTER)
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn check_config(file: &Path) -> anyhow::Result<()> {
    let vars = env_vars();
    let config = Config::load(Some(file), vars.clone())?;
    config
        .validate()
        .with_context(|| format!("config file {}", file.display()))?;
    println!("ok: {}", file.display());
    print!("{}", summary(&config));
    let overrides: Vec<&str> = vars
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with(config::env::PREFIX))
        .collect();
    if !overrides.is_empty() {
        println!("  environment overrides applied: {}", overrides.join(", "));
    }
    Ok(())
}

fn summary(c: &Config) -> String {
    let age = |a: Option<std::time::Duration>| a.map_or("none".to_string(), format_duration);
    let qos0 = |stored: bool| if stored { "stored" } else { "not stored" };
    let mut out = format!(
        "  data dir    {}\n  mqtt        {} (max packet {} bytes, connect timeout {})\n  \
         http        {}\n  admin       {}\n  history     {} messages per channel, max age {}, \
         QoS 0 {}\n",
        c.data.dir.display(),
        c.mqtt.listen,
        c.mqtt.max_packet_size,
        format_duration(c.mqtt.connect_timeout),
        c.http.listen,
        c.admin.listen,
        c.history.max_messages,
        age(c.history.max_age),
        qos0(c.history.store_qos0),
    );
    out.push_str(&format!("  namespaces  {}\n", c.namespace.len()));
    for ns in &c.namespace {
        let p = ns.policy(&c.history);
        out.push_str(&format!(
            "    {} ({}): {} messages per channel, max age {}, QoS 0 {}\n",
            ns.name,
            ns.filter,
            p.max_messages,
            age(p.max_age),
            qos0(p.store_qos0),
        ));
    }
    out
}
