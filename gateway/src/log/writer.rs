//! The single writer task: drains queued requests, runs each group commit on a blocking
//! thread (a small one that needs no fsync on the task itself), then publishes `released`,
//! hands the batch to the release feed (awaiting the bounded send: that is the back-pressure
//! on producers) and finally answers the waiters.
//!
//! Sweeps run as their own commits between batches; `Close` stops intake and the task ends
//! once everything queued before it has been written.

use super::answers::{BacklogGuard, Ticket};
use super::batch;
use super::retention::{self, SweepReport};
use super::state::WriterState;
use super::{Appended, DedupeKey, LogError};
use crate::core::message::now_ms;
use crate::core::{Message, StoredMessage};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Where the answer to a request that returns nothing goes.
pub enum Done {
    /// To one waiting caller.
    Once(oneshot::Sender<Result<(), LogError>>),
    /// To a submitter's answer queue.
    Queued(Ticket),
}

impl Done {
    fn send(self, r: Result<(), LogError>) {
        // A caller that stopped waiting is not an error: the write happened regardless.
        match self {
            Done::Once(tx) => drop(tx.send(r)),
            Done::Queued(t) => t.answer(r),
        }
    }
}

/// Where the answer to an append goes.
pub enum AppendReply {
    /// To one waiting caller, with the message's position.
    Once(oneshot::Sender<Result<Appended, LogError>>),
    /// To a submitter's answer queue.
    Queued(Ticket),
    /// Nobody: the submitter only counts its appends in flight (QoS 0). A failure is logged
    /// here instead.
    Counted(BacklogGuard),
}

impl AppendReply {
    fn send(self, r: Result<Appended, LogError>) {
        match self {
            AppendReply::Once(tx) => drop(tx.send(r)),
            AppendReply::Queued(t) => t.answer(r.map(|_| ())),
            AppendReply::Counted(guard) => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "log did not accept a QoS 0 publish");
                }
                drop(guard);
            }
        }
    }
}

/// Work for the writer.
pub enum Request {
    /// Sequence and write one message.
    Append {
        /// The message, boxed so a request is small to move through the queue (a message is
        /// a few hundred bytes; a request moves four times on its way to the store).
        msg: Box<Message>,
        /// Its de-duplication key, if any.
        dedupe: Option<DedupeKey>,
        /// Where the outcome goes.
        reply: AppendReply,
    },
    /// Remove a de-duplication key.
    ForgetDedupe {
        /// The key.
        key: DedupeKey,
        /// Resolved once durable.
        reply: Done,
    },
    /// Write a session's state.
    SessionStore {
        /// Session id.
        client_id: String,
        /// Opaque state.
        state: Vec<u8>,
        /// Resolved once durable.
        reply: Done,
    },
    /// Delete a session.
    SessionDelete {
        /// Session id.
        client_id: String,
        /// Resolved once durable.
        reply: Done,
    },
    /// Make everything before it durable.
    Flush {
        /// Resolved once durable.
        reply: Done,
    },
    /// Run retention at the given time.
    Sweep {
        /// The time retention measures ages against (ms since the Unix epoch).
        now_ms: u64,
        /// Where the report goes (`None` for the periodic sweep).
        reply: Option<oneshot::Sender<Result<SweepReport, LogError>>>,
    },
    /// Stop after everything queued so far.
    Close,
}

/// An answer waiting for its batch to be released.
pub enum Reply {
    /// To an append.
    Append(AppendReply, Result<Appended, LogError>),
    /// To a request that returns nothing.
    Done(Done, Result<(), LogError>),
    /// To a sweep.
    Sweep(
        oneshot::Sender<Result<SweepReport, LogError>>,
        Result<SweepReport, LogError>,
    ),
}

impl Reply {
    fn send(self) {
        // A caller that stopped waiting is not an error: the write happened regardless.
        match self {
            Reply::Append(to, r) => to.send(r),
            Reply::Done(to, r) => to.send(r),
            Reply::Sweep(tx, r) => drop(tx.send(r)),
        }
    }
}

/// State shared between the writer and the readers.
#[derive(Default)]
pub struct Shared {
    /// Highest released sequence number.
    pub released: AtomicU64,
    /// Lowest sequence number in history, 0 when history is empty.
    pub first: AtomicU64,
    /// Number of fsyncs the writer has issued (group commit makes this far below appends).
    pub fsyncs: AtomicU64,
    /// Set by `close`; appends fail fast afterwards.
    pub closed: AtomicBool,
}

/// Settings the writer loop needs.
pub struct WriterConfig {
    /// Most requests folded into one commit.
    pub max_batch: usize,
    /// Period of the retention sweep.
    pub retention_interval: Duration,
}

