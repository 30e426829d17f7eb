//! The core: plain types with no I/O and no async runtime. Topic rules, the subscription
//! index, namespace policy and messages. Everything here is driven by calls and a clock the
//! caller passes in, so it is tested without sockets or sleeps.

pub mod index;
pub mod message;
pub mod namespace;
pub mod topic;

pub use index::SubscriptionIndex;
pub use message::{Message, MessageProps, Position, QoS, StoredMessage};
