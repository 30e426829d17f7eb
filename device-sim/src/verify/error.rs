//! The error type of `device-sim verify`: what stops a verification from running, and the
//! verdict of a run that found problems (so the command exits non-zero).

use std::path::PathBuf;

/// Why a verification could not run, or did not pass.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// An option or a combination of options makes no sense.
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),

    /// The first connection failed; nothing was verified.
    #[error("cannot subscribe at {source_url}: {detail}; is it running and reachable there?")]
    Connect {
        /// The `--source` URL.
        source_url: String,
        /// What happened.
        detail: String,
    },

    /// The server refused the subscription (bad filter, bad position, HTTP error, CONNACK or
    /// SUBACK refusal); retrying cannot help.
    #[error("{source_url} refused the subscription: {detail}")]
    Refused {
        /// The `--source` URL.
        source_url: String,
        /// The server's answer.
        detail: String,
    },

    /// The run completed and found problems (loss, reordering, resets, ...).
    #[error("verification failed: {0}")]
    Failed(String),

    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A JSON report could not be parsed or written.
    #[error("{}: not a device-sim verify report: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The serde error.
        source: serde_json::Error,
    },
}
