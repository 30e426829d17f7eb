//! Encoding MQTT 5 packet values for the connection's protocol version with rumqttc's
//! writers, guarding against their bugs: nothing half-written stays in the output buffer.
//!
//! Worked around here (rumqttc 0.25):
//! - The MQTT 5 CONNACK writer panics (`unreachable!`) on the three 3.1.1-only codes of its
//!   own `ConnectReturnCode`; they are mapped to their MQTT 5 equivalents first.
//! - The MQTT 5 DISCONNECT writer mishandles a reason code without properties: with
//!   `properties: None` it declares a remaining length one byte short (a corrupt frame); with
//!   empty properties it writes a plain `E0 00`, dropping the reason code. That form is
//!   written here.
//! - The CONNECT writers (3.1.1 and 5) patch the flags byte at an offset counted from the
//!   start of the buffer, not of the packet: appended to a non-empty buffer, a CONNECT
//!   overwrites a byte of itself or of an earlier packet. CONNECT goes through a scratch
//!   buffer.
//! - `Publish::write` with QoS > 0 and packet id 0 fails after writing part of the packet.
//! - AUTH property lengths are miscomputed: AUTH with properties is refused.
//! - Strings and binary fields longer than 65,535 bytes get a truncated length prefix: refused.
//!
//! Every frame written is checked against its own fixed header before it is kept.

use bytes::BytesMut;
use rumqttc::v5::mqttbytes::v5;

use super::frame::parse_header;
use super::read::guard;
use super::{CodecError, Encoded, ProtocolVersion};
use crate::mqtt::convert::{self, ToV4};

/// Appends `pkt` to `out` for `version`, or leaves `out` as it was.
pub(super) fn write(
    version: ProtocolVersion,
    pkt: &v5::Packet,
    out: &mut BytesMut,
    max: Option<u32>,
) -> Result<Encoded, CodecError> {
    let start = out.len();
    let name = packet_name(pkt);
    let unencodable = |reason: String| CodecError::Unencodable {
        packet: name,
        reason,
    };
    let result = guard(
        || {
            match version {
                ProtocolVersion::V5 => write_v5(pkt, out, max),
                ProtocolVersion::V311 => write_v4(pkt, out, max),
            }
            .map_err(unencodable)
        },
        || CodecError::Unencodable {
            packet: name,
            reason: "the encoder panicked".into(),
        },
    );
    let written = out.len().saturating_sub(start);
    match result {
        Ok(Encoded::Written(_)) => {}
        other => {
            out.truncate(start);
            return other;
        }
    }
    let declared = parse_header(&out[start..])
        .ok()
        .flatten()
        .map(|h| h.frame_len());
    if declared != Some(written) {
        out.truncate(start);
        return Err(CodecError::Unencodable {
            packet: name,
            reason: format!("the encoder wrote {written} bytes but declared {declared:?}"),
        });
    }
    if let Some(max) = max.filter(|&m| written > m as usize) {
        out.truncate(start);
        return Ok(Encoded::TooLarge { size: written, max });
    }
    Ok(Encoded::Written(written))
}

fn too_large(size: usize, max: Option<u32>) -> Option<Encoded> {
    max.filter(|&m| size > m as usize)
        .map(|max| Encoded::TooLarge { size, max })
}

fn write_v5(pkt: &v5::Packet, out: &mut BytesMut, max: Option<u32>) -> Result<Encoded, String> {
    check_lengths(pkt)?;
    let fixed;
    let pkt = match pkt {
        v5::Packet::ConnAck(a) => {
            let mut a = a.clone();
            a.code = convert::connack_code_for_v5(a.code);
            fixed = v5::Packet::ConnAck(a);
            &fixed
        }
        v5::Packet::Disconnect(d)
            if d.reason_code != v5::DisconnectReasonCode::NormalDisconnection
                && d.properties.as_ref().is_none_or(no_disconnect_properties) =>
        {
            if let Some(skip) = too_large(4, max) {
                return Ok(skip);
            }
            out.extend_from_slice(&[0xE0, 0x02, d.reason_code as u8, 0x00]);
            return Ok(Encoded::Written(4));
        }
        v5::Packet::Auth(a) if a.properties.is_some() => {
            return Err("AUTH with properties (rumqttc miscomputes their length)".into());
        }
        other => other,
    };
    if let Some(skip) = too_large(pkt.size(), max) {
        return Ok(skip);
    }
    let n = if let v5::Packet::Connect(..) = pkt {
        let mut scratch = BytesMut::new();
        let n = pkt.write(&mut scratch, None).map_err(|e| e.to_string())?;
        out.extend_from_slice(&scratch);
        n
    } else {
        pkt.write(out, None).map_err(|e| e.to_string())?
    };
    Ok(Encoded::Written(n))
}

fn write_v4(pkt: &v5::Packet, out: &mut BytesMut, max: Option<u32>) -> Result<Encoded, String> {
    check_lengths(pkt)?;
    let pkt = match convert::to_v4(pkt)? {
        ToV4::Close => return Ok(Encoded::Close),
        ToV4::Packet(p) => p,
    };
    if let Some(skip) = too_large(pkt.size(), max) {
        return Ok(skip);
    }
    let no_limit = usize::MAX;
    let n = if let rumqttc::mqttbytes::v4::Packet::Connect(_) = pkt {
        let mut scratch = BytesMut::new();
        let n = pkt
            .write(&mut scratch, no_limit)
            .map_err(|e| e.to_string())?;
        out.extend_from_slice(&scratch);
        n
    } else {
        pkt.write(out, no_limit).map_err(|e| e.to_string())?
    };
    Ok(Encoded::Written(n))
}

