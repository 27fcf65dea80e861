//! Client→server packet decoding.
//!
//! [`decode`] frames with [`crate::frame::check`], takes the frame off the
//! read buffer as one `Bytes` (small PUBLISH frames copied, everything else
//! split off), and parses from that so payloads, topics and binary
//! properties are slices of the frame. Every parser must consume the frame
//! exactly: leftover bytes are a Malformed Packet.

mod connect;
mod properties;
mod reader;

use bytes::{Buf, Bytes, BytesMut};

use self::properties::{Context, read_properties};
use self::reader::Reader;
use crate::{
    Auth, DecodeError, Disconnect, Limits, Packet, Protocol, PubResp, Publish, QoS, RetainHandling,
    Subscribe, SubscribeFilter, Unsubscribe, frame,
};

/// Packet type of PUBLISH in the fixed header's high nibble.
const PUBLISH: u8 = 3;

/// PUBLISH frames smaller than this are copied out of the read buffer;
/// larger ones are sliced (zero-copy): they fill a good part of the buffer
/// anyway, so pinning it costs little.
const COPY_PUBLISH_BELOW: usize = 16 * 1024;

/// Decode one client→server packet from the front of `buf` if a whole frame
/// is buffered.
///
/// * `Ok(None)`: the frame is incomplete; `buf` is untouched (read more).
/// * `Ok(Some(packet))`: the frame's bytes were consumed from `buf`.
/// * `Err(_)`: the stream is unusable (malformed, protocol error, too large);
///   close the connection. Returned even when the offending frame is not yet
///   fully buffered, as soon as the problem is visible (e.g. size limit).
///
/// CONNECT is decoded according to its own protocol level; every other packet
/// according to `protocol`.
pub fn decode(
    buf: &mut BytesMut,
    protocol: Protocol,
    limits: &Limits,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = frame::check(buf, protocol, limits)? else {
        return Ok(None);
    };
    let mut frame = if header.byte1 >> 4 == PUBLISH && header.frame_len < COPY_PUBLISH_BELOW {
        // A small PUBLISH gets its own allocation: its topic and payload may
        // be kept for a long time (queued for a slow or offline client,
        // retained), and a slice would pin the whole read buffer it arrived
        // in (up to 64 KiB for one 100-byte message). It also leaves the read
        // buffer unshared, so the next read reuses it instead of allocating.
        let Some(bytes) = buf.get(..header.frame_len) else {
            return Err(DecodeError::MalformedPacket("truncated frame"));
        };
        let copy = Bytes::copy_from_slice(bytes);
        buf.advance(header.frame_len);
        copy
    } else {
        buf.split_to(header.frame_len).freeze()
    };
    if frame.remaining() < header.header_len {
        // Unreachable by construction of `check`; kept so this can never panic.
        return Err(DecodeError::MalformedPacket("truncated fixed header"));
    }
    frame.advance(header.header_len);
    let mut r = Reader::new(frame);
    let packet = parse(header.byte1, &mut r, protocol, limits)?;
    if !r.is_empty() {
        return Err(DecodeError::MalformedPacket("trailing bytes after packet"));
    }
    Ok(Some(packet))
}

/// Parses a packet body whose fixed header (`byte1`) was validated by
/// [`frame::check`].
fn parse(
    byte1: u8,
    r: &mut Reader,
    protocol: Protocol,
    limits: &Limits,
) -> Result<Packet, DecodeError> {
    let v5 = protocol == Protocol::V5;
    match byte1 >> 4 {
        1 => connect::parse(r, limits).map(|c| Packet::Connect(Box::new(c))),
        3 => publish(byte1, r, v5, limits).map(Packet::Publish),
        4 => pub_resp(r, v5, limits, PUBACK_REASONS).map(Packet::PubAck),
        5 => pub_resp(r, v5, limits, PUBACK_REASONS).map(Packet::PubRec),
        6 => pub_resp(r, v5, limits, PUBREL_REASONS).map(Packet::PubRel),
        7 => pub_resp(r, v5, limits, PUBREL_REASONS).map(Packet::PubComp),
        8 => subscribe(r, v5, limits).map(Packet::Subscribe),
        10 => unsubscribe(r, v5, limits).map(Packet::Unsubscribe),
        12 => Ok(Packet::PingReq),
        14 => disconnect(r, v5, limits).map(Packet::Disconnect),
        15 => auth(r, limits).map(Packet::Auth),
        // 0, 2, 9, 11, 13 are rejected by frame::check.
        _ => Err(DecodeError::MalformedPacket("invalid packet type")),
    }
}

/// PUBACK / PUBREC reason codes (MQTT 5 §3.4.2.1).
const PUBACK_REASONS: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
/// PUBREL / PUBCOMP reason codes (MQTT 5 §3.6.2.1).
const PUBREL_REASONS: &[u8] = &[0x00, 0x92];
/// DISCONNECT reason codes a client may send (MQTT 5 §3.14.2.1).
const DISCONNECT_REASONS: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
];
/// AUTH reason codes (MQTT 5 §3.15.2.1).
const AUTH_REASONS: &[u8] = &[0x00, 0x18, 0x19];

fn reason(r: &mut Reader, valid: &[u8]) -> Result<u8, DecodeError> {
    let code = r.u8()?;
    if valid.contains(&code) {
        Ok(code)
    } else {
        Err(DecodeError::MalformedPacket("invalid reason code"))
    }
}

/// Non-zero Packet Identifier ([MQTT-2.2.1-3]).
fn pkid(r: &mut Reader) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::ProtocolError("packet identifier 0")),
        id => Ok(id),
    }
}

