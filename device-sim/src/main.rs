//! `device-sim`: MQTT load generator.
//!
//! Run `device-sim --help`, or for example
//! `device-sim bench throughput --broker mqtt://127.0.0.1:1883 --publishers 1 --subscribers 1`.
use std::process::ExitCode;

use clap::Parser;
use device_sim::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match cli::build_runtime(cli.threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("device-sim: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::execute(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("device-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}
