//! Packet encoding for both protocol revisions.
//!
//! Each packet body is written by one generic function over a [`Sink`]: run
//! once with a byte [`Counter`] to learn the exact size (and validate field
//! lengths), then once into the output buffer. Sharing the code guarantees
//! the Remaining Length always matches what is written, and the size is known
//! before a single byte is appended, so a packet that is too large for the
//! peer never touches `out`.

mod properties;

use bytes::{BufMut, BytesMut};

use self::properties::{properties_len, put_properties};
use crate::frame::VARINT_MAX;
use crate::{
    Auth, ConnAck, Connect, Disconnect, EncodeError, Packet, Protocol, PubResp, Publish, QoS,
    SubAck, Subscribe, UnsubAck, Unsubscribe,
};

/// Encode a packet for `protocol` into `out` (appends).
///
/// `max_size` is the peer's Maximum Packet Size (total bytes, fixed header
/// included). If the packet exceeds it, non-PUBLISH packets are retried once
/// without Reason String and User Properties, which MQTT 5 §3.1.2.11.4 lets
/// the server omit; if that is still too large, or the packet is a PUBLISH,
/// [`EncodeError::PacketTooLarge`] is returned. On any error `out` is left
/// exactly as it was.
///
/// Protocol-specific mappings:
/// * CONNECT is encoded for its own [`Connect::protocol`], like the decoder.
/// * 3.1.1 omits all properties and v5-only reason codes; CONNACK and SUBACK
///   reasons are mapped (see [`connack_return_code`] and [`suback_return_code`]).
/// * AUTH exists only in v5 and is always encoded in its v5 form.
/// * DUP is cleared on QoS 0 PUBLISH ([MQTT-3.3.1-2]); Session Present is
///   cleared on a failing CONNACK ([MQTT-3.2.2-4], [MQTT-3.2.2-6]).
pub fn encode(
    packet: &Packet,
    protocol: Protocol,
    max_size: Option<u32>,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let mut opts = Opts {
        v5: protocol == Protocol::V5,
        lean: false,
    };
    let mut remaining = body_len(packet, opts)?;
    let mut total = frame_len(remaining)?;
    if let Some(max) = max_size
        && total > max as usize
    {
        if !matches!(packet, Packet::Publish(_)) {
            opts.lean = true;
            remaining = body_len(packet, opts)?;
            total = frame_len(remaining)?;
        }
        if total > max as usize {
            return Err(EncodeError::PacketTooLarge { size: total, max });
        }
    }
    let start = out.len();
    out.reserve(total);
    Sink::put_u8(out, first_byte(packet));
    let result = put_varint(out, remaining).and_then(|()| body(packet, opts, out));
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Protocol revision and whether optional diagnostic properties are dropped.
#[derive(Debug, Clone, Copy)]
struct Opts {
    v5: bool,
    /// Omit Reason String and User Properties to fit the peer's size limit.
    lean: bool,
}

/// Byte-level output used by the encoder; see the module docs.
pub(crate) trait Sink {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_slice(&mut self, s: &[u8]);
}

/// A [`Sink`] that only counts bytes.
#[derive(Debug, Default)]
pub(crate) struct Counter(pub usize);

impl Sink for Counter {
    fn put_u8(&mut self, _: u8) {
        self.0 += 1;
    }
    fn put_u16(&mut self, _: u16) {
        self.0 += 2;
    }
    fn put_u32(&mut self, _: u32) {
        self.0 += 4;
    }
    fn put_slice(&mut self, s: &[u8]) {
        self.0 += s.len();
    }
}

impl Sink for BytesMut {
    fn put_u8(&mut self, v: u8) {
        BufMut::put_u8(self, v);
    }
    fn put_u16(&mut self, v: u16) {
        BufMut::put_u16(self, v);
    }
    fn put_u32(&mut self, v: u32) {
        BufMut::put_u32(self, v);
    }
    fn put_slice(&mut self, s: &[u8]) {
        self.extend_from_slice(s);
    }
}

/// Two-byte length prefixed Binary Data / UTF-8 string; never truncates the
/// prefix.
pub(crate) fn put_bin<W: Sink>(w: &mut W, b: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(b.len()).map_err(|_| EncodeError::StringTooLong)?;
    w.put_u16(len);
    w.put_slice(b);
    Ok(())
}

pub(crate) fn put_str<W: Sink>(w: &mut W, s: &str) -> Result<(), EncodeError> {
    put_bin(w, s.as_bytes())
}

/// Variable Byte Integer in its minimal form. Values above 268,435,455 cannot
/// be represented and are reported as `PacketTooLarge` with that maximum.
pub(crate) fn put_varint<W: Sink>(w: &mut W, v: usize) -> Result<(), EncodeError> {
    if v > VARINT_MAX as usize {
        return Err(EncodeError::PacketTooLarge {
            size: v,
            max: VARINT_MAX,
        });
    }
    let mut v = v;
    loop {
        // Truncation intended: the low 7 bits.
        let mut byte = (v & 0x7f) as u8;
        v >>= 7;
        if v > 0 {
            byte |= 0x80;
        }
        w.put_u8(byte);
        if v == 0 {
            return Ok(());
        }
    }
}

/// Total frame size for a body of `remaining` bytes.
fn frame_len(remaining: usize) -> Result<usize, EncodeError> {
    let mut c = Counter(1);
    put_varint(&mut c, remaining)?;
    Ok(c.0 + remaining)
}

fn body_len(packet: &Packet, opts: Opts) -> Result<usize, EncodeError> {
    let mut c = Counter::default();
    body(packet, opts, &mut c)?;
    Ok(c.0)
}

fn first_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => {
            let dup = p.dup && p.qos != QoS::AtMostOnce;
            0x30 | (u8::from(dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
        }
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) => 0xF0,
    }
}

