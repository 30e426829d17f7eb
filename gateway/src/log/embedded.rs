//! [`EmbeddedLog`]: the default [`MessageLog`], a fjall database in one directory with a single
//! group-commit writer task. See [`super::store`] for the on-disk layout and
//! `docs/design-notes-store.md` for why fjall.

use super::retention::SweepReport;
use super::state::WriterState;
use super::store::Store;
use super::writer::{self, AppendReply, Request, Shared, WriterConfig};
use super::{AppendFuture, BacklogGuard, DedupeKey, LogError, MessageLog, ReleaseFeed, Ticket};
use crate::core::message::now_ms;
use crate::core::namespace::NamespaceRules;
use crate::core::{Message, StoredMessage};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Tuning of the embedded log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// Most requests folded into one group commit. Larger batches mean fewer fsyncs under
    /// load; the latency of one commit grows with it.
    pub max_batch: usize,
    /// Capacity of the release feed, in batches. When live fan-out falls this far behind,
    /// the writer waits, and producers with it.
    pub feed_capacity: usize,
    /// How long a de-duplication key is kept when nobody forgets it explicitly (browser
    /// `msg_id`s; MQTT QoS 2 keys are forgotten on PUBREL).
    pub dedupe_ttl: Duration,
    /// Period of the retention sweep (history age, de-duplication TTL, retained expiry).
    pub retention_interval: Duration,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            max_batch: 4096,
            feed_capacity: 256,
            dedupe_ttl: Duration::from_secs(600),
            retention_interval: Duration::from_secs(30),
        }
    }
}

/// The embedded durable log. Reads go straight to the store; every write goes through one
/// writer task that batches, fsyncs and releases.
pub struct EmbeddedLog {
    pub(super) store: Store,
    epoch: u64,
    trims: Arc<super::trims::TrimMarks>,
    shared: Arc<Shared>,
    /// Unbounded so that [`MessageLog::submit`] can queue without waiting; every request
    /// has a caller awaiting its answer, which bounds what can be queued.
    tx: mpsc::UnboundedSender<Request>,
    writer: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

impl EmbeddedLog {
    /// Opens (or creates) the log in `dir` and starts its writer task; must be called inside
    /// a tokio runtime. Returns the log and the feed of released batches for live fan-out.
    ///
    /// `dir` is the log's own directory (created if missing). Opening reads the channel
    /// index once to rebuild the per-channel counts that count retention needs.
    ///
    /// Fails with [`LogError::Incompatible`] when `dir` holds a store in another format, and
    /// [`LogError::Storage`] when it cannot be opened (for instance, another process has it).
    ///
    /// # Panics
    /// Outside a tokio runtime (it spawns the writer task).
    pub fn open(
        dir: &Path,
        rules: Arc<NamespaceRules>,
        opts: LogOptions,
    ) -> Result<(Arc<EmbeddedLog>, ReleaseFeed), LogError> {
        let store = Store::open(dir)?;
        let ttl_ms = u64::try_from(opts.dedupe_ttl.as_millis()).unwrap_or(u64::MAX);
        let state = WriterState::load(store.clone(), rules, ttl_ms)?;
        let shared = Arc::new(Shared::default());
        shared.released.store(state.last_seq(), Ordering::Release);
        shared
            .first
            .store(state.history.lowest().unwrap_or(0), Ordering::Release);
        let epoch = state.epoch;
        let trims = state.trims.clone();
        tracing::info!(
            dir = %dir.display(),
            epoch,
            next_seq = state.next_seq,
            channels = state.history.len(),
            "log opened"
        );
        let max_batch = opts.max_batch.max(1);
        let (tx, rx) = mpsc::unbounded_channel();
        let (feed_tx, feed_rx) = mpsc::channel(opts.feed_capacity.max(1));
        let cfg = WriterConfig {
            max_batch,
            retention_interval: opts.retention_interval,
        };
        let handle = tokio::spawn(writer::run(state, rx, feed_tx, shared.clone(), cfg));
        let log = EmbeddedLog {
            store,
            epoch,
            trims,
            shared,
            tx,
            writer: parking_lot::Mutex::new(Some(handle)),
        };
        Ok((Arc::new(log), feed_rx))
    }

    /// Stops accepting writes, lets the writer finish everything already queued, and waits
    /// for it to end. Reads keep working. Calling it again is harmless.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Request::Close);
        let handle = self.writer.lock().take();
        if let Some(h) = handle {
            if let Err(e) = h.await {
                tracing::error!(%e, "log writer ended abnormally");
            }
        }
    }

