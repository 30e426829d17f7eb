//! One MQTT connection after CONNECT: the event loop that reads packets, completes log
//! appends, takes deliveries from the outbox, writes batches, and cleans up at the end.
//!
//! Everything a connection does happens in this one task, so its state needs no locks and a
//! stalled client stalls only itself.

use super::Close;
use super::codec::MqttCodec;
use super::connect::Accepted;
use super::outbound::Pending;
use super::read_room::ReadRoom;
use super::session::Session;
use crate::broker::outbox::Outbox;
use crate::broker::{Broker, ConnId};
use crate::core::Message;
use crate::log::{AnswerQueue, Backlog};
use bytes::BytesMut;
use rumqttc::v5::mqttbytes::v5::{Disconnect, DisconnectReasonCode, Packet};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Inbound publishes whose log append may be outstanding at once, reliable ones (answered)
/// and QoS 0 ones (counted) each; past this the connection stops reading until the log
/// catches up.
pub(super) const MAX_PENDING_APPENDS: usize = 4096;
/// Most log answers taken in one receive (a connection awaits at most
/// [`MAX_PENDING_APPENDS`] plus a PUBREL per open QoS 2 exchange).
const ACK_DRAIN: usize = 8192;
/// Stop moving deliveries into the write buffer past this many bytes.
const WRITE_BATCH: usize = 64 * 1024;
/// How often a persistent session's cursor is saved while connected.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// What a finished log operation means for the protocol.
pub(super) enum AckKind {
    /// QoS 0 publish: nothing to send.
    None,
    /// QoS 1 publish: PUBACK.
    PubAck(u16),
    /// QoS 2 publish: PUBREC.
    PubRec(u16),
    /// PUBREL handled: PUBCOMP.
    PubComp(u16),
}

impl AckKind {
    /// The tag a log answer carries back: the kind in the high bits, the packet id below.
    pub(super) fn tag(&self) -> u64 {
        match *self {
            AckKind::None => 0,
            AckKind::PubAck(p) => 1 << 16 | u64::from(p),
            AckKind::PubRec(p) => 2 << 16 | u64::from(p),
            AckKind::PubComp(p) => 3 << 16 | u64::from(p),
        }
    }

    /// The kind a tag from [`AckKind::tag`] stands for.
    pub(super) fn from_tag(tag: u64) -> AckKind {
        let pkid = (tag & 0xffff) as u16;
        match tag >> 16 {
            1 => AckKind::PubAck(pkid),
            2 => AckKind::PubRec(pkid),
            3 => AckKind::PubComp(pkid),
            _ => AckKind::None,
        }
    }
}

/// Whether deliveries come from the live outbox or from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Live,
    CatchUp,
}

/// The state of one connected client.
pub(super) struct Connection<W> {
    pub(super) broker: Arc<Broker>,
    pub(super) conn: ConnId,
    pub(super) peer: SocketAddr,
    pub(super) client_id: String,
    /// `mqtt:<client id>`: the origin stamped on our publishes (no-local, loop checks).
    pub(super) origin: String,
    pub(super) v5: bool,
    pub(super) codec: MqttCodec,
    pub(super) wr: W,
    pub(super) out: BytesMut,
    pub(super) session: Session,
    pub(super) outbox: Arc<Outbox>,
    pub(super) pending: VecDeque<Pending>,
    pub(super) mode: Mode,
    /// Answers to this connection's log requests (publishes, PUBRELs), in order.
    pub(super) answers: AnswerQueue,
    /// Log requests not answered yet.
    pub(super) awaiting: usize,
    /// QoS 0 publishes the log has not written yet (they get no answer); made with the first.
    pub(super) backlog: Option<Arc<Backlog>>,
    /// When the bytes being decoded were read (ms since the Unix epoch): inbound messages'
    /// time stamp.
    pub(super) read_at_ms: u64,
    /// QoS 1 appends outstanding plus QoS 2 exchanges not yet completed by PUBCOMP.
    pub(super) inbound_unacked: usize,
    pub(super) inbound_qos2: HashSet<u16>,
    pub(super) aliases: HashMap<u16, String>,
    pub(super) receive_max: u16,
    pub(super) max_packet: Option<u32>,
    pub(super) will: Option<(Message, Duration)>,
    /// Deliveries dropped for a slow QoS 0 consumer, reported in the log once in a while.
    pub(super) dropped: u64,
    /// A record of this session may be in the store (resumed at CONNECT, or saved since), so
    /// a non-persistent end must delete it.
    pub(super) stored: bool,
    /// The latest background session save, awaited before the next one.
    pub(super) last_save: Option<tokio::task::JoinHandle<()>>,
}

