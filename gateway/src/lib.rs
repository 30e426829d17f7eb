//! The gateway: MQTT devices and browser dashboards on one sequenced, durable log.
//!
//! # Layout
//! - [`core`]: topics, filters, the subscription index, namespace rules, messages. No I/O.
//! - [`log`]: the [`log::MessageLog`] trait and the embedded durable store behind it.
//! - [`stream`]: the browser subscription engine shared by WebSocket, SSE, long-poll and REST.
//! - [`ws`], [`sse`], [`http`]: the browser transports and the REST API.
#![warn(missing_docs)]

pub mod bridges;
pub mod broker;
pub mod config;
pub mod core;
pub mod http;
pub mod log;
pub mod mqtt;
pub mod server;
pub mod sse;
pub mod stream;
pub mod ws;
