//! [`BridgeSink`]: where inbound messages go. The gateway implements it over its log; tests
//! implement it in memory.

use crate::message::BridgeMessage;
use std::future::Future;
use std::pin::Pin;

/// Why a sink did not take a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The message can never be accepted as it is (for instance its local topic breaks the
    /// sink's topic rules). The bridge acknowledges it to the remote anyway, so that one bad
    /// message does not block the stream forever, and counts and logs it as rejected.
    #[error("the message was refused: {0}")]
    Rejected(String),
    /// The storage behind the sink failed; the message is not stored. The bridge drops the
    /// connection without acknowledging, so the remote sends it again after reconnecting.
    #[error("the bridge's sink failed: {0}")]
    Storage(String),
    /// The sink is shutting down; the bridge stops without acknowledging.
    #[error("the bridge's sink is closed")]
    Closed,
}

/// How a submitted message ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Stored now.
    New,
    /// The de-duplication key was already known: it had been stored before, nothing was
    /// stored now.
    Duplicate,
}

/// The pending result of [`BridgeSink::submit`].
pub type SinkFuture = Pin<Box<dyn Future<Output = Result<Accepted, SinkError>> + Send>>;

/// Where inbound messages go.
///
/// # Contract
/// - **Order.** A message is queued by [`submit`](Self::submit) *before it returns*, so
///   messages submitted one after another are stored in submission order even though their
///   futures are awaited later.
/// - **Durability.** The future of a QoS 1 or 2 message resolves only once the message is
///   durable (it would survive a crash). The bridge acknowledges the remote (PUBACK or
///   PUBREC) only after that, and in the order the remote sent the messages, so a crash
///   between the two makes the remote send the message again: at least once.
/// - **De-duplication.** With a `dedupe` key already known to the sink, nothing is stored
///   and [`Accepted::Duplicate`] is returned. The bridge uses this for QoS 2: a PUBLISH the
///   remote sends again after a reconnect is stored once. [`forget`](Self::forget) removes
///   a key when the QoS 2 exchange ends (PUBREL); it is durable on return. A key is never
///   reused by the bridge within one remote session.
/// - **Session record.** [`load_session`](Self::load_session) and
///   [`store_session`](Self::store_session) keep a small opaque record of the bridge's
///   inbound session (which session its de-duplication keys belong to, which filters are
///   subscribed). `store_session` is durable on return.
#[async_trait::async_trait]
pub trait BridgeSink: Send + Sync + 'static {
    /// Queues one message; see the contract.
    fn submit(&self, msg: BridgeMessage, dedupe: Option<Vec<u8>>) -> SinkFuture;

    /// Forgets a de-duplication key; durable on return.
    async fn forget(&self, dedupe: Vec<u8>) -> Result<(), SinkError>;

    /// The stored inbound session record, if any.
    fn load_session(&self) -> Result<Option<Vec<u8>>, SinkError>;

    /// Stores the inbound session record; durable on return.
    async fn store_session(&self, record: Vec<u8>) -> Result<(), SinkError>;
}
