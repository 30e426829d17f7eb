//! Answers to pipelined requests, delivered on the submitter's own queue.
//!
//! A connection that pipelines thousands of publishes would otherwise hold one future (and
//! one wake-up) per publish. With an [`AnswerQueue`] the writer pushes every answer onto one
//! channel per submitter, and the submitter takes a whole group commit's worth in one
//! receive. Each [`Ticket`] is answered exactly once: by the writer, or with
//! [`LogError::Closed`] when it is dropped unanswered (the log stopped).

use super::LogError;
use tokio::sync::mpsc;

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
    /// Sends the answer. A queue that is gone has nobody left to tell.
    pub fn answer(mut self, result: Result<(), LogError>) {
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
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Answer {
                tag: self.tag,
                result: Err(LogError::Closed),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