fn no_disconnect_properties(p: &v5::DisconnectProperties) -> bool {
    p.session_expiry_interval.is_none()
        && p.reason_string.is_none()
        && p.user_properties.is_empty()
        && p.server_reference.is_none()
}

/// Refuses strings and binary fields that a two byte length prefix cannot describe.
fn check_lengths(pkt: &v5::Packet) -> Result<(), String> {
    let mut f = Fields::default();
    match pkt {
        v5::Packet::Publish(p) => {
            f.0.push(&p.topic);
            if let Some(pp) = &p.properties {
                f.strings([&pp.response_topic, &pp.content_type]);
                f.0.extend(pp.correlation_data.as_deref());
                f.users(&pp.user_properties);
            }
        }
        v5::Packet::ConnAck(a) => {
            if let Some(pp) = &a.properties {
                f.strings([
                    &pp.assigned_client_identifier,
                    &pp.reason_string,
                    &pp.response_information,
                    &pp.server_reference,
                    &pp.authentication_method,
                ]);
                f.0.extend(pp.authentication_data.as_deref());
                f.users(&pp.user_properties);
            }
        }
        v5::Packet::PubAck(a) => f.ack(
            a.properties
                .as_ref()
                .map(|p| (&p.reason_string, &p.user_properties[..])),
        ),
        v5::Packet::PubRec(a) => f.ack(
            a.properties
                .as_ref()
                .map(|p| (&p.reason_string, &p.user_properties[..])),
        ),
        v5::Packet::PubRel(a) => f.ack(
            a.properties
                .as_ref()
                .map(|p| (&p.reason_string, &p.user_properties[..])),
        ),
        v5::Packet::PubComp(a) => f.ack(
            a.properties
                .as_ref()
                .map(|p| (&p.reason_string, &p.user_properties[..])),
        ),
        v5::Packet::SubAck(a) => f.ack(
            a.properties
                .as_ref()
                .map(|p| (&p.reason_string, &p.user_properties[..])),
        ),
        v5::Packet::UnsubAck(a) => f.ack(
            a.properties
                .as_ref()
                .map(|p| (&p.reason_string, &p.user_properties[..])),
        ),
        v5::Packet::Disconnect(d) => {
            if let Some(pp) = &d.properties {
                f.strings([&pp.reason_string, &pp.server_reference]);
                f.users(&pp.user_properties);
            }
        }
        v5::Packet::Connect(c, will, login) => {
            f.0.push(c.client_id.as_bytes());
            if let Some(w) = will {
                f.0.extend([&w.topic[..], &w.message[..]]);
            }
            if let Some(l) = login {
                f.0.extend([l.username.as_bytes(), l.password.as_bytes()]);
            }
        }
        v5::Packet::Subscribe(s) => f.0.extend(s.filters.iter().map(|x| x.path.as_bytes())),
        v5::Packet::Unsubscribe(u) => f.0.extend(u.filters.iter().map(String::as_bytes)),
        v5::Packet::PingReq(_) | v5::Packet::PingResp(_) | v5::Packet::Auth(_) => {}
    }
    match f.0.iter().find(|x| x.len() > usize::from(u16::MAX)) {
        Some(x) => Err(format!(
            "a {} byte string or binary field (at most 65535)",
            x.len()
        )),
        None => Ok(()),
    }
}

/// The length-prefixed fields of a packet, gathered for [`check_lengths`].
#[derive(Default)]
struct Fields<'a>(Vec<&'a [u8]>);

/// An acknowledgement's reason string and user properties.
type AckProps<'a> = (&'a Option<String>, &'a [(String, String)]);

impl<'a> Fields<'a> {
    fn strings<const N: usize>(&mut self, strings: [&'a Option<String>; N]) {
        self.0
            .extend(strings.into_iter().flatten().map(String::as_bytes));
    }

    fn users(&mut self, users: &'a [(String, String)]) {
        self.0
            .extend(users.iter().flat_map(|(k, v)| [k.as_bytes(), v.as_bytes()]));
    }

    fn ack(&mut self, props: Option<AckProps<'a>>) {
        if let Some((reason, users)) = props {
            self.strings([reason]);
            self.users(users);
        }
    }
}

/// The packet's name, for errors.
pub(super) fn packet_name(pkt: &v5::Packet) -> &'static str {
    match pkt {
        v5::Packet::Auth(_) => "AUTH",
        v5::Packet::Connect(..) => "CONNECT",
        v5::Packet::ConnAck(_) => "CONNACK",
        v5::Packet::Publish(_) => "PUBLISH",
        v5::Packet::PubAck(_) => "PUBACK",
        v5::Packet::PingReq(_) => "PINGREQ",
        v5::Packet::PingResp(_) => "PINGRESP",
        v5::Packet::Subscribe(_) => "SUBSCRIBE",
        v5::Packet::SubAck(_) => "SUBACK",
        v5::Packet::PubRec(_) => "PUBREC",
        v5::Packet::PubRel(_) => "PUBREL",
        v5::Packet::PubComp(_) => "PUBCOMP",
        v5::Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        v5::Packet::UnsubAck(_) => "UNSUBACK",
        v5::Packet::Disconnect(_) => "DISCONNECT",
    }
}
