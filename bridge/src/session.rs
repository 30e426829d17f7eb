//! One connected session with the remote: the loop that reads the source into the outbound
//! window, publishes, handles acknowledgements, hands inbound messages to the sink and
//! acknowledges them once stored, and keeps the connection alive. It returns when the
//! connection fails (the runner reconnects) or when the bridge is stopped.

use crate::conn::{Conn, ConnError};
use crate::feed::{Outbound, limits};
use crate::inbound::{self, Inbound, InboundConfig, Outcome, SessionRecord};
use crate::message::QoS;
use crate::options::{Checked, Protocol};
use crate::outbound::{AckOutcome, Resend};
use crate::sink::SinkError;
use crate::source::BridgeSource;
use crate::status::{Counters, State, Status};
use crate::wire::encode::{self, Ack, OutPublish};
use crate::wire::{ConnAck, Incoming, reason};
use bytes::BytesMut;
use futures_util::FutureExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Most packets handled between two writes.
const DRAIN_BATCH: usize = 512;
/// How long a stopping bridge waits for acknowledgements of what is in flight.
const STOP_DRAIN: Duration = Duration::from_secs(2);

/// What every connection of one bridge shares.
pub(crate) struct Shared {
    pub checked: Checked,
    pub source: Arc<dyn BridgeSource>,
    pub status: Arc<Status>,
    pub inbound: InboundConfig,
    /// The latest cursor, for the committer task.
    pub commit: watch::Sender<u64>,
    pub stop: CancellationToken,
}

impl Shared {
    /// The bridge's name, for logs.
    pub fn name(&self) -> &str {
        &self.checked.options.name
    }
}

/// The inbound session record to use on this connection, stored if it changed. A new
/// remote session (or none recorded) gets a new nonce.
pub(crate) async fn inbound_record(
    sh: &Shared,
    stored: &mut Option<SessionRecord>,
    session_present: bool,
) -> Result<SessionRecord, ConnError> {
    let digest = inbound::digest(&sh.inbound.rules);
    let current = match *stored {
        Some(r) if session_present => r,
        _ => SessionRecord {
            nonce: rand::random(),
            digest: 0,
        },
    };
    let wanted = SessionRecord { digest, ..current };
    if *stored != Some(wanted) {
        sh.inbound
            .sink
            .store_session(wanted.encode())
            .await
            .map_err(|e| ConnError::Local(format!("storing the bridge's session: {e}")))?;
    }
    *stored = Some(wanted);
    Ok(current)
}

/// Runs one connected session until it fails (`Err`) or the bridge is stopped (`Ok`).
pub(crate) async fn run(
    sh: &Shared,
    out: &mut Outbound,
    record: &mut Option<SessionRecord>,
    mut conn: Conn,
    ack: ConnAck,
) -> Result<(), ConnError> {
    let o = &sh.checked.options;
    out.limits = limits(&sh.checked, &ack);
    let limit = match ack.receive_max {
        Some(r) => usize::from(r.min(o.max_inflight)),
        None => usize::from(o.max_inflight),
    };
    out.window.set_limit(limit);
    let mut wbuf = BytesMut::with_capacity(64 * 1024);

    // Inbound: session record (nonce), then subscriptions. The bridge counts as connected
    // once its subscriptions are acknowledged: from then on the remote routes to it.
    let mut awaiting_suback = None;
    let mut inbound = if sh.inbound.rules.is_empty() {
        Inbound::new(&sh.inbound, 0)
    } else {
        let previous = *record;
        let current = inbound_record(sh, record, ack.session_present).await?;
        let changed = previous.is_none_or(|p| p.digest != current.digest);
        // MQTT 5 subscriptions ask for retained messages only when new, so subscribing
        // again costs nothing; a 3.1.1 SUBSCRIBE would resend every retained message.
        if o.protocol == Protocol::V5 || !ack.session_present || changed {
            let filters: Vec<(String, QoS)> = sh
                .inbound
                .rules
                .iter()
                .map(|r| (r.filter.clone(), r.qos))
                .collect();
            let pkid = out.window.spare_pkid();
            encode::subscribe(o.protocol, pkid, &filters, &mut wbuf)?;
            awaiting_suback = Some(pkid);
        }
        Inbound::new(&sh.inbound, current.nonce)
    };

    // Outbound: what was in flight goes again.
    for r in out.window.resume(ack.session_present) {
        match r {
            Resend::PubRel { pkid } => encode::ack(Ack::PubRel, pkid, &mut wbuf),
            Resend::Publish { seq, pkid } => {
                if let Some(p) = out.window.get(seq) {
                    let publish = OutPublish {
                        topic: &p.topic,
                        pkid,
                        qos: p.qos,
                        retain: p.retain,
                        dup: true,
                        payload: p.payload.clone(),
                        props: &p.props,
                    };
                    if encode::publish(o.protocol, &publish, &mut wbuf, out.limits.max_packet)
                        .is_err()
                    {
                        out.window.abandon(pkid);
                        Counters::add(&sh.status.counters.refused_out, 1);
                    }
                }
            }
        }
    }
    out.more = true;
    if awaiting_suback.is_none() {
        sh.status.set(State::Connected, None);
    }
    let result = drive(sh, out, &mut inbound, &mut conn, wbuf, awaiting_suback).await;
    settle(sh, &mut inbound).await;
    result
}

