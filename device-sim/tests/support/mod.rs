//! Fixtures shared by every device-sim integration test. Each test file includes this module
//! with `mod support;` and uses what it needs.
//!
//! # Layout
//! - [`mosquitto`]: a real Mosquitto on a free loopback port (Debian's `mosquitto`;
//!   `./scripts/test.sh` installs it), killed when dropped.
//! - [`echo`]: a TCP echo server, for the proxy.
//! - [`streams`]: a publisher of crafted stamped streams (lost, duplicated, reordered on
//!   purpose), for `verify`.
//! - [`collector`]: an MQTT 5 subscriber that records what arrives with its stamps, and the
//!   small scenario the `run` tests use.
// Every test file compiles this module on its own and uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod collector;
pub mod echo;
pub mod mosquitto;
pub mod streams;

pub use collector::{Collector, Received, assert_no_gaps, scenario};
pub use echo::{Echo, start_echo};
pub use mosquitto::{Mosquitto, start_mosquitto, start_mosquitto_with};
pub use streams::{Crafted, clean_stream, publish_stream};

/// A loopback port that was free a moment ago (nobody listens on it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
        .port()
}
