//! Live fan-out: every batch the log releases is matched against the subscription index
//! and offered to the matching connections' outboxes, in sequence order.

use super::outbox::Delivery;
use super::{Broker, ConnId};
use crate::log::ReleaseFeed;
use std::sync::Arc;

/// Runs until the log closes its feed.
pub(super) async fn run(broker: Arc<Broker>, mut feed: ReleaseFeed) {
    let mut targets: Vec<(ConnId, Arc<super::Outbox>)> = Vec::new();
    while let Some(batch) = feed.recv().await {
        let mut index = broker.index.lock();
        for msg in batch {
            targets.clear();
            index.route(
                &msg.msg.topic,
                |conn, sub| targets.push((*conn, sub.outbox.clone())),
                |_conn, sub| {
                    sub.outbox.try_push(Delivery {
                        msg: msg.clone(),
                        shared: sub.share.clone(),
                    })
                },
            );
            // A connection with overlapping filters gets the message once; it works out
            // which of its subscriptions matched.
            targets.sort_unstable_by_key(|(c, _)| *c);
            targets.dedup_by_key(|(c, _)| *c);
            for (_, outbox) in targets.drain(..) {
                outbox.push(Delivery {
                    msg: msg.clone(),
                    shared: None,
                });
            }
        }
    }
    tracing::debug!("release feed closed; fan-out stopped");
}