    /// Runs retention now, as of `now_ms` (ms since the Unix epoch), through the writer. The
    /// writer also runs it every `retention_interval` with the system clock.
    pub async fn sweep(&self, now_ms: u64) -> Result<SweepReport, LogError> {
        let (reply, rx) = oneshot::channel();
        self.enqueue(Request::Sweep {
            now_ms,
            reply: Some(reply),
        })?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    /// How many fsyncs the writer has issued since open. With group commit this grows much
    /// more slowly than the number of reliable appends; exported as a metric.
    pub fn fsync_count(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// Raises a read's start to the lowest sequence number in history: below it lie only
    /// deleted entries, which the store would walk one by one until compaction drops them.
    fn skip_deleted(&self, from_seq: u64) -> u64 {
        // Only moves up after the entries below it are deleted, so it never skips a live one.
        from_seq.max(self.shared.first.load(Ordering::Acquire))
    }

    fn enqueue(&self, req: Request) -> Result<(), LogError> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(LogError::Closed);
        }
        self.tx.send(req).map_err(|_| LogError::Closed)
    }

    fn enqueue_append(
        &self,
        msg: Message,
        dedupe: Option<DedupeKey>,
        reply: AppendReply,
    ) -> Result<(), LogError> {
        self.enqueue(Request::Append {
            msg: Box::new(msg),
            dedupe,
            reply,
        })
    }

    async fn done(&self, make: impl FnOnce(writer::Done) -> Request) -> Result<(), LogError> {
        let (reply, rx) = oneshot::channel();
        self.enqueue(make(writer::Done::Once(reply)))?;
        rx.await.map_err(|_| LogError::Closed)?
    }
}

#[async_trait::async_trait]
impl MessageLog for EmbeddedLog {
    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn released(&self) -> u64 {
        self.shared.released.load(Ordering::Acquire)
    }

    fn first_seq(&self) -> u64 {
        // Read `released` first: the writer moves `first` before raising `released`.
        let released = self.released();
        match self.shared.first.load(Ordering::Acquire) {
            0 => released + 1,
            lo => lo,
        }
    }

    fn submit(&self, msg: Message, dedupe: Option<DedupeKey>) -> AppendFuture {
        let (reply, rx) = oneshot::channel();
        let queued = self.enqueue_append(msg, dedupe, AppendReply::Once(reply));
        Box::pin(async move {
            queued?;
            rx.await.map_err(|_| LogError::Closed)?
        })
    }

    fn submit_queued(&self, msg: Message, dedupe: Option<DedupeKey>, ticket: Ticket) {
        // On failure the request, and with it the ticket, is dropped: it answers `Closed`.
        let _ = self.enqueue_append(msg, dedupe, AppendReply::Queued(ticket));
    }

    fn submit_counted(&self, msg: Message, guard: BacklogGuard) {
        // On failure the request, and with it the guard, is dropped: the count goes down.
        let _ = self.enqueue_append(msg, None, AppendReply::Counted(guard));
    }

    fn forget_dedupe_queued(&self, key: DedupeKey, ticket: Ticket) {
        let _ = self.enqueue(Request::ForgetDedupe {
            key,
            reply: writer::Done::Queued(ticket),
        });
    }

    async fn forget_dedupe(&self, key: DedupeKey) -> Result<(), LogError> {
        self.done(|reply| Request::ForgetDedupe { key, reply })
            .await
    }

    fn trimmed_after(&self, filter: &str, after: u64) -> Vec<(String, u64)> {
        self.trims.after(filter, after)
    }

    fn trim_generation(&self) -> u64 {
        self.trims.generation()
    }

    fn read(&self, from_seq: u64, max: usize) -> Result<Vec<Arc<StoredMessage>>, LogError> {
        self.store.read_range(
            self.epoch,
            self.skip_deleted(from_seq),
            self.released(),
            max,
            &self.trims,
        )
    }

    fn read_back(&self, to_seq: u64, max: usize) -> Result<Vec<Arc<StoredMessage>>, LogError> {
        self.store.read_range_rev(
            self.epoch,
            self.skip_deleted(0),
            to_seq.min(self.released()),
            max,
            &self.trims,
        )
    }

    fn read_channel(
        &self,
        channel: &str,
        from_seq: u64,
        max: usize,
    ) -> Result<Vec<Arc<StoredMessage>>, LogError> {
        let from = self.skip_deleted(from_seq);
        self.store
            .read_channel_range(self.epoch, channel, from, self.released(), max, &self.trims)
    }

    fn retained(&self, filter: &str) -> Result<Vec<Arc<StoredMessage>>, LogError> {
        self.store
            .retained_matching(filter, now_ms(), self.released())
    }

    fn session_load(&self, client_id: &str) -> Result<Option<Vec<u8>>, LogError> {
        self.store.session(client_id)
    }

    async fn session_store(&self, client_id: &str, state: Vec<u8>) -> Result<(), LogError> {
        let client_id = client_id.to_owned();
        self.done(|reply| Request::SessionStore {
            client_id,
            state,
            reply,
        })
        .await
    }

    async fn session_delete(&self, client_id: &str) -> Result<(), LogError> {
        let client_id = client_id.to_owned();
        self.done(|reply| Request::SessionDelete { client_id, reply })
            .await
    }

    fn session_list(&self) -> Result<Vec<(String, Vec<u8>)>, LogError> {
        self.store.sessions()
    }

    async fn flush(&self) -> Result<(), LogError> {
        self.done(|reply| Request::Flush { reply }).await
    }
}
