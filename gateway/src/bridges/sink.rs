//! [`LogSink`]: the inbound side of a bridge over the gateway's log. Inbound messages are
//! appended like any publish (so they reach every subscriber and history), with the origin
//! `bridge:<name>` the bridge sets; the bridge's inbound session record is kept under
//! `\0bridge\0<name>\0in`.

use super::source::state_key;
use crate::core::message::now_ms;
use crate::core::topic::{self, TopicLimits};
use crate::core::{Message, MessageProps, QoS};
use crate::log::{Appended, DedupeKey, LogError, MessageLog};
use bridge::{Accepted, BridgeMessage, BridgeSink, SinkError, SinkFuture};
use std::sync::Arc;

/// A bridge's sink over the log.
pub struct LogSink {
    log: Arc<dyn MessageLog>,
    key: String,
    limits: TopicLimits,
}

impl LogSink {
    /// A sink for the bridge `name`; local topics are checked against `limits`.
    pub fn new(name: &str, log: Arc<dyn MessageLog>, limits: TopicLimits) -> LogSink {
        LogSink {
            log,
            key: state_key(name, "in"),
            limits,
        }
    }
}

fn sink_error(e: LogError) -> SinkError {
    match e {
        LogError::Closed => SinkError::Closed,
        other => SinkError::Storage(other.to_string()),
    }
}

#[async_trait::async_trait]
impl BridgeSink for LogSink {
    fn submit(&self, msg: BridgeMessage, dedupe: Option<Vec<u8>>) -> SinkFuture {
        if let Err(e) = topic::validate_topic_name(&msg.topic, &self.limits) {
            let why = format!("local topic {:?}: {e}", msg.topic);
            return Box::pin(async move { Err(SinkError::Rejected(why)) });
        }
        let m = Message {
            topic: msg.topic,
            payload: msg.payload,
            qos: match msg.qos {
                bridge::QoS::AtMostOnce => QoS::AtMostOnce,
                bridge::QoS::AtLeastOnce => QoS::AtLeastOnce,
                bridge::QoS::ExactlyOnce => QoS::ExactlyOnce,
            },
            retain: msg.retain,
            props: MessageProps {
                payload_format_indicator: msg.props.payload_format_indicator,
                message_expiry_interval: msg.props.message_expiry_interval,
                content_type: msg.props.content_type,
                response_topic: msg.props.response_topic,
                correlation_data: msg.props.correlation_data,
                user_properties: msg.props.user_properties,
            },
            ts_ms: now_ms(),
            origin: msg.origin,
        };
        let fut = self.log.submit(m, dedupe.map(DedupeKey));
        Box::pin(async move {
            match fut.await {
                Ok(Appended::New(_)) => Ok(Accepted::New),
                Ok(Appended::Duplicate(_)) => Ok(Accepted::Duplicate),
                Err(e) => Err(sink_error(e)),
            }
        })
    }

    async fn forget(&self, dedupe: Vec<u8>) -> Result<(), SinkError> {
        self.log
            .forget_dedupe(DedupeKey(dedupe))
            .await
            .map_err(sink_error)
    }

    fn load_session(&self) -> Result<Option<Vec<u8>>, SinkError> {
        self.log.session_load(&self.key).map_err(sink_error)
    }

    async fn store_session(&self, record: Vec<u8>) -> Result<(), SinkError> {
        self.log
            .session_store(&self.key, record)
            .await
            .map_err(sink_error)
    }
}
