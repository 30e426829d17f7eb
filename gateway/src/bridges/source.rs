//! [`LogSource`]: the outbound side of a bridge over the gateway's log.
//!
//! It reads the log from the bridge's cursor with [`MessageLog::read`], keeps only messages
//! its out filters match and that have not expired, and wakes the bridge through an
//! [`Outbox`] subscribed in the broker's index like an MQTT connection's (only as a signal:
//! the deliveries themselves are discarded and everything is read from the log). Stretches
//! of the log with no matching message are passed over in steps of a few thousand
//! positions, or after a second of quiet, so an idle bridge shows no lag and a busy log of
//! other traffic costs the bridge one read per step.
//!
//! The cursor is kept with [`MessageLog::session_store`] under `\0bridge\0<name>\0out`
//! (MQTT client ids cannot contain NUL, so the key cannot collide with a session), together
//! with the log's epoch: a cursor from another life of the store is ignored.

use crate::broker::outbox::Outbox;
use crate::broker::{Broker, ConnId, Subscriber};
use crate::core::message::now_ms;
use crate::core::topic::{self, TopicLimits};
use crate::log::{LogError, MessageLog};
use bridge::{BridgeMessage, BridgeSource, Props, SourceBatch, SourceError, SourceMessage};
use std::sync::Arc;
use std::time::Duration;

/// Longest a waiting bridge sleeps without a matching message, so its cursor can move past
/// other traffic.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// Positions of other traffic a waiting bridge lets pile up before it reads past them.
const SKIP_STEP: u64 = 4096;

/// Deliveries the wake-up outbox holds; it only needs to signal.
const OUTBOX_CAPACITY: usize = 1024;

/// Format version of the stored cursor.
const CURSOR_VERSION: u8 = 1;

/// A bridge's source over the log.
pub struct LogSource {
    log: Arc<dyn MessageLog>,
    key: String,
    /// The out rules' local filters, valid ones only.
    filters: Vec<String>,
    outbox: Arc<Outbox>,
    broker: Arc<Broker>,
    conn: ConnId,
}

/// The `session_store` key of a bridge's record in `direction` (`out` or `in`).
pub(crate) fn state_key(name: &str, direction: &str) -> String {
    format!("\0bridge\0{name}\0{direction}")
}

impl LogSource {
    /// A source for the bridge `name` forwarding messages that match `filters`; subscribes
    /// its wake-up outbox in `broker`.
    pub fn new(
        name: &str,
        filters: &[String],
        log: Arc<dyn MessageLog>,
        broker: &Arc<Broker>,
        limits: &TopicLimits,
    ) -> LogSource {
        let outbox = Outbox::new(OUTBOX_CAPACITY, true);
        let conn = broker.next_conn_id();
        let filters: Vec<String> = filters
            .iter()
            .filter(|f| matches!(topic::validate_filter(f, limits), Ok(r) if !r.is_shared()))
            .cloned()
            .collect();
        for f in &filters {
            broker.subscribe(
                f,
                conn,
                Subscriber {
                    outbox: outbox.clone(),
                    share: None,
                },
            );
        }
        LogSource {
            log,
            key: state_key(name, "out"),
            filters,
            outbox,
            broker: broker.clone(),
            conn,
        }
    }

    fn wanted(&self, topic: &str) -> bool {
        self.filters.iter().any(|f| topic::matches(f, topic))
    }
}

impl Drop for LogSource {
    fn drop(&mut self) {
        for f in &self.filters {
            self.broker.unsubscribe(f, self.conn);
        }
        self.outbox.close();
    }
}

fn storage(e: LogError) -> SourceError {
    match e {
        LogError::Closed => SourceError::Closed,
        other => SourceError::Storage(other.to_string()),
    }
}

