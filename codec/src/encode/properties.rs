//! v5 property block encoding.
//!
//! Writes every property that is set, in identifier order; which properties
//! belong in which packet is the caller's responsibility (the decoder is the
//! side that enforces the allow lists).

use super::{Counter, Sink, put_bin, put_str, put_varint};
use crate::{EncodeError, Properties};

/// Byte length of the property block (without its length prefix).
pub(crate) fn properties_len(p: &Properties, lean: bool) -> Result<usize, EncodeError> {
    if crate::properties::is_shared_empty(p) {
        return Ok(0);
    }
    let mut c = Counter::default();
    write_all(&mut c, p, lean)?;
    Ok(c.0)
}

/// Property length followed by the properties. `lean` drops Reason String and
/// User Properties (allowed when they would exceed the peer's size limit).
pub(crate) fn put_properties<W: Sink>(
    w: &mut W,
    p: &Properties,
    lean: bool,
) -> Result<(), EncodeError> {
    if crate::properties::is_shared_empty(p) {
        w.put_u8(0);
        return Ok(());
    }
    put_varint(w, properties_len(p, lean)?)?;
    write_all(w, p, lean)
}

fn byte<W: Sink>(w: &mut W, id: u8, v: Option<u8>) {
    if let Some(v) = v {
        w.put_u8(id);
        w.put_u8(v);
    }
}

fn two<W: Sink>(w: &mut W, id: u8, v: Option<u16>) {
    if let Some(v) = v {
        w.put_u8(id);
        w.put_u16(v);
    }
}

fn four<W: Sink>(w: &mut W, id: u8, v: Option<u32>) {
    if let Some(v) = v {
        w.put_u8(id);
        w.put_u32(v);
    }
}

fn string<W: Sink>(w: &mut W, id: u8, v: Option<&String>) -> Result<(), EncodeError> {
    if let Some(v) = v {
        w.put_u8(id);
        put_str(w, v)?;
    }
    Ok(())
}

fn binary<W: Sink>(w: &mut W, id: u8, v: Option<&bytes::Bytes>) -> Result<(), EncodeError> {
    if let Some(v) = v {
        w.put_u8(id);
        put_bin(w, v)?;
    }
    Ok(())
}

fn write_all<W: Sink>(w: &mut W, p: &Properties, lean: bool) -> Result<(), EncodeError> {
    byte(w, 0x01, p.payload_format_indicator);
    four(w, 0x02, p.message_expiry_interval);
    string(w, 0x03, p.content_type.as_ref())?;
    string(w, 0x08, p.response_topic.as_ref())?;
    binary(w, 0x09, p.correlation_data.as_ref())?;
    for &id in &p.subscription_identifiers {
        w.put_u8(0x0B);
        put_varint(w, id as usize)?;
    }
    four(w, 0x11, p.session_expiry_interval);
    string(w, 0x12, p.assigned_client_identifier.as_ref())?;
    two(w, 0x13, p.server_keep_alive);
    string(w, 0x15, p.authentication_method.as_ref())?;
    binary(w, 0x16, p.authentication_data.as_ref())?;
    byte(w, 0x17, p.request_problem_information);
    four(w, 0x18, p.will_delay_interval);
    byte(w, 0x19, p.request_response_information);
    string(w, 0x1A, p.response_information.as_ref())?;
    string(w, 0x1C, p.server_reference.as_ref())?;
    if !lean {
        string(w, 0x1F, p.reason_string.as_ref())?;
    }
    two(w, 0x21, p.receive_maximum);
    two(w, 0x22, p.topic_alias_maximum);
    two(w, 0x23, p.topic_alias);
    byte(w, 0x24, p.maximum_qos);
    byte(w, 0x25, p.retain_available);
    if !lean {
        for (k, v) in &p.user_properties {
            w.put_u8(0x26);
            put_str(w, k)?;
            put_str(w, v)?;
        }
    }
    four(w, 0x27, p.maximum_packet_size);
    byte(w, 0x28, p.wildcard_subscription_available);
    byte(w, 0x29, p.subscription_identifier_available);
    byte(w, 0x2A, p.shared_subscription_available);
    Ok(())
}