/// How long a finished connection waits for the sink to answer what it had submitted, so
/// that the counters stay exact.
const SETTLE: Duration = Duration::from_secs(2);

/// Waits (bounded) for inbound items still with the sink. Their acknowledgements are not
/// sent (the connection is gone; the remote sends the messages again), but they are
/// counted, and de-duplication keys of finished QoS 2 exchanges are forgotten.
async fn settle(sh: &Shared, inbound: &mut Inbound) {
    let deadline = Instant::now() + SETTLE;
    while inbound.len() > 0 {
        match tokio::time::timeout_at(deadline, inbound.next()).await {
            Ok(Some((Ok(outcome), _))) => inbound::count(&sh.status, sh.name(), &outcome),
            Ok(Some((Err(_), _))) => {}
            Ok(None) | Err(_) => break,
        }
    }
}

/// The loop of a connected session.
async fn drive(
    sh: &Shared,
    out: &mut Outbound,
    inbound: &mut Inbound,
    conn: &mut Conn,
    mut wbuf: BytesMut,
    mut awaiting_suback: Option<u16>,
) -> Result<(), ConnError> {
    let o = &sh.checked.options;
    let keep_alive = out.limits.keep_alive;
    let write_timeout = keep_alive.max(o.connect_timeout);
    let mut last_write = Instant::now();
    let mut last_read = Instant::now();
    let mut stopping: Option<Instant> = None;
    loop {
        if stopping.is_none() && out.more && out.window.room() > 0 {
            out.fill(sh)
                .map_err(|e| ConnError::Local(format!("reading the log: {e}")))?;
        }
        if stopping.is_none() {
            send_ready(sh, out, &mut wbuf);
        }
        out.window.pop_done();
        out.publish_cursor(sh);
        if !wbuf.is_empty() {
            conn.flush(&mut wbuf, write_timeout).await?;
            last_write = Instant::now();
        }
        if stopping.is_some() && out.window.inflight() == 0 && inbound.len() == 0 {
            break;
        }
        let ping_at = last_write + keep_alive;
        let dead_at = last_read + keep_alive + keep_alive / 2;
        let drain_until = stopping.unwrap_or_else(Instant::now);
        // Read on at once while the source has more; otherwise wait for it.
        let poll_source = stopping.is_none() && out.window.room() > 0;
        let (more, read_pos) = (out.more, out.window.read_pos());
        let source = &sh.source;
        tokio::select! {
            _ = sh.stop.cancelled(), if stopping.is_none() => {
                stopping = Some(Instant::now() + STOP_DRAIN);
            }
            _ = tokio::time::sleep_until(drain_until), if stopping.is_some() => break,
            item = conn.rx.recv() => {
                last_read = Instant::now();
                handle(sh, out, inbound, &mut wbuf, &mut awaiting_suback, item)?;
                for _ in 0..DRAIN_BATCH {
                    match conn.rx.try_recv() {
                        Ok(item) => handle(
                            sh,
                            out,
                            inbound,
                            &mut wbuf,
                            &mut awaiting_suback,
                            Some(item),
                        )?,
                        Err(_) => break,
                    }
                }
            }
            done = inbound.next(), if inbound.len() > 0 => {
                if let Some(done) = done {
                    handle_inbound(sh, &mut wbuf, done)?;
                }
                for _ in 0..DRAIN_BATCH {
                    match inbound.next().now_or_never() {
                        Some(Some(done)) => handle_inbound(sh, &mut wbuf, done)?,
                        _ => break,
                    }
                }
            }
            _ = async move {
                if !more {
                    source.wait(read_pos).await;
                }
            }, if poll_source => {
                out.more = true;
            }
            _ = tokio::time::sleep_until(ping_at.min(dead_at)) => {
                let now = Instant::now();
                if now >= dead_at {
                    return Err(ConnError::KeepAlive);
                }
                if now >= ping_at {
                    encode::pingreq(&mut wbuf);
                }
            }
        }
    }
    encode::disconnect(&mut wbuf);
    let _ = conn.flush(&mut wbuf, Duration::from_secs(1)).await;
    out.publish_cursor(sh);
    Ok(())
}

