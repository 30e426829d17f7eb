//! [`BridgeSource`]: where outbound messages come from, and where the outbound cursor is
//! kept. The gateway implements it over its log; tests implement it in memory.

use crate::message::SourceMessage;

/// Why a source could not be read or could not record the cursor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The storage behind the source failed. The bridge logs it, keeps its cursor where it
    /// was and retries after a pause; nothing is skipped.
    #[error("the bridge's source failed: {0}")]
    Storage(String),
    /// The source is shutting down; the bridge stops forwarding.
    #[error("the bridge's source is closed")]
    Closed,
}

/// One read from a source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceBatch {
    /// Messages with `from <= seq < next`, ascending. May be fewer than asked for, and may
    /// include messages no out rule matches (the bridge skips those).
    pub messages: Vec<SourceMessage>,
    /// Where the next read starts: one past the last position this read examined. Equal to
    /// `from` when nothing new was readable. It may be past the last returned message when
    /// the source skipped positions it knows the bridge does not want (other topics,
    /// expired messages).
    pub next: u64,
    /// Positions at or after `from` that the source no longer has (removed by retention
    /// before the bridge read them). The bridge counts and logs them as lost.
    pub missing: u64,
}

/// Where outbound messages come from.
///
/// # Contract
/// - **Order.** [`read`](Self::read) returns messages in strictly increasing `seq`, and a
///   message, once readable, stays at its position: two reads from the same `from` return
///   the same messages (unless retention removed some, which `missing` reports).
/// - **Durability.** Only messages that will survive a crash are readable (for a log with
///   group commit: only what has been fsync'd, for QoS 1 and 2).
/// - **Cursor.** The cursor is the position of the first message the remote has *not*
///   acknowledged. The bridge advances it only after the remote's PUBACK (QoS 1) or PUBCOMP
///   (QoS 2) for every forwarded message before it, or once a message was written (QoS 0),
///   so everything below the cursor is done. [`commit`](Self::commit) makes it durable;
///   after a restart [`committed`](Self::committed) returns the last committed value and the
///   bridge resumes there. Messages between the committed cursor and what the remote had
///   acknowledged before a crash are sent again: delivery is at least once.
/// - **Waking.** [`wait`](Self::wait) resolves when a message at or after `from` may have
///   become readable. It may resolve early or spuriously (the bridge then reads and finds
///   nothing), but it must not sleep through a message that is readable: a source that
///   cannot tell should resolve periodically.
/// - **Cost.** `read`, `head` and `committed` are called from the bridge's task; they must
///   not block for long (a bounded store read is fine).
#[async_trait::async_trait]
pub trait BridgeSource: Send + Sync + 'static {
    /// The last committed cursor, or `None` when this bridge has never committed one (the
    /// bridge then starts at [`head`](Self::head): it forwards what is published from now
    /// on, not the history before it existed).
    fn committed(&self) -> Result<Option<u64>, SourceError>;

    /// Durably records `cursor`; resolves once it would survive a crash. Called with
    /// non-decreasing values.
    async fn commit(&self, cursor: u64) -> Result<(), SourceError>;

    /// Up to `max` messages at or after `from`; see the contract.
    fn read(&self, from: u64, max: usize) -> Result<SourceBatch, SourceError>;

    /// Resolves when a message at or after `from` may be readable; see the contract.
    async fn wait(&self, from: u64);

    /// One past the newest readable position: `head() - cursor` is how far behind the bridge
    /// is, in positions (the lag).
    fn head(&self) -> u64;
}
