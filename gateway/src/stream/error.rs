//! Errors of the browser protocol, each with a stable machine-readable code.
//!
//! The same codes appear in WebSocket `error` frames, SSE/long-poll refusals and REST error
//! bodies, so a client handles them once. Codes never change meaning; new ones may be added.

use crate::log::LogError;

/// What went wrong with a client's request. [`StreamError::code`] is the stable code sent
/// to the client; the `Display` text is the human explanation next to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The frame or body is not JSON, or not the expected shape.
    #[error("malformed JSON: {0}")]
    BadJson(String),
    /// The `op` is not one the server knows.
    #[error(
        "unknown op {0:?}; expected one of auth, subscribe, unsubscribe, publish, presence, ping"
    )]
    UnknownOp(String),
    /// The frame is larger than `browser.max_frame_size`.
    #[error("frame of {size} bytes is larger than the limit of {max} bytes")]
    FrameTooLarge {
        /// Size received.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A field is missing or has a value out of range.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The filter is not a valid MQTT filter (or is a `$share/` filter).
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    /// The channel is not a valid topic name.
    #[error("invalid channel: {0}")]
    InvalidTopic(String),
    /// Publishing to a `$` channel is reserved to the server.
    #[error("channels starting with '$' are reserved to the server; publish to another channel")]
    ForbiddenTopic,
    /// The position cannot be read, or is ahead of the log.
    #[error("bad position: {0}")]
    BadPosition(String),
    /// The payload does not decode with the given encoding.
    #[error("bad payload: {0}")]
    BadPayload(String),
    /// The connection holds `browser.max_subscriptions` already.
    #[error("too many subscriptions on this connection (limit {0}); unsubscribe first")]
    TooManySubscriptions(usize),
    /// `unsubscribe` of a filter the connection does not hold.
    #[error("not subscribed to {0:?}")]
    NotSubscribed(String),
    /// The log could not store or read; the request may be retried.
    #[error("storage failed: {0}; retry later")]
    Storage(String),
    /// The gateway is shutting down; reconnect later.
    #[error("the gateway is shutting down; reconnect later")]
    Unavailable,
}

impl StreamError {
    /// The stable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            StreamError::BadJson(_) => "bad_json",
            StreamError::UnknownOp(_) => "unknown_op",
            StreamError::FrameTooLarge { .. } => "frame_too_large",
            StreamError::BadRequest(_) => "bad_request",
            StreamError::InvalidFilter(_) => "invalid_filter",
            StreamError::InvalidTopic(_) => "invalid_channel",
            StreamError::ForbiddenTopic => "forbidden_channel",
            StreamError::BadPosition(_) => "bad_position",
            StreamError::BadPayload(_) => "bad_payload",
            StreamError::TooManySubscriptions(_) => "too_many_subscriptions",
            StreamError::NotSubscribed(_) => "not_subscribed",
            StreamError::Storage(_) => "storage",
            StreamError::Unavailable => "unavailable",
        }
    }
}

impl From<LogError> for StreamError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Closed => StreamError::Unavailable,
            other => StreamError::Storage(other.to_string()),
        }
    }
}
