//! The gateway's bridges to remote MQTT brokers: one [`bridge::Bridge`] per `[[bridge]]`
//! section, each over a [`LogSource`] and a [`LogSink`] on the gateway's log.
//!
//! A bridge whose section is wrong (or whose name is taken) is still listed, `down` with
//! the reason; nothing a bridge does can stop the gateway from starting or serving.
//!
//! Layout:
//! - `mod.rs`: [`Bridges`], the set of running bridges (start, status, stop, metrics).
//! - `source.rs`: [`LogSource`], outbound reads from the log and the durable cursor.
//! - `sink.rs`: [`LogSink`], inbound appends to the log.

mod sink;
mod source;
#[cfg(test)]
mod tests;

pub use sink::LogSink;
pub use source::LogSource;

use crate::broker::Broker;
use crate::config::bridge::{BridgeConfig, ProtocolVersion};
use crate::core::topic::TopicLimits;
use crate::log::MessageLog;
use bridge::{Bridge, Snapshot};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

/// The running bridges.
pub struct Bridges {
    bridges: Mutex<Vec<Bridge>>,
}

impl Bridges {
    /// Starts one bridge per section; must be called inside a tokio runtime.
    pub fn start(
        configs: &[BridgeConfig],
        log: Arc<dyn MessageLog>,
        broker: &Arc<Broker>,
        limits: TopicLimits,
    ) -> Bridges {
        let mut names = HashSet::new();
        let mut bridges = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let protocol = match c.protocol {
                ProtocolVersion::V311 => "3.1.1",
                ProtocolVersion::V5 => "5",
            };
            let failed = |reason: String| Bridge::failed(&c.name, &c.address, protocol, reason);
            if !names.insert(c.name.as_str()) {
                bridges.push(failed(format!(
                    "bridge[{i}]: the name {:?} is used by an earlier bridge; give each bridge \
                     its own name (its cursor is stored under it)",
                    c.name
                )));
                continue;
            }
            let options = match c.to_options() {
                Ok(o) => o,
                Err(e) => {
                    bridges.push(failed(format!("invalid configuration: {e}")));
                    continue;
                }
            };
            let filters: Vec<String> = options.out_rules.iter().map(|r| r.filter.clone()).collect();
            let source = LogSource::new(&c.name, &filters, log.clone(), broker, &limits);
            let sink = LogSink::new(&c.name, log.clone(), limits);
            tracing::info!(bridge = %c.name, remote = %c.address, "starting bridge");
            bridges.push(Bridge::start(options, Arc::new(source), Arc::new(sink)));
        }
        Bridges {
            bridges: Mutex::new(bridges),
        }
    }

    /// The status of every bridge, in configuration order.
    pub fn statuses(&self) -> Vec<Snapshot> {
        self.bridges.lock().iter().map(Bridge::status).collect()
    }

    /// Stops every bridge (each waits, bounded, for what it has in flight and commits its
    /// cursor). Call before the log closes.
    pub async fn stop(&self) {
        let bridges = std::mem::take(&mut *self.bridges.lock());
        futures_util::future::join_all(bridges.into_iter().map(Bridge::stop)).await;
    }

    /// Appends the bridges' metrics in the Prometheus text format, one series per bridge
    /// labelled `bridge="<name>"`.
    pub fn render_metrics(&self, out: &mut String) {
        let statuses = self.statuses();
        if statuses.is_empty() {
            return;
        }
        type Get = fn(&Snapshot) -> u64;
        let series: [(&str, &str, &str, Get); 8] = [
            (
                "gateway_bridge_connected",
                "gauge",
                "1 while the bridge is connected to its remote, else 0.",
                |s| u64::from(s.state == bridge::State::Connected),
            ),
            (
                "gateway_bridge_lag_messages",
                "gauge",
                "Messages published since the oldest one the bridge has not forwarded yet.",
                |s| s.lag,
            ),
            (
                "gateway_bridge_forwarded_out_total",
                "counter",
                "Messages forwarded to the remote and acknowledged by it.",
                |s| s.forwarded_out,
            ),
            (
                "gateway_bridge_forwarded_in_total",
                "counter",
                "Messages received from the remote and stored.",
                |s| s.forwarded_in,
            ),
            (
                "gateway_bridge_skipped_lag_total",
                "counter",
                "Outbound messages skipped because the bridge fell more than max_lag behind.",
                |s| s.skipped_lag,
            ),
            (
                "gateway_bridge_lost_retention_total",
                "counter",
                "Log positions removed by retention before the bridge forwarded them.",
                |s| s.lost_retention,
            ),
            (
                "gateway_bridge_loops_prevented_total",
                "counter",
                "Inbound messages dropped because they had left through the same bridge.",
                |s| s.loops_prevented,
            ),
            (
                "gateway_bridge_reconnects_total",
                "counter",
                "Reconnections to the remote after the first connection.",
                |s| s.reconnects,
            ),
        ];
        for (name, kind, help, get) in series {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
            for s in &statuses {
                let label = s
                    .name
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = writeln!(out, "{name}{{bridge=\"{label}\"}} {}", get(s));
            }
        }
    }
}
