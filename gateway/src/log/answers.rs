//! Answers to pipelined requests, delivered on the submitter's own queue.
//!
//! A connection that pipelines thousands of publishes would otherwise hold one future (and
//! one wake-up) per publish. With an [`AnswerQueue`] the writer pushes every answer onto one
//! channel per submitter, and the submitter takes a whole group commit's worth in one
//! receive. Each [`Ticket`] is answered exactly once: by the writer, or with
//! [`LogError::Closed`] when it is dropped unanswered (the log stopped).

use super::LogError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Notify, mpsc};

/// The outcome of one queued request, with the tag its submitter gave it.
#[derive(Debug)]
pub struct Answer {
    /// The submitter's tag, returned unchanged.
    pub tag: u64,
    /// Whether the log accepted the request.
    pub result: Result<(), LogError>,
}

/// One submitter's queue of answers. The writer answers in the order requests reached it, so
/// answers to one submitter arrive in submission order while the log runs.
///
/// The channel is made with the first ticket: a connection that never publishes (most
/// dashboards and idle devices) pays nothing for it.
#[derive(Debug, Default)]
pub struct AnswerQueue {
    chan: Option<(
        mpsc::UnboundedSender<Answer>,
        mpsc::UnboundedReceiver<Answer>,
    )>,
}

impl AnswerQueue {
    /// A ticket whose answer comes to this queue with `tag`.
    pub fn ticket(&mut self, tag: u64) -> Ticket {
        let (tx, _) = self.chan.get_or_insert_with(mpsc::unbounded_channel);
        Ticket {
            tx: Some(tx.clone()),
            tag,
        }
    }

    /// Waits for at least one answer, then moves up to `limit` into `buf`. Cancel-safe. Only
    /// callers that expect answers should wait: before the first ticket this never resolves.
    pub async fn recv_many(&mut self, buf: &mut Vec<Answer>, limit: usize) -> usize {
        match &mut self.chan {
            // The queue holds a sender itself, so this never returns 0.
            Some((_, rx)) => rx.recv_many(buf, limit.max(1)).await,
            None => std::future::pending().await,
        }
    }
}

/// The right to one answer on an [`AnswerQueue`].
#[derive(Debug)]
pub struct Ticket {
    tx: Option<mpsc::UnboundedSender<Answer>>,
    tag: u64,
}

impl Ticket {
    /// Sends the answer.
    pub fn answer(mut self, result: Result<(), LogError>) {
        self.send(result);
    }

    /// Sends `result` unless an answer went already. A queue that is gone has nobody left
    /// to tell.
    fn send(&mut self, result: Result<(), LogError>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Answer {
                tag: self.tag,
                result,
            });
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.send(Err(LogError::Closed));
    }
}

/// Counts a submitter's appends that need no answer (QoS 0) until the writer has written them:
/// back-pressure without a message or a wake-up per append. The submitter stops when
/// [`Backlog::is_full`] and waits on [`Backlog::below_limit`]; the writer wakes it once, as
/// the count drops back under the limit.
#[derive(Debug)]
pub struct Backlog {
    count: AtomicUsize,
    limit: usize,
    below: Notify,
}

impl Backlog {
    /// A backlog that is full at `limit` (at least 1).
    pub fn new(limit: usize) -> Arc<Backlog> {
        Arc::new(Backlog {
            count: AtomicUsize::new(0),
            limit: limit.max(1),
            below: Notify::new(),
        })
    }

    /// Counts one more append; the guard goes with the request and uncounts it when dropped
    /// (once the writer has written the request, or with the request if the log stopped).
    pub fn add(self: &Arc<Self>) -> BacklogGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        BacklogGuard(self.clone())
    }

    /// Appends counted and not yet written by the writer.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// True when nothing counted is waiting for the writer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the submitter should wait.
    pub fn is_full(&self) -> bool {
        self.len() >= self.limit
    }

    /// Resolves once the count has dropped under the limit since [`Backlog::is_full`] was
    /// last true (a wake-up that comes first is kept, so none is lost).
    pub async fn below_limit(&self) {
        self.below.notified().await;
    }
}

/// One counted append; see [`Backlog::add`].
#[derive(Debug)]
pub struct BacklogGuard(Arc<Backlog>);

impl Drop for BacklogGuard {
    fn drop(&mut self) {
        let b = &self.0;
        // Each decrement is by one, so a count above the limit passes through it exactly once.
        if b.count.fetch_sub(1, Ordering::AcqRel) == b.limit {
            b.below.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_backlog_wakes_its_submitter_once_it_drops_under_the_limit() {
        let b = Backlog::new(3);
        let mut guards: Vec<_> = (0..5).map(|_| b.add()).collect();
        assert_eq!(b.len(), 5);
        assert!(b.is_full());
        // Down to the limit: still full, no wake-up yet.
        guards.truncate(3);
        assert!(b.is_full());
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.below_limit().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        guards.pop();
        assert!(!b.is_full());
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .unwrap();
        drop(guards);
        assert_eq!(b.len(), 0);
    }

    #[tokio::test]
    async fn answers_arrive_in_order_with_their_tags_and_a_dropped_ticket_answers_closed() {
        let mut q = AnswerQueue::default();
        let a = q.ticket(1);
        let b = q.ticket(2);
        let c = q.ticket(3);
        a.answer(Ok(()));
        b.answer(Err(LogError::Storage("disk".into())));
        drop(c);
        let mut buf = Vec::new();
        let mut n = 0;
        while n < 3 {
            n += q.recv_many(&mut buf, 10).await;
        }
        let got: Vec<_> = buf
            .iter()
            .map(|a| (a.tag, a.result.as_ref().err().map(ToString::to_string)))
            .collect();
        assert_eq!(got[0], (1, None));
        assert_eq!(got[1].0, 2);
        assert!(got[1].1.as_deref().unwrap().contains("disk"), "{got:?}");
        assert_eq!(got[2], (3, Some(LogError::Closed.to_string())));
    }
}
