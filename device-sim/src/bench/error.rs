//! The error type of `device-sim bench`: what stops a measurement from being taken at all.
//! Odd broker behaviour during a measurement is not an error here: it is counted in the report.

use std::path::PathBuf;

/// Why a benchmark could not run or could not save its result.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An argument combination makes no sense for the scenario.
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),

    /// The broker host name did not resolve.
    #[error("cannot resolve broker {broker}: {source}; check the --broker host")]
    Resolve {
        /// The `--broker` value.
        broker: String,
        /// The resolver's error.
        source: std::io::Error,
    },

    /// The broker could not be reached or refused the connection during set-up.
    #[error("cannot connect to broker {broker}: {detail}; is it running and listening there?")]
    Unreachable {
        /// The `--broker` value.
        broker: String,
        /// What happened.
        detail: String,
    },

    /// Set-up (connect, subscribe) did not finish; no measurement was taken.
    #[error("set-up failed: {0}")]
    Setup(String),

    /// The open-file limit cannot be raised to what the scenario needs.
    #[error(
        "this scenario needs {needed} open files but the limit is {got}; raise the hard limit \
         (e.g. `ulimit -Hn {needed}` as root, or LimitNOFILE=) or lower the connection count"
    )]
    FdLimit {
        /// Files the scenario needs (connections plus a margin).
        needed: u64,
        /// The soft limit after trying to raise it.
        got: u64,
    },

    /// `/proc/PID/status` could not be read or has no `VmRSS` line.
    #[error("cannot read the memory of process {pid} from /proc/{pid}/status: {detail}")]
    Proc {
        /// The `--pid` value.
        pid: u32,
        /// What went wrong.
        detail: String,
    },

    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A JSON report could not be parsed or written.
    #[error("{}: not a device-sim bench report: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The serde error.
        source: serde_json::Error,
    },
}