/// Runs the connection until it ends, then cleans up. `inbuf` holds bytes already read
/// after the CONNECT.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run<R, W>(
    broker: Arc<Broker>,
    conn: ConnId,
    peer: SocketAddr,
    accepted: Accepted,
    codec: MqttCodec,
    mut rd: R,
    wr: W,
    mut inbuf: BytesMut,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let client_id = accepted.client_id.clone();
    let (claim, kick, done) = broker.claim(&client_id, conn).await;
    let (session, inflight_to_resend, session_present) =
        super::resume::load_session(&broker, &accepted).await;
    // Every MQTT subscriber that falls behind catches up from history, whatever its QoS: a
    // QoS 0 message is lost to a slow subscriber only when history does not keep it.
    let outbox = Outbox::new(broker.settings.outbound_queue, true);
    let mut c = Connection {
        origin: super::origin_of(&client_id),
        broker: broker.clone(),
        conn,
        peer,
        client_id,
        v5: accepted.v5,
        codec,
        wr,
        out: BytesMut::new(),
        session,
        outbox,
        pending: VecDeque::new(),
        mode: Mode::CatchUp,
        answers: AnswerQueue::default(),
        awaiting: 0,
        backlog: None,
        read_at_ms: 0,
        inbound_unacked: 0,
        inbound_qos2: HashSet::new(),
        aliases: HashMap::new(),
        receive_max: accepted.receive_max,
        max_packet: accepted.max_packet,
        will: accepted.will.clone(),
        dropped: 0,
        stored: session_present,
        last_save: None,
    };
    let _ = claim;
    c.send(&super::connect::connack(
        &accepted,
        session_present,
        &broker,
    ));
    c.resubscribe();
    c.resend_inflight(inflight_to_resend);
    tracing::debug!(client_id = %c.client_id, peer = %peer, v5 = c.v5, session_present, "connected");

    let keep_alive = (accepted.keep_alive > 0)
        .then(|| Duration::from_millis(u64::from(accepted.keep_alive) * 1500));
    let mut deadline = keep_alive.map(|k| Instant::now() + k);
    let mut next_save = Instant::now() + SAVE_EVERY;
    let shutdown = broker.shutdown.clone();
    let mut read_room = ReadRoom::default();
    let mut answers = Vec::new();

    // Packets that arrived in the same read as the CONNECT.
    let early = if inbuf.is_empty() {
        Ok(())
    } else {
        c.on_bytes(&mut inbuf)
    };

    let close = match early {
        Err(close) => close,
        Ok(()) => loop {
            c.pump();
            if let Err(close) = c.flush(&kick, &shutdown).await {
                break close;
            }
            let backlog_full = c.backlog.as_ref().is_some_and(|b| b.is_full());
            let can_read = c.awaiting < MAX_PENDING_APPENDS && !backlog_full;
            // More to deliver right now (the last pass stopped at the write batch size):
            // go round again after the write instead of waiting for the next event.
            let more = c.has_work();
            let save_due = c.session.is_persistent() && c.session.dirty;
            let room = if can_read {
                read_room.prepare(&mut inbuf)
            } else {
                0
            };
            tokio::select! {
                biased;
                _ = kick.cancelled() => break Close::TakenOver,
                _ = shutdown.cancelled() => break Close::ServerShutdown,
                _ = c.answers.recv_many(&mut answers, ACK_DRAIN), if c.awaiting > 0 => {
                    if let Err(close) = c.on_answers(&mut answers) {
                        break close;
                    }
                }
                r = rd.read_buf(&mut inbuf), if can_read => {
                    match r {
                        Ok(0) => break Close::PeerClosed,
                        Ok(n) => {
                            deadline = keep_alive.map(|k| Instant::now() + k);
                            if let Err(close) = c.on_bytes(&mut inbuf) {
                                break close;
                            }
                            read_room.after_read(n, room, &mut inbuf);
                        }
                        Err(e) => break Close::Io(e),
                    }
                }
                _ = wait_below(c.backlog.as_deref()), if backlog_full => {}
                _ = c.outbox.notified() => {}
                _ = std::future::ready(()), if more => {}
                _ = sleep_until_opt(deadline) => break Close::KeepAliveTimeout,
                _ = tokio::time::sleep_until(next_save), if save_due => {
                    next_save = Instant::now() + SAVE_EVERY;
                    c.save_now();
                }
            }
        },
    };
    c.finish(close, &kick).await;
    done.cancel();
}

