//! Store-and-forward bridges between a local message store and a remote MQTT broker
//! (Mosquitto, EMQX, HiveMQ, …), over MQTT 3.1.1 or 5, TCP or TLS (with or without a client
//! certificate), with user name and password.
//!
//! The crate knows nothing of the gateway. A bridge takes a [`BridgeSource`] (where
//! outbound messages come from, with a durable cursor) and a [`BridgeSink`] (where inbound
//! messages go, durably); the gateway implements both over its log. Their contracts are
//! written on the traits.
//!
//! # What a bridge promises
//! - **Outbound, store and forward.** Messages are read from the source at the cursor and
//!   published in order. The cursor advances only after the remote's PUBACK (QoS 1) or
//!   PUBCOMP (QoS 2), and is committed durably as it goes; while the remote is down or slow
//!   nothing is lost, and after a reconnect or a restart forwarding resumes at the cursor.
//!   At most `max_inflight` QoS 1/2 messages are unacknowledged at once, fewer if an MQTT 5
//!   remote's receive maximum says so. After a reconnect into a kept session, messages in
//!   flight are sent again with their packet ids (DUP set) and PUBRELs are repeated, so QoS 2
//!   stays exactly once across remote outages. Delivery is at least once across a crash of
//!   the local side (what was acknowledged after the last commit is sent again).
//! - **Lag bound.** When the cursor trails the source's head by more than `max_lag`
//!   positions, the oldest waiting messages are skipped, counted (`skipped_lag`) and logged.
//! - **Inbound.** The bridge keeps a persistent session at the remote (clean session off; MQTT
//!   5 session expiry) and acknowledges a message only after the sink stored it durably, in
//!   arrival order. QoS 2 messages are de-duplicated, so they are stored once even when the
//!   remote sends them again after a reconnect. (A remote that restarts and forgets which
//!   exchanges had finished can still deliver a message twice: Mosquitto 2.0 restarts its
//!   unfinished QoS 2 deliveries from PUBLISH after its own restart, also those the bridge
//!   had already completed.)
//! - **Loop prevention.** A message that came in through a bridge carries the origin
//!   `bridge:<name>` and is never sent back out by that bridge. Towards an MQTT 5 remote the
//!   bridge subscribes with no-local and tags what it publishes with the user property
//!   `bridge-origin = <client id>`; an inbound message with that tag is dropped. MQTT 3.1.1
//!   has neither, so an origin rule on topics applies: a remote topic that one of the
//!   bridge's out rules publishes to belongs to the local side, and an inbound message on it
//!   is taken for an echo and dropped (`loops_prevented`). To carry the same remote topics
//!   both ways over 3.1.1, give each direction its own remote prefix, or use MQTT 5.
//! - **Isolation.** Bad options, an unreachable host, a TLS mismatch, refused credentials or
//!   a remote that sends nonsense only affect that bridge: its status says `down` with the
//!   reason, it logs it, and it retries with exponential backoff and jitter.
//!
//! The session is implemented here on rumqttc's MQTT codecs rather than on its client event
//! loop, whose session resumption cannot give these promises (it answers a PUBREL resent
//! after a reconnect with a fatal error, resends in packet-id order, and drops what is in
//! flight when the remote has lost the session).
//!
//! # Layout
//! - [`message`]: [`BridgeMessage`] and friends. [`source`], [`sink`]: the two traits.
//! - [`options`]: [`BridgeOptions`] and their checks. [`mapping`]: rules and templates.
//! - [`Bridge`] (`runner.rs`): start, status, stop; reconnects with `backoff.rs`.
//! - `session.rs`: one connection's loop. `outbound.rs`: the in-flight window and the
//!   cursor; `feed.rs`: reading the source into it. `inbound.rs`: acknowledging after
//!   storage, de-duplication, loop checks.
//! - `conn.rs`: TCP/TLS and the CONNECT handshake. [`tls`]: rustls from PEM files.
//!   [`wire`]: decoding and encoding MQTT packets. [`status`]: state and counters.
#![warn(missing_docs)]

mod backoff;
mod conn;
mod feed;
mod inbound;
pub mod mapping;
pub mod message;
pub mod options;
mod outbound;
mod runner;
mod session;
pub mod sink;
pub mod source;
pub mod status;
pub mod tls;
pub mod wire;

pub use conn::ConnError;
pub use inbound::ORIGIN_PROPERTY;
pub use mapping::{MappingError, RetainPolicy};
pub use message::{BridgeMessage, Props, QoS, SourceMessage};
pub use options::{BridgeOptions, OptionsError, Protocol, RuleSpec, TlsOptions};
pub use runner::Bridge;
pub use sink::{Accepted, BridgeSink, SinkError, SinkFuture};
pub use source::{BridgeSource, SourceBatch, SourceError};
pub use status::{Snapshot, State};