/// Encodes every message the window lets go now.
fn send_ready(sh: &Shared, out: &mut Outbound, wbuf: &mut BytesMut) {
    let protocol = sh.checked.options.protocol;
    let max = out.limits.max_packet;
    let mut too_large = Vec::new();
    let mut qos0 = 0;
    while let Some((seq, pkid, p)) = out.window.next_send() {
        let publish = OutPublish {
            topic: &p.topic,
            pkid,
            qos: p.qos,
            retain: p.retain,
            dup: false,
            payload: p.payload.clone(),
            props: &p.props,
        };
        match encode::publish(protocol, &publish, wbuf, max) {
            Ok(()) if p.qos == QoS::AtMostOnce => qos0 += 1,
            Ok(()) => {}
            Err(e) => too_large.push((seq, pkid, p.qos, e)),
        }
    }
    Counters::add(&sh.status.counters.forwarded_out, qos0);
    for (seq, pkid, qos, e) in too_large {
        if qos != QoS::AtMostOnce {
            out.window.abandon(pkid);
        } else {
            // Already counted as written above; take it back.
            sh.status
                .counters
                .forwarded_out
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        Counters::add(&sh.status.counters.refused_out, 1);
        tracing::warn!(bridge = sh.name(), seq, error = %e, "message not forwarded");
    }
}

/// Handles one packet from the remote.
fn handle(
    sh: &Shared,
    out: &mut Outbound,
    inbound: &mut Inbound,
    wbuf: &mut BytesMut,
    awaiting_suback: &mut Option<u16>,
    item: Option<Result<Incoming, ConnError>>,
) -> Result<(), ConnError> {
    let p = match item {
        Some(Ok(p)) => p,
        Some(Err(e)) => return Err(e),
        None => return Err(ConnError::Io("the reader stopped".into())),
    };
    match p {
        Incoming::Publish(p) => inbound.on_publish(p),
        Incoming::PubAck { pkid, reason } => {
            acked(sh, out.window.on_puback(pkid, reason >= 0x80), reason)
        }
        Incoming::PubRec { pkid, reason } => match out.window.on_pubrec(pkid, reason >= 0x80) {
            AckOutcome::Release(pkid) => encode::ack(Ack::PubRel, pkid, wbuf),
            other => acked(sh, other, reason),
        },
        Incoming::PubComp { pkid } => acked(sh, out.window.on_pubcomp(pkid), 0),
        Incoming::PubRel { pkid } => inbound.on_pubrel(pkid),
        Incoming::SubAck { pkid, codes } => {
            let mut refused = None;
            for (rule, code) in sh.inbound.rules.iter().zip(&codes) {
                match code {
                    Ok(granted) if *granted < rule.qos => tracing::info!(
                        bridge = sh.name(),
                        filter = %rule.filter,
                        granted = granted.as_u8(),
                        "the remote granted a lower QoS than asked"
                    ),
                    Ok(_) => {}
                    Err(code) => {
                        let why = format!(
                            "the remote refused the subscription to {:?}: {}",
                            rule.filter,
                            reason::suback(*code)
                        );
                        tracing::warn!(bridge = sh.name(), "{why}");
                        refused = Some(why);
                    }
                }
            }
            if *awaiting_suback == Some(pkid) {
                *awaiting_suback = None;
                sh.status.set(State::Connected, refused);
            }
        }
        Incoming::UnsubAck | Incoming::PingResp => {}
        Incoming::ConnAck(_) => {
            return Err(ConnError::Wire(crate::wire::WireError::Malformed(
                "a second CONNACK".into(),
            )));
        }
        Incoming::Disconnect {
            reason: code,
            reason_string,
        } => {
            let mut text = format!("{} (code {code:#04x})", reason::disconnect(code));
            if let Some(r) = reason_string {
                text.push_str(&format!(": {r}"));
            }
            return Err(ConnError::Disconnected(text));
        }
    }
    Ok(())
}

/// Counts an outbound acknowledgement.
fn acked(sh: &Shared, outcome: AckOutcome, code: u8) {
    let c = &sh.status.counters;
    match outcome {
        AckOutcome::Done(_) => Counters::add(&c.forwarded_out, 1),
        AckOutcome::Refused(seq) => {
            Counters::add(&c.refused_out, 1);
            tracing::warn!(
                bridge = sh.name(),
                seq,
                code,
                reason = reason::puback(code),
                "the remote refused a forwarded message"
            );
        }
        AckOutcome::Release(_) | AckOutcome::Unknown => {}
    }
}

/// Handles one finished inbound item: counts it and writes the acknowledgement it owes.
fn handle_inbound(
    sh: &Shared,
    wbuf: &mut BytesMut,
    (result, ack): (Result<Outcome, SinkError>, Option<(Ack, u16)>),
) -> Result<(), ConnError> {
    match result {
        Ok(outcome) => {
            inbound::count(&sh.status, sh.name(), &outcome);
            if let Some((kind, pkid)) = ack {
                encode::ack(kind, pkid, wbuf);
            }
            Ok(())
        }
        Err(e) => Err(ConnError::Local(format!(
            "the local log did not take an inbound message, so it was not acknowledged \
             (the remote sends it again): {e}"
        ))),
    }
}