async fn wait_below(backlog: Option<&Backlog>) {
    match backlog {
        Some(b) => b.below_limit().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl<W: AsyncWrite + Unpin> Connection<W> {
    /// Encodes a packet into the write buffer.
    pub(super) fn send(&mut self, pkt: &Packet) {
        if let Err(e) = self.codec.encode(pkt, &mut self.out, self.max_packet) {
            tracing::debug!(client_id = %self.client_id, error = %e, "packet not sent");
        }
    }

    /// Writes the buffer in one go, unless the connection is told to leave meanwhile.
    async fn flush(
        &mut self,
        kick: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> Result<(), Close> {
        if self.out.is_empty() {
            return Ok(());
        }
        tokio::select! {
            r = self.wr.write_all(&self.out) => r.map_err(Close::Io)?,
            _ = kick.cancelled() => return Err(Close::TakenOver),
            _ = shutdown.cancelled() => return Err(Close::ServerShutdown),
        }
        if self.out.capacity() > 4 * WRITE_BATCH {
            self.out = BytesMut::new();
        } else {
            self.out.clear();
        }
        Ok(())
    }

    /// Saves a persistent session without waiting (periodic cursor save, subscription
    /// changes). Saves are chained so an older state never overwrites a newer one.
    pub(super) fn save_now(&mut self) {
        let bytes = self.session.save(
            self.broker.log.epoch(),
            self.saved_cursor(),
            crate::core::message::now_ms(),
        );
        self.session.dirty = false;
        self.stored = true;
        let log = self.broker.log.clone();
        let id = self.client_id.clone();
        let previous = self.last_save.take();
        self.last_save = Some(tokio::spawn(async move {
            if let Some(p) = previous {
                let _ = p.await;
            }
            if let Err(e) = log.session_store(&id, bytes).await {
                tracing::warn!(client_id = %id, error = %e, "could not save session");
            }
        }));
    }

    /// The cursor to save: the first message not yet handed to the client.
    pub(super) fn saved_cursor(&self) -> u64 {
        self.pending
            .iter()
            .filter(|p| !p.from_retained && !p.shared)
            .map(|p| p.msg.pos.seq)
            .min()
            .unwrap_or(self.session.cursor)
    }

    /// Ends the connection: DISCONNECT where MQTT 5 has a reason, will, session save or
    /// removal, registry and index cleanup.
    async fn finish(&mut self, close: Close, kick: &CancellationToken) {
        close.log(&self.client_id, self.peer);
        if self.v5 {
            if let Some(code) = close.disconnect_code() {
                let pkt = Packet::Disconnect(Disconnect {
                    reason_code: code,
                    properties: None,
                });
                self.send(&pkt);
            }
        }
        if !self.out.is_empty() {
            let never = CancellationToken::new();
            let _ = tokio::time::timeout(Duration::from_secs(1), self.flush(&never, &never)).await;
        }
        let _ = self.wr.shutdown().await;
        for s in &self.session.subs {
            self.broker.unsubscribe(&s.filter, self.conn);
        }
        self.outbox.close();
        let _ = kick;
        let now = crate::core::message::now_ms();
        if let Some(p) = self.last_save.take() {
            let _ = p.await;
        }
        if self.session.is_persistent() {
            let bytes = self
                .session
                .save(self.broker.log.epoch(), self.saved_cursor(), now);
            if let Err(e) = self.broker.log.session_store(&self.client_id, bytes).await {
                tracing::warn!(client_id = %self.client_id, error = %e, "could not save session");
            }
            if self.session.expiry != u32::MAX && !matches!(close, Close::ServerShutdown) {
                self.broker.schedule_expiry(
                    &self.client_id,
                    Duration::from_secs(u64::from(self.session.expiry)),
                );
            }
        } else if self.stored {
            // Resumed with an expiry of 0 (or lowered to 0 at DISCONNECT): the session ends now.
            if let Err(e) = self.broker.log.session_delete(&self.client_id).await {
                tracing::warn!(client_id = %self.client_id, error = %e, "could not delete ended session");
            }
        }
        if close.sends_will() {
            if let Some((will, delay)) = self.will.take() {
                let session_end = Duration::from_secs(u64::from(self.session.expiry));
                self.broker
                    .schedule_will(&self.client_id, will, delay.min(session_end));
            }
        }
        self.broker.release(&self.client_id, self.conn);
    }
}

impl Close {
    /// The MQTT 5 DISCONNECT reason the server sends for this ending, if any.
    fn disconnect_code(&self) -> Option<DisconnectReasonCode> {
        use DisconnectReasonCode as R;
        Some(match self {
            Close::TakenOver => R::SessionTakenOver,
            Close::ServerShutdown => R::ServerShuttingDown,
            Close::KeepAliveTimeout => R::KeepAliveTimeout,
            Close::Protocol(code, _) => *code,
            Close::Codec(e) => reason_from_u8(e.reason_code()),
            Close::PeerClosed | Close::Io(_) | Close::ClientDisconnect { .. } => return None,
        })
    }

    /// Whether the will is published (everything except a normal DISCONNECT and our own
    /// shutdown).
    fn sends_will(&self) -> bool {
        match self {
            Close::ClientDisconnect { with_will } => *with_will,
            Close::ServerShutdown => false,
            _ => true,
        }
    }
}

fn reason_from_u8(code: u8) -> DisconnectReasonCode {
    use DisconnectReasonCode as R;
    match code {
        0x81 => R::MalformedPacket,
        0x82 => R::ProtocolError,
        0x93 => R::ReceiveMaximumExceeded,
        0x94 => R::TopicAliasInvalid,
        0x95 => R::PacketTooLarge,
        0x97 => R::QuotaExceeded,
        0x8F => R::TopicFilterInvalid,
        0x90 => R::TopicNameInvalid,
        0x8D => R::KeepAliveTimeout,
        0x8B => R::ServerShuttingDown,
        0x8E => R::SessionTakenOver,
        _ => R::UnspecifiedError,
    }
}
