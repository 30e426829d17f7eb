//! The log: one sequenced, durable record of every accepted message, plus the tables that
//! must change atomically with it (retained messages, de-duplication keys, MQTT sessions).
//!
//! Everything that publishes goes through [`MessageLog::append`]; everything that consumes is
//! a cursor over sequence numbers, fed live from the release feed while it keeps up and from
//! [`MessageLog::read`] when it falls behind.
//!
//! Layout:
//! - `mod.rs`: the [`MessageLog`] trait and its contract, shared types.
//! - `embedded.rs`: [`EmbeddedLog`], the default implementation, and [`LogOptions`].
//! - `store.rs`: the on-disk layout (fjall keyspaces) and every read.
//! - `keys.rs`: key encodings whose byte order is the log's order.
//! - `block.rs`: history blocks and channel-index entries (many messages per record).
//! - `state.rs`: the writer's in-memory state, rebuilt at open (format check, epoch, counts).
//! - `history.rs`: per-channel counts and oldest entries, and the global lowest, in memory.
//! - `writer.rs`: the writer task: drain, commit, release, answer.
//! - `answers.rs`: per-submitter answer queues for pipelined appends.
//! - `batch.rs`: one group commit.
//! - `retention.rs`: history trimming by count and age, de-duplication TTL, retained expiry.
//! - `trims.rs`: per-channel marks of what retention removed, for exact `reset`s.

use crate::core::{Message, StoredMessage};
use std::sync::Arc;

pub mod answers;
mod batch;
mod block;
pub mod embedded;
mod history;
mod keys;
mod retention;
mod state;
mod store;
#[cfg(test)]
mod tests;
mod trims;
mod writer;

pub use answers::{Answer, AnswerQueue, Backlog, BacklogGuard, Ticket};
pub use embedded::{EmbeddedLog, LogOptions};
pub use retention::SweepReport;

/// A key under which a publish is de-duplicated: (MQTT client id, packet id) for an incoming
/// QoS 2 publish, or a browser `msg_id`. Opaque bytes; callers prefix them by transport so
/// they cannot collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupeKey(pub Vec<u8>);

/// The outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The message was new and now has this position.
    New(crate::core::Position),
    /// The de-duplication key was already present: nothing was appended, and this is the
    /// position the first copy received.
    Duplicate(crate::core::Position),
}

impl Appended {
    /// The position of the message, new or earlier.
    pub fn position(self) -> crate::core::Position {
        match self {
            Appended::New(p) | Appended::Duplicate(p) => p,
        }
    }
}

/// Errors from the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The storage engine failed (disk full, I/O error, corruption). The message was not
    /// accepted; the publisher must not be acknowledged.
    #[error("storage failed: {0}")]
    Storage(String),
    /// The data directory holds data this version cannot read.
    #[error("incompatible data in the store: {0}")]
    Incompatible(String),
    /// The log is shutting down and accepts no more writes.
    #[error("the log is closed")]
    Closed,
}

