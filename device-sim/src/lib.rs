//! `device-sim`: a generic MQTT load generator, and the home of the fleet simulator and the
//! end-to-end verifier.
//!
//! It speaks plain MQTT 3.1.1 to any broker, so the gateway and Mosquitto are measured by the
//! same code in the same run. It depends on nothing in the gateway crate.
//!
//! # Layout
//! - [`cli`]: the command line (clap derive) and the entry point the binary calls.
//! - [`bench`]: `device-sim bench`: one module per scenario (throughput, latency, idle,
//!   reconnect storm), the shared report (table and JSON) and the side-by-side comparison of two
//!   result sets.
#![warn(missing_docs)]

pub mod bench;
pub mod cli;
