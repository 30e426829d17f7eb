//! The browser-side subscription engine, shared by every browser transport.
//!
//! WebSocket (`/ws`), SSE (`/sse`), long-poll (`/poll`) and the REST API only adapt their
//! wire format to this module: subscribing with a start point, one cursor per connection,
//! resets when continuity is lost, bounded queues, publishing with de-duplication, presence
//! and the JSON shapes all live here.
//!
//! Layout:
//! - `mod.rs`: [`StreamHub`], what every connection shares.
//! - `options.rs`: subscription options and their validation.
//! - `start.rs`: where a subscription starts (`since`, `rewind`, `rewind_seconds`), resets.
//! - `engine.rs`: [`Stream`], one connection's subscriptions and cursor.
//! - `query.rs`: subscription options in a query string (SSE, long-poll).
//! - `publish.rs`: browser publishes: validation, payload decoding, de-duplication keys.
//! - `history.rs`: history pages for REST.
//! - `encode.rs`: the JSON shapes, and the shared per-message encoding cache.
//! - `stats.rs`: per-channel message rates for the channel listing.
//! - `error.rs`: [`StreamError`] and its stable codes.

pub mod encode;
pub mod engine;
pub mod error;
pub mod history;
pub mod options;
pub mod publish;
pub mod query;
pub mod start;
pub mod stats;
#[cfg(test)]
mod tests;

pub use engine::{Event, Stream};
pub use error::StreamError;
pub use options::{RawOptions, Start, SubscribeSpec};

use crate::broker::Broker;
use crate::config::{BrowserConfig, Config};
use crate::core::topic::TopicLimits;
use crate::log::MessageLog;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// What every browser connection and REST handler shares.
pub struct StreamHub {
    /// The broker: subscription index, presence, shutdown signal.
    pub broker: Arc<Broker>,
    /// The log (same as the broker's).
    pub log: Arc<dyn MessageLog>,
    /// `[browser]` settings.
    pub config: BrowserConfig,
    /// Topic limits from `[mqtt]`, applied to browser filters and channels too.
    pub limits: TopicLimits,
    /// Encodes protocol objects; caches `msg` encodings for fan-out.
    pub encoder: encode::Encoder,
    /// Per-channel rates.
    pub channels: Arc<stats::ChannelStats>,
    /// Browser connections open now, per transport.
    pub open: OpenCounts,
}

/// Open browser connections by transport (for metrics and benchmarks).
#[derive(Debug, Default)]
pub struct OpenCounts {
    /// WebSocket `/ws`.
    pub ws: AtomicU64,
    /// SSE `/sse`.
    pub sse: AtomicU64,
    /// Long-poll requests waiting.
    pub poll: AtomicU64,
}

impl StreamHub {
    /// Creates the hub and starts the channel-rate tap. Must be called inside a tokio
    /// runtime.
    pub fn start(broker: Arc<Broker>, config: &Config) -> Arc<StreamHub> {
        let channels = stats::ChannelStats::start(&broker);
        Arc::new(StreamHub {
            log: broker.log.clone(),
            broker,
            config: config.browser.clone(),
            limits: config.topic_limits(),
            encoder: encode::Encoder::new(),
            channels,
            open: OpenCounts::default(),
        })
    }
}
