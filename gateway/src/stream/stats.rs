//! Per-channel activity for the REST channel listing: messages seen, when the last one
//! came, and a rate averaged over about a minute.
//!
//! A tap subscribes to `#` like any connection (so it sees every channel that does not
//! start with `$`) with a drop-oldest outbox: it never slows fan-out, and under overload the
//! rates undercount instead of using memory. At most [`MAX_CHANNELS`] channels are tracked;
//! past that the least recently active are forgotten.

use crate::broker::outbox::Outbox;
use crate::broker::{Broker, Subscriber};
use crate::core::message::now_ms;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// Channels tracked at most.
pub const MAX_CHANNELS: usize = 100_000;
/// Deliveries queued for the tap before it drops the oldest.
const TAP_QUEUE: usize = 65_536;
/// Time constant of the rate average, in seconds.
const TAU_S: f64 = 60.0;

#[derive(Debug, Clone, Copy)]
struct Stat {
    count: u64,
    last_ms: u64,
    /// Exponentially decayed rate at `last_ms`, messages per second.
    rate: f64,
}

/// One channel in the listing.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChannelInfo {
    /// Channel name.
    pub channel: String,
    /// Messages seen since the gateway started.
    pub messages: u64,
    /// Messages per second, averaged over about a minute.
    pub rate: f64,
    /// When the last message came (ms since the Unix epoch).
    pub last_ts: u64,
    /// Connections (MQTT and browser) subscribed to a filter matching the channel.
    pub subscribers: usize,
}

/// The tracked channels.
#[derive(Debug, Default)]
pub struct ChannelStats {
    map: Mutex<HashMap<String, Stat>>,
    /// Messages the tap lost to overload (rates undercount by that much).
    pub missed: std::sync::atomic::AtomicU64,
}

impl ChannelStats {
    /// Registers the tap with the broker and starts draining it.
    pub fn start(broker: &Arc<Broker>) -> Arc<ChannelStats> {
        let stats = Arc::new(ChannelStats::default());
        let outbox = Outbox::new(TAP_QUEUE, false);
        let conn = broker.next_conn_id();
        broker.subscribe(
            "#",
            conn,
            Subscriber {
                outbox: outbox.clone(),
                share: None,
            },
        );
        let s = stats.clone();
        let shutdown = broker.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let d = outbox.drain(4096);
                if d.dropped > 0 {
                    s.missed
                        .fetch_add(d.dropped, std::sync::atomic::Ordering::Relaxed);
                }
                if d.deliveries.is_empty() {
                    tokio::select! {
                        _ = outbox.notified() => continue,
                        _ = shutdown.cancelled() => break,
                    }
                }
                s.record_all(
                    d.deliveries.iter().map(|d| d.msg.msg.topic.as_str()),
                    now_ms(),
                );
            }
            outbox.close();
        });
        stats
    }

    /// Counts one message on `channel` at `now_ms`.
    pub fn record(&self, channel: &str, now_ms: u64) {
        record_n(&mut self.map.lock(), channel, 1, now_ms);
    }

    /// Counts one message per item of `channels`, all at `now_ms`, under one lock. A run of
    /// messages on the same channel (a stream) costs one lookup.
    pub fn record_all<'a>(&self, channels: impl IntoIterator<Item = &'a str>, now_ms: u64) {
        let mut map = self.map.lock();
        let mut run: Option<(&str, u64)> = None;
        for c in channels {
            match &mut run {
                Some((name, n)) if *name == c => *n += 1,
                _ => {
                    if let Some((name, n)) = run.replace((c, 1)) {
                        record_n(&mut map, name, n, now_ms);
                    }
                }
            }
        }
        if let Some((name, n)) = run {
            record_n(&mut map, name, n, now_ms);
        }
    }

    /// Channels matching `filter` (`None`: all), most active first, at most `limit`;
    /// `subscribers` is filled in by `count`.
    pub fn list(
        &self,
        filter: Option<&str>,
        limit: usize,
        now_ms: u64,
        count: impl Fn(&str) -> usize,
    ) -> Vec<ChannelInfo> {
        let mut out: Vec<ChannelInfo> = self
            .map
            .lock()
            .iter()
            .filter(|(c, _)| filter.is_none_or(|f| crate::core::topic::matches(f, c)))
            .map(|(c, st)| ChannelInfo {
                channel: c.clone(),
                messages: st.count,
                rate: (decayed(st.rate, st.last_ms, now_ms) * 1000.0).round() / 1000.0,
                last_ts: st.last_ms,
                subscribers: 0,
            })
            .collect();
        out.sort_by(|a, b| {
            b.rate
                .total_cmp(&a.rate)
                .then(b.last_ts.cmp(&a.last_ts))
                .then(a.channel.cmp(&b.channel))
        });
        out.truncate(limit);
        for c in &mut out {
            c.subscribers = count(&c.channel);
        }
        out
    }
}

/// Counts `n` messages on `channel` at `now_ms`.
fn record_n(map: &mut HashMap<String, Stat>, channel: &str, n: u64, now_ms: u64) {
    let add = n as f64 / TAU_S;
    match map.get_mut(channel) {
        Some(st) => {
            st.rate = decayed(st.rate, st.last_ms, now_ms) + add;
            st.last_ms = now_ms;
            st.count += n;
        }
        None => {
            if map.len() >= MAX_CHANNELS {
                forget_stalest(map);
            }
            map.insert(
                channel.to_owned(),
                Stat {
                    count: n,
                    last_ms: now_ms,
                    rate: add,
                },
            );
        }
    }
}

fn decayed(rate: f64, last_ms: u64, now_ms: u64) -> f64 {
    let dt = now_ms.saturating_sub(last_ms) as f64 / 1000.0;
    rate * (-dt / TAU_S).exp()
}

/// Drops the least recently active tenth of the channels.
fn forget_stalest(map: &mut HashMap<String, Stat>) {
    let mut times: Vec<u64> = map.values().map(|s| s.last_ms).collect();
    let cut = times.len() / 10;
    times.select_nth_unstable(cut);
    let threshold = times[cut];
    map.retain(|_, s| s.last_ms > threshold);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_average_and_decay() {
        let s = ChannelStats::default();
        for i in 0..600 {
            s.record("a", 1_000_000 + i * 100);
        }
        s.record("b", 1_060_000);
        let l = s.list(None, 10, 1_060_000, |_| 2);
        assert_eq!(l[0].channel, "a");
        assert!(l[0].rate > 5.0 && l[0].rate < 10.0, "{}", l[0].rate);
        assert_eq!((l[0].messages, l[0].subscribers), (600, 2));
        let later = s.list(Some("a"), 10, 1_060_000 + 600_000, |_| 0);
        assert!(later[0].rate < 0.01, "decays when quiet");
        assert_eq!(later.len(), 1);
    }

    #[test]
    fn recording_many_at_once_counts_each_message_as_recording_them_one_by_one() {
        let batch = ["a", "a", "a", "b", "a", "c", "c"];
        let many = ChannelStats::default();
        let one = ChannelStats::default();
        many.record("a", 1_000);
        one.record("a", 1_000);
        many.record_all(batch, 2_000);
        for c in batch {
            one.record(c, 2_000);
        }
        let l_many = many.list(None, 10, 3_000, |_| 0);
        let l_one = one.list(None, 10, 3_000, |_| 0);
        assert_eq!(l_many, l_one);
        let counts: Vec<(&str, u64)> = l_many
            .iter()
            .map(|c| (c.channel.as_str(), c.messages))
            .collect();
        assert_eq!(counts, [("a", 5), ("c", 2), ("b", 1)]);
    }
}
