//! v5 property block decoding with per-packet allow lists (MQTT 5 §2.2.2.2).

use super::reader::Reader;
use crate::{DecodeError, Limits, Properties, Props};

/// Which packet (or part of one) a property block belongs to; selects the
/// allow list. Only client→server packets are decoded, so server-only
/// properties (Assigned Client Identifier, Server Keep Alive, …) are never
/// allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Connect,
    Will,
    Publish,
    PubResp,
    Subscribe,
    Unsubscribe,
    Disconnect,
    Auth,
}

/// Bit set of property identifiers allowed in `ctx`.
fn allowed(ctx: Context) -> u64 {
    const fn set(ids: &[u8]) -> u64 {
        match ids {
            [first, rest @ ..] => (1u64 << *first) | set(rest),
            [] => 0,
        }
    }
    const CONNECT: u64 = set(&[0x11, 0x21, 0x27, 0x22, 0x19, 0x17, 0x26, 0x15, 0x16]);
    const WILL: u64 = set(&[0x18, 0x01, 0x02, 0x03, 0x08, 0x09, 0x26]);
    // 0x0B is listed for PUBLISH in the spec table but only server→client;
    // it gets its own, more specific error below.
    const PUBLISH: u64 = set(&[0x01, 0x02, 0x23, 0x08, 0x09, 0x26, 0x03]);
    const PUBRESP: u64 = set(&[0x1F, 0x26]);
    const SUBSCRIBE: u64 = set(&[0x0B, 0x26]);
    const UNSUBSCRIBE: u64 = set(&[0x26]);
    const DISCONNECT: u64 = set(&[0x11, 0x1F, 0x26, 0x1C]);
    const AUTH: u64 = set(&[0x15, 0x16, 0x1F, 0x26]);
    match ctx {
        Context::Connect => CONNECT,
        Context::Will => WILL,
        Context::Publish => PUBLISH,
        Context::PubResp => PUBRESP,
        Context::Subscribe => SUBSCRIBE,
        Context::Unsubscribe => UNSUBSCRIBE,
        Context::Disconnect => DISCONNECT,
        Context::Auth => AUTH,
    }
}

/// Identifiers defined by MQTT 5 (all fit in one byte).
const KNOWN: [u8; 27] = [
    0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1C,
    0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A,
];

fn dup() -> DecodeError {
    DecodeError::ProtocolError("property included more than once")
}

/// Stores `v` in a single-valued property slot; a second occurrence is a
/// Protocol Error.
fn once<T>(slot: &mut Option<T>, v: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(dup());
    }
    *slot = Some(v);
    Ok(())
}

/// Byte that must be 0 or 1 (Payload Format Indicator, Request Problem /
/// Response Information).
fn bool_byte(r: &mut Reader) -> Result<u8, DecodeError> {
    match r.u8()? {
        v @ (0 | 1) => Ok(v),
        _ => Err(DecodeError::ProtocolError("property value must be 0 or 1")),
    }
}

fn nonzero_u16(r: &mut Reader, what: &'static str) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::ProtocolError(what)),
        v => Ok(v),
    }
}

/// Reads the property length and the block it delimits. The block is carved
/// out as its own reader so a property value cannot run past it into the
/// payload, and `count` accumulates entries across every block of the packet
/// (CONNECT has two) for the [`Limits::max_properties`] cap.
pub(crate) fn read_properties(
    r: &mut Reader,
    ctx: Context,
    count: &mut usize,
    limits: &Limits,
) -> Result<Props, DecodeError> {
    let len = r.varint()? as usize;
    if len == 0 {
        // The usual case: nothing to allocate.
        return Ok(Props::default());
    }
    if len > r.remaining() {
        return Err(DecodeError::MalformedPacket(
            "property length exceeds packet",
        ));
    }
    let mut block = Reader::new(r.take(len)?);
    let mut p = Properties::default();
    let allow = allowed(ctx);
    while !block.is_empty() {
        *count += 1;
        if *count > limits.max_properties {
            return Err(DecodeError::TooManyProperties);
        }
        let id = block.u8()?;
        if !KNOWN.contains(&id) {
            return Err(DecodeError::MalformedPacket("unknown property identifier"));
        }
        if id == 0x0B && ctx == Context::Publish {
            return Err(DecodeError::ProtocolError(
                "client PUBLISH must not carry a subscription identifier",
            ));
        }
        if allow & (1u64 << id) == 0 {
            return Err(DecodeError::ProtocolError(
                "property not allowed in this packet",
            ));
        }
        read_one(&mut block, id, &mut p)?;
    }
    if ctx == Context::Connect
        && p.authentication_data.is_some()
        && p.authentication_method.is_none()
    {
        // MQTT 5 §3.1.2.11.10
        return Err(DecodeError::ProtocolError(
            "authentication data without authentication method",
        ));
    }
    Ok(p.into())
}

/// Reads one property value (identifier already consumed and allowed).
fn read_one(b: &mut Reader, id: u8, p: &mut Properties) -> Result<(), DecodeError> {
    match id {
        0x01 => once(&mut p.payload_format_indicator, bool_byte(b)?),
        0x02 => once(&mut p.message_expiry_interval, b.u32()?),
        0x03 => once(&mut p.content_type, b.string()?),
        0x08 => {
            let topic = b.string()?;
            // [MQTT-3.3.2-14] Response Topic is a Topic Name: no wildcards.
            if topic.contains(['+', '#']) {
                return Err(DecodeError::ProtocolError(
                    "response topic contains wildcards",
                ));
            }
            once(&mut p.response_topic, topic)
        }
        0x09 => once(&mut p.correlation_data, b.binary()?),
        0x0B => {
            let v = b.varint()?;
            if v == 0 {
                return Err(DecodeError::ProtocolError("subscription identifier 0"));
            }
            // Only SUBSCRIBE reaches here, where at most one is allowed.
            if !p.subscription_identifiers.is_empty() {
                return Err(dup());
            }
            p.subscription_identifiers.push(v);
            Ok(())
        }
        0x11 => once(&mut p.session_expiry_interval, b.u32()?),
        0x15 => once(&mut p.authentication_method, b.string()?),
        0x16 => once(&mut p.authentication_data, b.binary()?),
        0x17 => once(&mut p.request_problem_information, bool_byte(b)?),
        0x18 => once(&mut p.will_delay_interval, b.u32()?),
        0x19 => once(&mut p.request_response_information, bool_byte(b)?),
        0x1C => once(&mut p.server_reference, b.string()?),
        0x1F => once(&mut p.reason_string, b.string()?),
        0x21 => once(&mut p.receive_maximum, nonzero_u16(b, "receive maximum 0")?),
        0x22 => once(&mut p.topic_alias_maximum, b.u16()?),
        0x23 => once(&mut p.topic_alias, nonzero_u16(b, "topic alias 0")?),
        0x26 => {
            let k = b.string()?;
            let v = b.string()?;
            p.user_properties.push((k, v));
            Ok(())
        }
        0x27 => match b.u32()? {
            0 => Err(DecodeError::ProtocolError("maximum packet size 0")),
            v => once(&mut p.maximum_packet_size, v),
        },
        // Known but server→client only; filtered by the allow lists.
        _ => Err(DecodeError::ProtocolError(
            "property not allowed in this packet",
        )),
    }
}
