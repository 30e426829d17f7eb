//! `device-sim`: a generic MQTT load generator, and the home of the fleet simulator and the
//! end-to-end verifier.
//!
//! It speaks plain MQTT 3.1.1 to any broker, so the gateway and Mosquitto are measured by the
//! same code in the same run. It depends on nothing in the gateway crate.
//!
//! # Layout
//! - [`cli`]: the command line (clap derive) and the entry point the binary calls.
//! - [`stamp`]: the device id, sequence number and send time every simulated message carries.
//! - [`bench`]: `device-sim bench`: one module per scenario (throughput, latency, idle,
//!   reconnect storm), the shared report (table and JSON) and the side-by-side comparison of two
//!   result sets.
//! - [`verify`]: `device-sim verify`: the end-to-end verifier (loss, duplicates, reordering,
//!   latency and resume over the gateway's WebSocket, SSE, or MQTT).
//! - [`proxy`]: `device-sim proxy`: a TCP proxy injecting latency, jitter, loss and cuts.
//! - [`scenario`]: scenario files of `device-sim run` (TOML): parsing, checking, templates and
//!   telemetry payload models.
//! - [`run`]: `device-sim run`: the fleet simulator (one task per device, faults, live
//!   progress, report).
#![warn(missing_docs)]

pub mod bench;
pub mod cli;
pub mod proxy;
pub mod run;
pub mod scenario;
pub mod stamp;
pub mod verify;
