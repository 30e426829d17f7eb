//! Builds rumqttc packet values from frames that [`super::validate`] accepted, working around
//! rumqttc 0.25's reader bugs, with a panic guard around every call into it.
//!
//! Worked around here (all reachable by a client over the wire):
//! - MQTT 5 `Packet::read` rejects a DISCONNECT with remaining length 0 (the common `E0 00`):
//!   DISCONNECT is read with `Disconnect::read` directly.
//! - `Disconnect::read` on remaining length 1 (reason code, no property length, allowed by
//!   MQTT 5 3.14.2.2.1) returns `InsufficientBytes` after the frame was consumed; so does any
//!   MQTT 5 packet whose property length is missing. rumqttc's own `Codec` takes that for
//!   "need more bytes": the frame is silently dropped and the stream desynchronised. Built here
//!   instead, and any `InsufficientBytes` from inside a complete frame is malformed.
//! - `Packet::read` does not read AUTH at all; `AuthProperties::read` counts an Authentication
//!   Method or Reason String two bytes short, so it runs past the section and fails on any
//!   valid AUTH carrying one. The property length is rewritten to what it counts.
//!
//! Checked beforehand by `validate`/`props` because rumqttc accepts them: property sections
//! overrunning their length into the payload, duplicate properties, properties a client must
//! not send, trailing bytes (3.1.1 CONNECT, MQTT 5 acknowledgements), reserved subscription
//! option bits, empty UNSUBSCRIBE, non-UTF-8 MQTT 5 topic names and will topics, the reserved
//! CONNECT flag, a 3.1.1 password without user name, fixed-header flags, packet id 0.
//!
//! No input made a rumqttc reader panic under fuzzing (see `gateway/fuzz/README.md`); the
//! guard is the last line of defence, and [`panics_caught`] counts what it catches.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{BufMut, Bytes, BytesMut};
use rumqttc::mqttbytes::{self as b4, v4};
use rumqttc::v5::mqttbytes::v5;

use super::frame::{Header, VarInt, kind, put_varint, read_varint, varint_len};
use super::props::Summary;
use super::{CodecError, ProtocolVersion};
use crate::mqtt::convert;

/// Panics caught from rumqttc since the process started.
static PANICS: AtomicU64 = AtomicU64::new(0);

/// How many times a rumqttc reader or writer panicked and the guard turned it into an error.
pub(super) fn panics_caught() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// Runs `f`, turning a panic into `on_panic`'s error.
pub(super) fn guard<T>(
    f: impl FnOnce() -> Result<T, CodecError>,
    on_panic: impl FnOnce() -> CodecError,
) -> Result<T, CodecError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(_) => {
            PANICS.fetch_add(1, Ordering::Relaxed);
            let err = on_panic();
            tracing::error!(error = %err, "rumqttc panicked; packet refused");
            Err(err)
        }
    }
}

/// Decodes one validated frame (fixed header included) into an MQTT 5 packet.
pub(super) fn read(
    h: &Header,
    frame: Bytes,
    version: ProtocolVersion,
    summary: Summary,
) -> Result<v5::Packet, CodecError> {
    let name = h.name();
    guard(
        || match version {
            ProtocolVersion::V5 => read_v5(h, frame, summary),
            ProtocolVersion::V311 => read_v4(h, frame).map(convert::to_v5),
        },
        || CodecError::Malformed(format!("{name}: the decoder panicked on this packet")),
    )
}

fn malformed(name: &str, e: impl std::fmt::Display) -> CodecError {
    CodecError::Malformed(format!("{name}: {e}"))
}