#[async_trait::async_trait]
impl BridgeSource for LogSource {
    fn committed(&self) -> Result<Option<u64>, SourceError> {
        let Some(rec) = self.log.session_load(&self.key).map_err(storage)? else {
            return Ok(None);
        };
        match rec.as_slice() {
            [CURSOR_VERSION, rest @ ..] if rest.len() == 16 => {
                let (epoch, cursor) = rest.split_at(8);
                let epoch = u64::from_be_bytes(epoch.try_into().unwrap_or_default());
                let cursor = u64::from_be_bytes(cursor.try_into().unwrap_or_default());
                if epoch == self.log.epoch() {
                    Ok(Some(cursor))
                } else {
                    tracing::warn!(
                        key = %self.key.replace('\0', "/"),
                        "bridge cursor belongs to an earlier store (epoch {epoch}); starting \
                         from now"
                    );
                    Ok(None)
                }
            }
            _ => Err(SourceError::Storage(
                "the stored bridge cursor has an unknown format".into(),
            )),
        }
    }

    async fn commit(&self, cursor: u64) -> Result<(), SourceError> {
        let mut rec = Vec::with_capacity(17);
        rec.push(CURSOR_VERSION);
        rec.extend_from_slice(&self.log.epoch().to_be_bytes());
        rec.extend_from_slice(&cursor.to_be_bytes());
        self.log
            .session_store(&self.key, rec)
            .await
            .map_err(storage)
    }

    fn read(&self, from: u64, max: usize) -> Result<SourceBatch, SourceError> {
        // Everything released before the read is covered by it when it comes back short.
        let released = self.log.released();
        let first = self.log.first_seq();
        let (from, missing) = if from < first && from <= released {
            (first, first - from)
        } else {
            (from, 0)
        };
        let found = self.log.read(from, max.max(1)).map_err(storage)?;
        let full = found.len() >= max.max(1);
        let mut next = from;
        let now = now_ms();
        let mut messages = Vec::new();
        for m in found {
            next = next.max(m.pos.seq + 1);
            let msg = &m.msg;
            if !self.wanted(&msg.topic) {
                continue;
            }
            let expiry = msg.remaining_expiry(now);
            if expiry == Some(0) {
                continue;
            }
            messages.push(SourceMessage {
                seq: m.pos.seq,
                msg: BridgeMessage {
                    topic: msg.topic.clone(),
                    payload: msg.payload.clone(),
                    qos: match msg.qos {
                        crate::core::QoS::AtMostOnce => bridge::QoS::AtMostOnce,
                        crate::core::QoS::AtLeastOnce => bridge::QoS::AtLeastOnce,
                        crate::core::QoS::ExactlyOnce => bridge::QoS::ExactlyOnce,
                    },
                    retain: msg.retain,
                    props: Props {
                        payload_format_indicator: msg.props.payload_format_indicator,
                        message_expiry_interval: expiry,
                        content_type: msg.props.content_type.clone(),
                        response_topic: msg.props.response_topic.clone(),
                        correlation_data: msg.props.correlation_data.clone(),
                        user_properties: msg.props.user_properties.clone(),
                    },
                    origin: msg.origin.clone(),
                },
            });
        }
        if !full {
            next = next.max(released + 1).max(from);
        }
        Ok(SourceBatch {
            messages,
            next,
            missing,
        })
    }

    async fn wait(&self, from: u64) {
        // Every matching message released after the bridge's last read reaches the outbox,
        // so with an empty outbox only other traffic lies ahead: pass over it in large
        // steps (or after `IDLE_WAKE`) rather than on every message.
        let behind = (self.log.released() + 1).saturating_sub(from);
        if behind < SKIP_STEP && self.outbox.is_empty() {
            tokio::select! {
                _ = self.outbox.notified() => {}
                _ = tokio::time::sleep(IDLE_WAKE) => {}
            }
        }
        // Only a signal: what it holds is read from the log.
        let _ = self.outbox.drain(usize::MAX);
    }

    fn head(&self) -> u64 {
        self.log.released() + 1
    }
}