/// Variable header and payload.
fn body<W: Sink>(packet: &Packet, o: Opts, w: &mut W) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect(c) => connect(c, o.lean, w),
        Packet::ConnAck(c) => connack(c, o, w),
        Packet::Publish(p) => publish(p, o, w),
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
            pub_resp(p, o, w)
        }
        Packet::Subscribe(s) => subscribe(s, o, w),
        Packet::SubAck(s) => suback(s, o, w),
        Packet::Unsubscribe(u) => unsubscribe(u, o, w),
        Packet::UnsubAck(u) => unsuback(u, o, w),
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(Disconnect { reason, properties })
        | Packet::Auth(Auth { reason, properties }) => {
            let v5 = o.v5 || matches!(packet, Packet::Auth(_));
            if v5 {
                reason_and_properties(*reason, properties, o.lean, w)?;
            }
            Ok(())
        }
    }
}

/// v5 tail shared by PUBACK-family, DISCONNECT and AUTH: omit the reason when
/// it is 0x00 and there are no properties, omit the property length when
/// there are no properties.
fn reason_and_properties<W: Sink>(
    reason: u8,
    props: &crate::Properties,
    lean: bool,
    w: &mut W,
) -> Result<(), EncodeError> {
    let no_props = properties_len(props, lean)? == 0;
    if reason == 0 && no_props {
        return Ok(());
    }
    w.put_u8(reason);
    if !no_props {
        put_properties(w, props, lean)?;
    }
    Ok(())
}

fn connect<W: Sink>(c: &Connect, lean: bool, w: &mut W) -> Result<(), EncodeError> {
    let v5 = c.protocol == Protocol::V5;
    put_str(w, "MQTT")?;
    w.put_u8(if v5 { 5 } else { 4 });
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(will) = &c.will {
        flags |= 0b100 | ((will.qos as u8) << 3) | (u8::from(will.retain) << 5);
    }
    flags |= u8::from(c.password.is_some()) << 6;
    flags |= u8::from(c.username.is_some()) << 7;
    w.put_u8(flags);
    w.put_u16(c.keep_alive);
    if v5 {
        put_properties(w, &c.properties, lean)?;
    }
    put_str(w, &c.client_id)?;
    if let Some(will) = &c.will {
        if v5 {
            put_properties(w, &will.properties, lean)?;
        }
        put_str(w, &will.topic)?;
        put_bin(w, &will.payload)?;
    }
    if let Some(u) = &c.username {
        put_str(w, u)?;
    }
    if let Some(p) = &c.password {
        put_bin(w, p)?;
    }
    Ok(())
}