fn read_v5(h: &Header, frame: Bytes, summary: Summary) -> Result<v5::Packet, CodecError> {
    let fh = v5::FixedHeader::new(h.byte1, h.header_len - 1, h.remaining);
    let m = |e: rumqttc::v5::mqttbytes::Error| malformed(h.name(), e);
    Ok(match h.kind() {
        kind::CONNECT => {
            let (connect, will, login) = v5::Connect::read(fh, frame).map_err(m)?;
            v5::Packet::Connect(connect, will, login)
        }
        kind::PUBLISH => v5::Packet::Publish(v5::Publish::read(fh, frame).map_err(m)?),
        kind::PUBACK => v5::Packet::PubAck(v5::PubAck::read(fh, frame).map_err(m)?),
        kind::PUBREC => v5::Packet::PubRec(v5::PubRec::read(fh, frame).map_err(m)?),
        kind::PUBREL => v5::Packet::PubRel(v5::PubRel::read(fh, frame).map_err(m)?),
        kind::PUBCOMP => v5::Packet::PubComp(v5::PubComp::read(fh, frame).map_err(m)?),
        kind::SUBSCRIBE => v5::Packet::Subscribe(v5::Subscribe::read(fh, frame).map_err(m)?),
        kind::UNSUBSCRIBE => v5::Packet::Unsubscribe(v5::Unsubscribe::read(fh, frame).map_err(m)?),
        kind::PINGREQ => v5::Packet::PingReq(v5::PingReq),
        kind::DISCONNECT if h.remaining == 1 => {
            let code = frame.get(h.header_len).copied().unwrap_or_default();
            let reason = v5::DisconnectReasonCode::try_from(code).map_err(m)?;
            v5::Packet::Disconnect(v5::Disconnect::new(reason))
        }
        kind::DISCONNECT => v5::Packet::Disconnect(v5::Disconnect::read(fh, frame).map_err(m)?),
        kind::AUTH => v5::Packet::Auth(read_auth(h, &frame, summary)?),
        _ => return Err(unexpected(h)),
    })
}

/// AUTH, rebuilt in the shape rumqttc's reader gets right (see the module notes).
fn read_auth(h: &Header, frame: &[u8], summary: Summary) -> Result<v5::Auth, CodecError> {
    let body = frame.get(h.header_len..).unwrap_or_default();
    let code = body.first().copied().unwrap_or(0);
    let props: &[u8] = match body.get(1..).map(read_varint) {
        Some(VarInt::Value { len, .. }) => body.get(1 + len..).unwrap_or_default(),
        _ => &[],
    };
    let short = 2 * (usize::from(summary.has_auth_method) + usize::from(summary.has_reason_string));
    let counted = props.len().saturating_sub(short);
    let remaining = 1 + varint_len(counted) + props.len();
    let mut buf = BytesMut::with_capacity(1 + 4 + remaining);
    buf.put_u8(0xF0);
    put_varint(&mut buf, remaining);
    buf.put_u8(code);
    put_varint(&mut buf, counted);
    buf.put_slice(props);
    let fh = v5::FixedHeader::new(0xF0, varint_len(remaining), remaining);
    v5::Auth::read(fh, buf.freeze()).map_err(|e| malformed("AUTH", e))
}

fn read_v4(h: &Header, frame: Bytes) -> Result<v4::Packet, CodecError> {
    let fh = b4::FixedHeader::new(h.byte1, h.header_len - 1, h.remaining);
    let m = |e: b4::Error| malformed(h.name(), e);
    Ok(match h.kind() {
        kind::CONNECT => v4::Packet::Connect(v4::Connect::read(fh, frame).map_err(m)?),
        kind::PUBLISH => v4::Packet::Publish(v4::Publish::read(fh, frame).map_err(m)?),
        kind::PUBACK => v4::Packet::PubAck(v4::PubAck::read(fh, frame).map_err(m)?),
        kind::PUBREC => v4::Packet::PubRec(v4::PubRec::read(fh, frame).map_err(m)?),
        kind::PUBREL => v4::Packet::PubRel(v4::PubRel::read(fh, frame).map_err(m)?),
        kind::PUBCOMP => v4::Packet::PubComp(v4::PubComp::read(fh, frame).map_err(m)?),
        kind::SUBSCRIBE => v4::Packet::Subscribe(v4::Subscribe::read(fh, frame).map_err(m)?),
        kind::UNSUBSCRIBE => v4::Packet::Unsubscribe(v4::Unsubscribe::read(fh, frame).map_err(m)?),
        kind::PINGREQ => v4::Packet::PingReq,
        kind::DISCONNECT => v4::Packet::Disconnect,
        _ => return Err(unexpected(h)),
    })
}

fn unexpected(h: &Header) -> CodecError {
    CodecError::ProtocolError(format!("a server does not accept {}", h.name()))
}