fn publish(byte1: u8, r: &mut Reader, v5: bool, limits: &Limits) -> Result<Publish, DecodeError> {
    let qos = QoS::from_u8((byte1 >> 1) & 0b11)
        .ok_or(DecodeError::MalformedPacket("PUBLISH with QoS 3"))?;
    let topic = r.byte_string()?;
    // [MQTT-3.3.2-2]
    if topic.contains(['+', '#']) {
        return Err(DecodeError::TopicNameInvalid);
    }
    let pkid = if qos == QoS::AtMostOnce { 0 } else { pkid(r)? };
    let properties = if v5 {
        read_properties(r, Context::Publish, &mut 0, limits)?
    } else {
        Default::default()
    };
    // 3.1.1 [MQTT-4.7.3-1]; v5 allows it only with a Topic Alias (§3.3.2.3.4).
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(DecodeError::ProtocolError(
            "empty topic name without topic alias",
        ));
    }
    Ok(Publish {
        dup: byte1 & 0b1000 != 0,
        qos,
        retain: byte1 & 1 != 0,
        topic,
        pkid,
        properties,
        payload: r.rest(),
    })
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP. v5 short forms: remaining length 2 means
/// reason 0 and no properties; 3 means reason only (§3.4.2.1).
fn pub_resp(
    r: &mut Reader,
    v5: bool,
    limits: &Limits,
    reasons: &[u8],
) -> Result<PubResp, DecodeError> {
    let pkid = pkid(r)?;
    let mut resp = PubResp {
        pkid,
        ..Default::default()
    };
    if v5 && !r.is_empty() {
        resp.reason = reason(r, reasons)?;
        if !r.is_empty() {
            resp.properties = read_properties(r, Context::PubResp, &mut 0, limits)?;
        }
    }
    Ok(resp)
}

fn subscribe(r: &mut Reader, v5: bool, limits: &Limits) -> Result<Subscribe, DecodeError> {
    let pkid = pkid(r)?;
    let properties = if v5 {
        read_properties(r, Context::Subscribe, &mut 0, limits)?
    } else {
        Default::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        if filters.len() >= limits.max_filters {
            return Err(DecodeError::TooManyFilters);
        }
        let filter = r.string()?;
        let options = r
            .u8()
            .map_err(|_| DecodeError::MalformedPacket("subscription options missing"))?;
        filters.push(subscription(filter, options, v5)?);
    }
    // [MQTT-3.8.3-3]
    if filters.is_empty() {
        return Err(DecodeError::ProtocolError(
            "SUBSCRIBE without topic filters",
        ));
    }
    Ok(Subscribe {
        pkid,
        filters,
        properties,
    })
}

fn subscription(filter: String, options: u8, v5: bool) -> Result<SubscribeFilter, DecodeError> {
    // 3.1.1 [MQTT-3-8.3-4]: upper 6 bits reserved; v5 [MQTT-3.8.3-5]: bits 6–7.
    let reserved = if v5 { 0b1100_0000 } else { 0b1111_1100 };
    if options & reserved != 0 {
        return Err(DecodeError::MalformedPacket(
            "reserved subscription option bits set",
        ));
    }
    let qos = QoS::from_u8(options & 0b11)
        .ok_or(DecodeError::MalformedPacket("subscription with QoS 3"))?;
    let retain_handling = match (options >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(DecodeError::ProtocolError("retain handling 3")),
    };
    Ok(SubscribeFilter {
        filter,
        qos,
        no_local: options & 0b0100 != 0,
        retain_as_published: options & 0b1000 != 0,
        retain_handling,
    })
}

fn unsubscribe(r: &mut Reader, v5: bool, limits: &Limits) -> Result<Unsubscribe, DecodeError> {
    let pkid = pkid(r)?;
    let properties = if v5 {
        read_properties(r, Context::Unsubscribe, &mut 0, limits)?
    } else {
        Default::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        if filters.len() >= limits.max_filters {
            return Err(DecodeError::TooManyFilters);
        }
        filters.push(r.string()?);
    }
    // [MQTT-3.10.3-2]
    if filters.is_empty() {
        return Err(DecodeError::ProtocolError(
            "UNSUBSCRIBE without topic filters",
        ));
    }
    Ok(Unsubscribe {
        pkid,
        filters,
        properties,
    })
}

/// DISCONNECT: 3.1.1 has no body (trailing-bytes check rejects one); v5 may
/// omit the reason (length 0 → 0x00) or only the properties (length 1).
fn disconnect(r: &mut Reader, v5: bool, limits: &Limits) -> Result<Disconnect, DecodeError> {
    let mut d = Disconnect::default();
    if v5 && !r.is_empty() {
        d.reason = reason(r, DISCONNECT_REASONS)?;
        if !r.is_empty() {
            d.properties = read_properties(r, Context::Disconnect, &mut 0, limits)?;
        }
    }
    Ok(d)
}

/// AUTH (v5 only; 3.1.1 is rejected by frame::check). Length 0 means
/// reason 0x00 Success with no properties; a lone reason byte is accepted too,
/// mirroring DISCONNECT.
fn auth(r: &mut Reader, limits: &Limits) -> Result<Auth, DecodeError> {
    let mut a = Auth::default();
    if !r.is_empty() {
        a.reason = reason(r, AUTH_REASONS)?;
        if !r.is_empty() {
            a.properties = read_properties(r, Context::Auth, &mut 0, limits)?;
        }
    }
    Ok(a)
}