/// 3.1.1 CONNACK return code for a v5 reason code:
///
/// | v5 reason                                        | 3.1.1 return code |
/// |--------------------------------------------------|-------------------|
/// | 0x00 Success                                     | 0 accepted        |
/// | 0x84 Unsupported protocol version                | 1                 |
/// | 0x85 Client identifier not valid                 | 2                 |
/// | 0x86 Bad user name or password                   | 4                 |
/// | 0x87 Not authorized, 0x8A Banned, 0x8C Bad auth method | 5           |
/// | anything else (0x88 unavailable, 0x89 busy, …)   | 3 server unavailable |
pub fn connack_return_code(reason: u8) -> u8 {
    match reason {
        0x00 => 0,
        0x84 => 1,
        0x85 => 2,
        0x86 => 4,
        0x87 | 0x8A | 0x8C => 5,
        _ => 3,
    }
}

/// 3.1.1 SUBACK return code for a v5 reason code: granted QoS 0–2 is kept,
/// every other value becomes 0x80 Failure.
pub fn suback_return_code(reason: u8) -> u8 {
    match reason {
        0..=2 => reason,
        _ => 0x80,
    }
}

fn connack<W: Sink>(c: &ConnAck, o: Opts, w: &mut W) -> Result<(), EncodeError> {
    let code = if o.v5 {
        c.reason
    } else {
        connack_return_code(c.reason)
    };
    w.put_u8(u8::from(c.session_present && code == 0));
    w.put_u8(code);
    if o.v5 {
        put_properties(w, &c.properties, o.lean)?;
    }
    Ok(())
}

fn publish<W: Sink>(p: &Publish, o: Opts, w: &mut W) -> Result<(), EncodeError> {
    put_str(w, &p.topic)?;
    if p.qos != QoS::AtMostOnce {
        w.put_u16(p.pkid);
    }
    if o.v5 {
        put_properties(w, &p.properties, o.lean)?;
    }
    w.put_slice(&p.payload);
    Ok(())
}

fn pub_resp<W: Sink>(p: &PubResp, o: Opts, w: &mut W) -> Result<(), EncodeError> {
    w.put_u16(p.pkid);
    if o.v5 {
        reason_and_properties(p.reason, &p.properties, o.lean, w)?;
    }
    Ok(())
}

fn subscribe<W: Sink>(s: &Subscribe, o: Opts, w: &mut W) -> Result<(), EncodeError> {
    w.put_u16(s.pkid);
    if o.v5 {
        put_properties(w, &s.properties, o.lean)?;
    }
    for f in &s.filters {
        put_str(w, &f.filter)?;
        let mut options = f.qos as u8;
        if o.v5 {
            options |= u8::from(f.no_local) << 2
                | u8::from(f.retain_as_published) << 3
                | (f.retain_handling as u8) << 4;
        }
        w.put_u8(options);
    }
    Ok(())
}

fn suback<W: Sink>(s: &SubAck, o: Opts, w: &mut W) -> Result<(), EncodeError> {
    w.put_u16(s.pkid);
    if o.v5 {
        put_properties(w, &s.properties, o.lean)?;
        w.put_slice(&s.reasons);
    } else {
        for &r in &s.reasons {
            w.put_u8(suback_return_code(r));
        }
    }
    Ok(())
}

fn unsubscribe<W: Sink>(u: &Unsubscribe, o: Opts, w: &mut W) -> Result<(), EncodeError> {
    w.put_u16(u.pkid);
    if o.v5 {
        put_properties(w, &u.properties, o.lean)?;
    }
    for f in &u.filters {
        put_str(w, f)?;
    }
    Ok(())
}

/// 3.1.1 UNSUBACK carries only the packet identifier.
fn unsuback<W: Sink>(u: &UnsubAck, o: Opts, w: &mut W) -> Result<(), EncodeError> {
    w.put_u16(u.pkid);
    if o.v5 {
        put_properties(w, &u.properties, o.lean)?;
        w.put_slice(&u.reasons);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn varint_minimal_encoding() {
        for (v, want) in [
            (0usize, &[0x00][..]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let mut b = BytesMut::new();
            put_varint(&mut b, v).unwrap();
            assert_eq!(&b[..], want);
        }
        assert!(put_varint(&mut BytesMut::new(), 268_435_456).is_err());
    }

    #[test]
    fn frame_len_counts_header() {
        assert_eq!(frame_len(0), Ok(2));
        assert_eq!(frame_len(127), Ok(129));
        assert_eq!(frame_len(128), Ok(131));
    }
}