/// The writer task. Ends when `Close` was processed (or every sender is gone) and the queue is
/// empty, or if a commit thread dies.
pub async fn run(
    mut state: WriterState,
    mut rx: mpsc::UnboundedReceiver<Request>,
    feed: mpsc::Sender<Vec<Arc<StoredMessage>>>,
    shared: Arc<Shared>,
    cfg: WriterConfig,
) {
    let max_batch = cfg.max_batch.max(1);
    let mut tick = tokio::time::interval(cfg.retention_interval.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut buf: Vec<Request> = Vec::with_capacity(max_batch);
    // Reused from batch to batch: fresh large buffers cost a page fault per page each time.
    let mut pending: Vec<Request> = Vec::with_capacity(max_batch);
    loop {
        tokio::select! {
            // The tick first: it is ready once a period, so it cannot starve requests, while
            // requests under sustained load would starve it.
            biased;
            _ = tick.tick() => buf.push(Request::Sweep { now_ms: now_ms(), reply: None }),
            n = rx.recv_many(&mut buf, max_batch) => if n == 0 { break },
        }
        for req in buf.drain(..) {
            match req {
                Request::Sweep { now_ms, reply } => {
                    state = match commit_batch(state, &mut pending, &feed, &shared).await {
                        Some(s) => s,
                        None => return,
                    };
                    state = match run_sweep(state, now_ms, reply, &shared).await {
                        Some(s) => s,
                        None => return,
                    };
                }
                Request::Close => rx.close(),
                other => pending.push(other),
            }
        }
        state = match commit_batch(state, &mut pending, &feed, &shared).await {
            Some(s) => s,
            None => return,
        };
    }
    shared.closed.store(true, Ordering::SeqCst);
}

/// Batches of at most this many requests that need no fsync are committed on the writer task
/// itself: at low load the hand-off to a blocking thread and back added 15-30 µs to a QoS 0
/// message's latency. Bigger batches and every fsync run on a blocking thread, so
/// connections keep running meanwhile (in parallel, given a second core).
const INLINE_MAX: usize = 16;

/// Commits the requests in `reqs` (leaving it empty), on a blocking thread unless the batch
/// is small and needs no fsync (see [`INLINE_MAX`]), then releases and answers. `None` if
/// the blocking thread died (the writer then stops; pending callers see
/// [`LogError::Closed`]).
async fn commit_batch(
    mut state: WriterState,
    reqs: &mut Vec<Request>,
    feed: &mpsc::Sender<Vec<Arc<StoredMessage>>>,
    shared: &Shared,
) -> Option<WriterState> {
    if reqs.is_empty() {
        return Some(state);
    }
    let (state, out) = if reqs.len() <= INLINE_MAX && batch::without_sync(&state, reqs) {
        let out = batch::commit(&mut state, reqs);
        (state, out)
    } else {
        let mut taken = std::mem::take(reqs);
        let joined = tokio::task::spawn_blocking(move || {
            let out = batch::commit(&mut state, &mut taken);
            (state, out, taken)
        })
        .await;
        match joined {
            Ok((state, out, emptied)) => {
                *reqs = emptied;
                (state, out)
            }
            Err(e) => {
                tracing::error!(%e, "log writer: commit thread failed; the log stops accepting writes");
                shared.closed.store(true, Ordering::SeqCst);
                return None;
            }
        }
    };
    if out.synced {
        shared.fsyncs.fetch_add(1, Ordering::Relaxed);
    }
    // `first` moves before `released` is raised; `first_seq` reads them in the other order,
    // so it never reports an empty history past messages that are already released.
    shared
        .first
        .store(state.history.lowest().unwrap_or(0), Ordering::Release);
    if let Some(to) = out.released_to {
        shared.released.store(to, Ordering::Release);
        // A dropped receiver means nobody fans out live; the store still serves reads.
        let _ = feed.send(out.released).await;
    }
    for r in out.replies {
        r.send();
    }
    Some(state)
}

/// Runs a sweep on a blocking thread and answers it.
async fn run_sweep(
    mut state: WriterState,
    now: u64,
    reply: Option<oneshot::Sender<Result<SweepReport, LogError>>>,
    shared: &Shared,
) -> Option<WriterState> {
    let joined = tokio::task::spawn_blocking(move || {
        let r = retention::sweep(&mut state, now);
        (state, r)
    })
    .await;
    match joined {
        Ok((state, r)) => {
            shared
                .first
                .store(state.history.lowest().unwrap_or(0), Ordering::Release);
            if let Err(e) = &r {
                tracing::warn!(%e, "log: retention sweep failed; it will be retried");
            }
            if let Some(tx) = reply {
                let _ = tx.send(r);
            }
            Some(state)
        }
        Err(e) => {
            tracing::error!(%e, "log writer: sweep thread failed; the log stops accepting writes");
            shared.closed.store(true, Ordering::SeqCst);
            None
        }
    }
}
