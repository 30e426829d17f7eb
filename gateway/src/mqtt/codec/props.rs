//! MQTT 5 property sections: walks one section exactly as long as its declared length and
//! checks which properties the packet may carry, their values and duplicates.
//!
//! rumqttc's property readers stop only once their own byte count reaches the declared
//! length, so a section whose last property runs past it silently eats the payload; and they
//! accept properties a client must not send. Validating here first keeps that from reaching
//! the session layer.

use super::CodecError;
use super::frame::Reader;

/// Where a property section sits, which decides the properties it may hold (MQTT 5 table 2-4,
/// client-to-server direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    /// CONNECT variable header.
    Connect,
    /// The will properties in the CONNECT payload.
    Will,
    /// PUBLISH from a client.
    Publish,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    Ack,
    /// SUBSCRIBE.
    Subscribe,
    /// UNSUBSCRIBE.
    Unsubscribe,
    /// DISCONNECT from a client.
    Disconnect,
    /// AUTH.
    Auth,
}

/// What a property section held, as far as decoding needs to know.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Summary {
    /// Bytes of the section after its length prefix.
    pub len: usize,
    /// Authentication Method (21) present.
    pub has_auth_method: bool,
    /// Reason String (31) present.
    pub has_reason_string: bool,
}

const PAYLOAD_FORMAT: u8 = 1;
const MESSAGE_EXPIRY: u8 = 2;
const CONTENT_TYPE: u8 = 3;
const RESPONSE_TOPIC: u8 = 8;
const CORRELATION_DATA: u8 = 9;
const SUBSCRIPTION_ID: u8 = 11;
const SESSION_EXPIRY: u8 = 17;
const AUTH_METHOD: u8 = 21;
const AUTH_DATA: u8 = 22;
const REQUEST_PROBLEM_INFO: u8 = 23;
const WILL_DELAY: u8 = 24;
const REQUEST_RESPONSE_INFO: u8 = 25;
const SERVER_REFERENCE: u8 = 28;
const REASON_STRING: u8 = 31;
const RECEIVE_MAXIMUM: u8 = 33;
const TOPIC_ALIAS_MAXIMUM: u8 = 34;
const TOPIC_ALIAS: u8 = 35;
const USER_PROPERTY: u8 = 38;
const MAXIMUM_PACKET_SIZE: u8 = 39;

/// Properties a client may put in each section.
fn allowed(section: Section) -> &'static [u8] {
    match section {
        Section::Connect => &[
            SESSION_EXPIRY,
            AUTH_METHOD,
            AUTH_DATA,
            REQUEST_PROBLEM_INFO,
            REQUEST_RESPONSE_INFO,
            RECEIVE_MAXIMUM,
            TOPIC_ALIAS_MAXIMUM,
            USER_PROPERTY,
            MAXIMUM_PACKET_SIZE,
        ],
        Section::Will => &[
            PAYLOAD_FORMAT,
            MESSAGE_EXPIRY,
            CONTENT_TYPE,
            RESPONSE_TOPIC,
            CORRELATION_DATA,
            WILL_DELAY,
            USER_PROPERTY,
        ],
        Section::Publish => &[
            PAYLOAD_FORMAT,
            MESSAGE_EXPIRY,
            CONTENT_TYPE,
            RESPONSE_TOPIC,
            CORRELATION_DATA,
            TOPIC_ALIAS,
            USER_PROPERTY,
        ],
        Section::Ack => &[REASON_STRING, USER_PROPERTY],
        Section::Subscribe => &[SUBSCRIPTION_ID, USER_PROPERTY],
        Section::Unsubscribe => &[USER_PROPERTY],
        Section::Disconnect => &[SESSION_EXPIRY, REASON_STRING, USER_PROPERTY],
        Section::Auth => &[AUTH_METHOD, AUTH_DATA, REASON_STRING, USER_PROPERTY],
    }
}

/// Reads a property length and the section it announces from `r`, checking every property.
pub(super) fn check(r: &mut Reader<'_>, section: Section) -> Result<Summary, CodecError> {
    let len = r.varint("property length")?;
    let body = r.take(len, "property section")?;
    let mut p = Reader::new(body, section_name(section));
    let mut seen = 0u64;
    let mut summary = Summary {
        len,
        ..Summary::default()
    };
    while p.remaining() > 0 {
        let id = p.u8("property identifier")?;
        if !allowed(section).contains(&id) {
            return Err(match id {
                SUBSCRIPTION_ID if section == Section::Publish => {
                    p.protocol("a client must not send a Subscription Identifier")
                }
                SERVER_REFERENCE if section == Section::Disconnect => {
                    p.protocol("a client must not send a Server Reference")
                }
                _ => p.malformed(&format!("property {id} is not valid here")),
            });
        }
        if id != USER_PROPERTY {
            let bit = 1u64 << id;
            if seen & bit != 0 {
                return Err(p.protocol(&format!("property {id} appears twice")));
            }
            seen |= bit;
        }
        check_value(&mut p, id)?;
        summary.has_auth_method |= id == AUTH_METHOD;
        summary.has_reason_string |= id == REASON_STRING;
    }
    Ok(summary)
}

/// Reads one property value and checks the ranges MQTT 5 gives it.
fn check_value(p: &mut Reader<'_>, id: u8) -> Result<(), CodecError> {
    match id {
        PAYLOAD_FORMAT | REQUEST_PROBLEM_INFO | REQUEST_RESPONSE_INFO => {
            if p.u8("property value")? > 1 {
                return Err(p.protocol(&format!("property {id} must be 0 or 1")));
            }
        }
        MESSAGE_EXPIRY | SESSION_EXPIRY | WILL_DELAY => {
            p.u32("property value")?;
        }
        MAXIMUM_PACKET_SIZE => {
            if p.u32("Maximum Packet Size")? == 0 {
                return Err(p.protocol("Maximum Packet Size 0"));
            }
        }
        RECEIVE_MAXIMUM => {
            if p.u16("Receive Maximum")? == 0 {
                return Err(p.protocol("Receive Maximum 0"));
            }
        }
        TOPIC_ALIAS => {
            // Alias 0 is refused by the session with its own reason code (0x94).
            p.u16("Topic Alias")?;
        }
        TOPIC_ALIAS_MAXIMUM => {
            p.u16("Topic Alias Maximum")?;
        }
        SUBSCRIPTION_ID => {
            if p.varint("Subscription Identifier")? == 0 {
                return Err(p.protocol("Subscription Identifier 0"));
            }
        }
        CORRELATION_DATA | AUTH_DATA => {
            p.binary("property value")?;
        }
        USER_PROPERTY => {
            p.string("user property name")?;
            p.string("user property value")?;
        }
        // CONTENT_TYPE, RESPONSE_TOPIC, AUTH_METHOD, REASON_STRING: strings.
        _ => {
            p.string("property value")?;
        }
    }
    Ok(())
}

fn section_name(section: Section) -> &'static str {
    match section {
        Section::Connect => "CONNECT properties",
        Section::Will => "will properties",
        Section::Publish => "PUBLISH properties",
        Section::Ack => "acknowledgement properties",
        Section::Subscribe => "SUBSCRIBE properties",
        Section::Unsubscribe => "UNSUBSCRIBE properties",
        Section::Disconnect => "DISCONNECT properties",
        Section::Auth => "AUTH properties",
    }
}
