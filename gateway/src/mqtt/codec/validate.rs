//! Structural checks of one complete packet body before it is handed to rumqttc: every length
//! stays inside the frame, nothing trails the last field, strings are UTF-8, reserved bits are
//! zero and the rules MQTT 3.1.1 and 5 set per packet hold.
//!
//! rumqttc's readers assume much of this (a frame they cut short, a property section that
//! overruns, trailing bytes they ignore); after these checks they only build the values.

use super::frame::{Header, Reader, kind};
use super::props::{self, Section, Summary};
use super::{CodecError, ProtocolVersion};

/// The protocol a CONNECT body asks for, from its protocol name and level.
pub(super) fn sniff_version(body: &[u8]) -> Result<ProtocolVersion, CodecError> {
    let mut r = Reader::new(body, "CONNECT");
    let name = r.binary("protocol name")?;
    let level = r.u8("protocol level")?;
    match (name, level) {
        (b"MQTT", 4) => Ok(ProtocolVersion::V311),
        (b"MQTT", 5) => Ok(ProtocolVersion::V5),
        (b"MQTT" | b"MQIsdp", level) => Err(CodecError::UnsupportedProtocolVersion(level)),
        _ => Err(r.malformed("unknown protocol name (expected \"MQTT\")")),
    }
}

/// Checks the body of a packet a server may receive. Returns the summary of its property
/// section (empty for MQTT 3.1.1 and for packets without one).
pub(super) fn check(h: &Header, body: &[u8], v: ProtocolVersion) -> Result<Summary, CodecError> {
    let v5 = v == ProtocolVersion::V5;
    let mut r = Reader::new(body, h.name());
    let mut summary = Summary::default();
    match h.kind() {
        kind::CONNECT => check_connect(&mut r, v5)?,
        kind::PUBLISH => {
            r.string("topic name")?;
            if (h.byte1 >> 1) & 0b11 > 0 {
                r.packet_id()?;
            }
            if v5 {
                props::check(&mut r, Section::Publish)?;
            }
            // The rest is the application payload.
            return Ok(summary);
        }
        kind::PUBACK | kind::PUBREC | kind::PUBREL | kind::PUBCOMP => {
            r.packet_id()?;
            if v5 && r.remaining() > 0 {
                let code = r.u8("reason code")?;
                let valid: &[u8] = if matches!(h.kind(), kind::PUBACK | kind::PUBREC) {
                    &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]
                } else {
                    &[0x00, 0x92]
                };
                if !valid.contains(&code) {
                    return Err(r.protocol(&format!("reason code {code:#04x} is not defined")));
                }
                if r.remaining() > 0 {
                    summary = props::check(&mut r, Section::Ack)?;
                }
            }
        }
        kind::SUBSCRIBE => check_subscribe(&mut r, v5)?,
        kind::UNSUBSCRIBE => {
            r.packet_id()?;
            if v5 {
                props::check(&mut r, Section::Unsubscribe)?;
            }
            if r.remaining() == 0 {
                return Err(r.protocol("no topic filter"));
            }
            while r.remaining() > 0 {
                r.string("topic filter")?;
            }
        }
        kind::DISCONNECT if v5 && r.remaining() > 0 => {
            let code = r.u8("reason code")?;
            if rumqttc::v5::mqttbytes::v5::DisconnectReasonCode::try_from(code).is_err() {
                return Err(r.protocol(&format!("reason code {code:#04x} is not defined")));
            }
            if r.remaining() > 0 {
                summary = props::check(&mut r, Section::Disconnect)?;
            }
        }
        kind::AUTH if r.remaining() > 0 => {
            let code = r.u8("reason code")?;
            if ![0x00, 0x18, 0x19].contains(&code) {
                return Err(r.protocol(&format!("reason code {code:#04x} is not defined")));
            }
            if r.remaining() > 0 {
                summary = props::check(&mut r, Section::Auth)?;
            }
        }
        // PINGREQ, an MQTT 3.1.1 DISCONNECT, an empty MQTT 5 DISCONNECT or AUTH: no body.
        _ => {}
    }
    r.expect_end()?;
    Ok(summary)
}

/// CONNECT: flags, then every field in order, nothing after the last.
fn check_connect(r: &mut Reader<'_>, v5: bool) -> Result<(), CodecError> {
    r.binary("protocol name")?;
    r.u8("protocol level")?;
    let flags = r.u8("connect flags")?;
    if flags & 0x01 != 0 {
        return Err(r.malformed("the reserved connect flag is set"));
    }
    let will = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0b11;
    if !will && (will_qos != 0 || flags & 0x20 != 0) {
        return Err(r.malformed("will QoS or will retain set without the will flag"));
    }
    if will_qos == 3 {
        return Err(r.malformed("will QoS 3"));
    }
    let user = flags & 0x80 != 0;
    let password = flags & 0x40 != 0;
    if !v5 && password && !user {
        return Err(r.malformed("password flag set without the user name flag"));
    }
    r.u16("keep alive")?;
    if v5 {
        props::check(r, Section::Connect)?;
    }
    r.string("client identifier")?;
    if will {
        if v5 {
            props::check(r, Section::Will)?;
        }
        r.string("will topic")?;
        r.binary("will payload")?;
    }
    if user {
        r.string("user name")?;
    }
    if password {
        let raw = r.binary("password")?;
        // rumqttc keeps the password as a String.
        if std::str::from_utf8(raw).is_err() {
            return Err(r.malformed("password is not UTF-8 (binary passwords are not supported)"));
        }
    }
    Ok(())
}

/// SUBSCRIBE: packet id, properties (MQTT 5), then at least one filter with its options.
fn check_subscribe(r: &mut Reader<'_>, v5: bool) -> Result<(), CodecError> {
    r.packet_id()?;
    if v5 {
        props::check(r, Section::Subscribe)?;
    }
    if r.remaining() == 0 {
        return Err(r.protocol("no topic filter"));
    }
    while r.remaining() > 0 {
        r.string("topic filter")?;
        let options = r.u8("subscription options")?;
        let qos = options & 0b11;
        if v5 {
            if options & 0b1100_0000 != 0 {
                return Err(r.malformed("reserved subscription option bits set"));
            }
            if qos == 3 {
                return Err(r.protocol("maximum QoS 3"));
            }
            if (options >> 4) & 0b11 == 3 {
                return Err(r.protocol("retain handling 3"));
            }
        } else if options & 0b1111_1100 != 0 || qos == 3 {
            return Err(r.malformed("reserved subscription option bits set or QoS 3"));
        }
    }
    Ok(())
}
