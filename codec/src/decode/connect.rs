//! CONNECT decoding (MQTT 3.1.1 §3.1, MQTT 5 §3.1).
//!
//! CONNECT announces its own protocol level, so it is decoded independently
//! of the codec's current protocol.

use super::properties::{Context, read_properties};
use super::reader::Reader;
use crate::{Connect, DecodeError, LastWill, Limits, Protocol, QoS};

/// Parses a CONNECT body.
///
/// The protocol name and level are checked before anything else so that a
/// client speaking another revision gets `UnsupportedProtocolVersion` (and
/// thus CONNACK 0x84 / return code 1) rather than a parse error on fields
/// whose layout differs. "MQIsdp" (MQTT 3.1) is recognised for that purpose
/// only; any other name is `InvalidProtocolName`.
pub(crate) fn parse(r: &mut Reader, limits: &Limits) -> Result<Connect, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    match (name.as_ref(), level) {
        (b"MQTT", 4) => parse_rest(r, Protocol::V311, limits),
        (b"MQTT", 5) => parse_rest(r, Protocol::V5, limits),
        (b"MQTT" | b"MQIsdp", _) => Err(DecodeError::UnsupportedProtocolVersion(level)),
        _ => Err(DecodeError::InvalidProtocolName),
    }
}

fn parse_rest(r: &mut Reader, protocol: Protocol, limits: &Limits) -> Result<Connect, DecodeError> {
    let v5 = protocol == Protocol::V5;
    let flags = r.u8()?;
    // [MQTT-3.1.2-3]
    if flags & 0b0000_0001 != 0 {
        return Err(DecodeError::MalformedPacket("CONNECT reserved flag set"));
    }
    let clean_start = flags & 0b0000_0010 != 0;
    let will_flag = flags & 0b0000_0100 != 0;
    let will_qos =
        QoS::from_u8((flags >> 3) & 0b11).ok_or(DecodeError::MalformedPacket("will QoS 3"))?;
    let will_retain = flags & 0b0010_0000 != 0;
    let password_flag = flags & 0b0100_0000 != 0;
    let username_flag = flags & 0b1000_0000 != 0;
    // [MQTT-3.1.2-11], [MQTT-3.1.2-13], [MQTT-3.1.2-15]
    if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
        return Err(DecodeError::MalformedPacket(
            "will QoS/retain set without will flag",
        ));
    }
    // 3.1.1 [MQTT-3.1.2-22]; v5 allows a password without a user name.
    if !v5 && password_flag && !username_flag {
        return Err(DecodeError::MalformedPacket(
            "password flag set without user name flag",
        ));
    }
    let keep_alive = r.u16()?;

    // One counter for both property blocks: the cap is per packet.
    let mut count = 0;
    let properties = if v5 {
        read_properties(r, Context::Connect, &mut count, limits)?
    } else {
        Default::default()
    };
    let client_id = r.string()?;
    let will = if will_flag {
        let properties = if v5 {
            read_properties(r, Context::Will, &mut count, limits)?
        } else {
            Default::default()
        };
        let topic = r.byte_string()?;
        let payload = r.binary()?;
        Some(LastWill {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if username_flag {
        Some(r.string()?)
    } else {
        None
    };
    let password = if password_flag {
        Some(r.binary()?)
    } else {
        None
    };
    Ok(Connect {
        protocol,
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}
