//! Bridges to remote MQTT brokers. The connector lands with the bridge issue; this crate
//! holds nothing yet.
#![warn(missing_docs)]