/// Ordered, durable message log.
///
/// # Contract
/// - **Order.** Sequence numbers are assigned in the order appends reach the writer, and are
///   strictly increasing within an epoch (gaps are allowed, reuse is not, even across a
///   crash). The release feed hands every message to live fan-out exactly once, in sequence
///   order, and [`MessageLog::released`] is raised before a message is handed over.
/// - **Durability.** `append` of a QoS 1 or 2 message resolves only after the message, its
///   retained-table change and its de-duplication key are on disk together (one atomic batch,
///   fsync'd). A QoS 0 append resolves once sequenced; it may be released before fsync and
///   may be lost in a crash, but its sequence number is never reused.
/// - **Atomicity.** A message, its retained-table update and its de-duplication key are
///   written in one batch: after a crash either all are present or none.
/// - **Visibility.** `read` returns only released messages, so a reader never sees a message
///   that live subscribers have not been offered, nor a reliable one that is not durable.
/// - **Retention** removes whole messages from history per the namespace rules; the retained
///   table keeps its own copy and is not affected.
#[async_trait::async_trait]
pub trait MessageLog: Send + Sync + 'static {
    /// The store's epoch; constant for the life of the store.
    fn epoch(&self) -> u64;

    /// Highest sequence number released to live fan-out (0 before the first message).
    fn released(&self) -> u64;

    /// Lowest sequence number still in history, or `released() + 1` when history is empty.
    /// A reader whose cursor is below this has lost messages to retention.
    fn first_seq(&self) -> u64;

    /// Appends one message; see the contract for when it resolves. With a `dedupe` key that is
    /// already known, nothing is appended and [`Appended::Duplicate`] is returned.
    async fn append(&self, msg: Message, dedupe: Option<DedupeKey>) -> Result<Appended, LogError> {
        self.submit(msg, dedupe).await
    }

    /// Like [`MessageLog::append`], but the message is queued to the writer *before this
    /// returns*, so messages submitted one after another by the same caller are sequenced in
    /// submission order even though their futures are awaited later (a connection pipelines
    /// many QoS 1 publishes and sends the PUBACKs in order as they resolve). The returned
    /// future owns everything it needs (`'static`).
    fn submit(&self, msg: Message, dedupe: Option<DedupeKey>) -> AppendFuture;

    /// Like [`MessageLog::submit`], but the outcome goes to `ticket`'s [`AnswerQueue`]
    /// instead of a future of its own: a connection that pipelines many publishes then takes
    /// a whole group commit's answers in one receive, with no allocation or wake-up per
    /// message. Answers to one queue arrive in submission order while the log runs.
    fn submit_queued(&self, msg: Message, dedupe: Option<DedupeKey>, ticket: Ticket);

    /// [`MessageLog::forget_dedupe`] answered on `ticket`'s queue, in order with the
    /// submitter's appends.
    fn forget_dedupe_queued(&self, key: DedupeKey, ticket: Ticket);

    /// Appends a message nobody waits for (QoS 0): `guard` keeps it counted in its submitter's
    /// [`Backlog`] until the writer has written it, and a failure is only logged.
    fn submit_counted(&self, msg: Message, guard: BacklogGuard);

    /// Removes a de-duplication key (MQTT PUBREL finishes a QoS 2 exchange). Durable on return.
    async fn forget_dedupe(&self, key: DedupeKey) -> Result<(), LogError>;

    /// Channels matching `filter` (a valid, non-shared MQTT filter) from which retention
    /// removed messages with `seq > after`, each with the highest sequence number removed
    /// from it, sorted by channel. Retention removes a channel's oldest messages first, so a
    /// reader that had everything of such a channel up to `after` has lost `after+1 ..= mark`
    /// of it. Channels whose removals all lie below [`MessageLog::first_seq`] may be left out:
    /// that global check covers them.
    fn trimmed_after(&self, filter: &str, after: u64) -> Vec<(String, u64)>;

    /// Changes when retention removes messages. A reader that reads the same value before
    /// and after reading history knows the read did not race with a removal; when it
    /// differs, [`MessageLog::trimmed_after`] tells what the reader may have missed.
    fn trim_generation(&self) -> u64;

    /// Up to `max` released messages with `seq >= from_seq`, ascending.
    fn read(&self, from_seq: u64, max: usize) -> Result<Vec<Arc<StoredMessage>>, LogError>;

    /// Up to `max` released messages with `seq <= to_seq`, newest first (descending).
    fn read_back(&self, to_seq: u64, max: usize) -> Result<Vec<Arc<StoredMessage>>, LogError>;

    /// Up to `max` released messages of one channel with `seq >= from_seq`, ascending.
    fn read_channel(
        &self,
        channel: &str,
        from_seq: u64,
        max: usize,
    ) -> Result<Vec<Arc<StoredMessage>>, LogError>;

    /// Retained messages whose topic matches `filter` (a valid, non-shared MQTT filter),
    /// excluding expired ones.
    fn retained(&self, filter: &str) -> Result<Vec<Arc<StoredMessage>>, LogError>;

    /// The stored state of a persistent session, if any.
    fn session_load(&self, client_id: &str) -> Result<Option<Vec<u8>>, LogError>;

    /// Stores a persistent session's state. Durable on return.
    async fn session_store(&self, client_id: &str, state: Vec<u8>) -> Result<(), LogError>;

    /// Deletes a persistent session. Durable on return.
    async fn session_delete(&self, client_id: &str) -> Result<(), LogError>;

    /// Every stored session, for start-up (expiry timers) and the REST listing.
    fn session_list(&self) -> Result<Vec<(String, Vec<u8>)>, LogError>;

    /// Resolves when everything submitted before the call is durable. Used at shutdown.
    async fn flush(&self) -> Result<(), LogError>;
}

/// The pending result of [`MessageLog::submit`].
pub type AppendFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Appended, LogError>> + Send>>;

/// Batches of released messages, in sequence order, for the router's live fan-out.
pub type ReleaseFeed = tokio::sync::mpsc::Receiver<Vec<Arc<StoredMessage>>>;
