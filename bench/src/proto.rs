//! Client-side MQTT 3.1.1 / 5.0 wire format: just what a load generator needs.
//!
//! `starling-codec` is a server-side codec (it decodes CONNECT, not CONNACK),
//! so the bench encodes and decodes the client half itself. Everything works
//! on plain byte buffers so a connection can encode a whole batch of packets
//! into one write and parse a whole read in one pass.

use anyhow::{Result, bail};
use bytes::{Buf, BufMut, BytesMut};

/// MQTT protocol level: 4 = 3.1.1, 5 = 5.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1
    V4,
    /// MQTT 5.0
    V5,
}

/// What a CONNECT carries.
#[derive(Clone, Debug)]
pub struct ConnectOpts {
    /// Protocol level.
    pub version: Version,
    /// Client identifier.
    pub client_id: String,
    /// Clean session (3.1.1) / clean start (5.0).
    pub clean: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// Session expiry interval (5.0 only; 3.1.1 sessions live until clean).
    pub session_expiry: u32,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
}

fn put_varint(buf: &mut BytesMut, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        buf.put_u8(b);
        if n == 0 {
            break;
        }
    }
}

fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

fn put_str(buf: &mut BytesMut, s: &[u8]) {
    buf.put_u16(s.len() as u16);
    buf.put_slice(s);
}

/// Appends a CONNECT packet.
pub fn connect(buf: &mut BytesMut, o: &ConnectOpts) {
    let v5 = o.version == Version::V5;
    let mut props = BytesMut::new();
    if v5 {
        if o.session_expiry > 0 {
            props.put_u8(0x11);
            props.put_u32(o.session_expiry);
        }
        props.put_u8(0x21); // receive maximum: the broker may keep this many QoS>0 in flight
        props.put_u16(u16::MAX);
    }
    let mut body = BytesMut::new();
    put_str(&mut body, b"MQTT");
    body.put_u8(if v5 { 5 } else { 4 });
    let mut flags = 0u8;
    if o.clean {
        flags |= 0x02;
    }
    if o.username.is_some() {
        flags |= 0x80;
    }
    if o.password.is_some() {
        flags |= 0x40;
    }
    body.put_u8(flags);
    body.put_u16(o.keep_alive);
    if v5 {
        put_varint(&mut body, props.len());
        body.put_slice(&props);
    }
    put_str(&mut body, o.client_id.as_bytes());
    if let Some(u) = &o.username {
        put_str(&mut body, u.as_bytes());
    }
    if let Some(p) = &o.password {
        put_str(&mut body, p.as_bytes());
    }
    buf.put_u8(0x10);
    put_varint(buf, body.len());
    buf.put_slice(&body);
}

/// Appends a SUBSCRIBE for one filter.
pub fn subscribe(buf: &mut BytesMut, v: Version, pid: u16, filter: &str, qos: u8) {
    let v5 = v == Version::V5;
    let len = 2 + usize::from(v5) + 2 + filter.len() + 1;
    buf.put_u8(0x82);
    put_varint(buf, len);
    buf.put_u16(pid);
    if v5 {
        buf.put_u8(0);
    }
    put_str(buf, filter.as_bytes());
    buf.put_u8(qos);
}

/// Appends a PUBLISH whose payload is `header` followed by zero padding up to `size`.
pub fn publish(
    buf: &mut BytesMut,
    v: Version,
    topic: &[u8],
    qos: u8,
    pid: u16,
    header: &[u8],
    size: usize,
) {
    let v5 = v == Version::V5;
    let size = size.max(header.len());
    let len = 2 + topic.len() + if qos > 0 { 2 } else { 0 } + usize::from(v5) + size;
    buf.reserve(1 + varint_len(len) + len);
    buf.put_u8(0x30 | (qos << 1));
    put_varint(buf, len);
    put_str(buf, topic);
    if qos > 0 {
        buf.put_u16(pid);
    }
    if v5 {
        buf.put_u8(0);
    }
    buf.put_slice(header);
    buf.put_bytes(0, size - header.len());
}

/// Appends a PUBACK.
pub fn puback(buf: &mut BytesMut, pid: u16) {
    buf.put_u8(0x40);
    buf.put_u8(2);
    buf.put_u16(pid);
}

/// Appends a DISCONNECT (normal disconnection).
pub fn disconnect(buf: &mut BytesMut) {
    buf.put_u8(0xE0);
    buf.put_u8(0);
}

/// A packet the broker sent us; PUBLISH payload is given by offsets into the frame.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// CONNACK: session present, reason/return code, receive maximum (5.0).
    ConnAck {
        /// Session present flag.
        session_present: bool,
        /// Return code (3.1.1) or reason code (5.0); 0 = accepted.
        code: u8,
        /// The broker's receive maximum (5.0), if advertised.
        receive_max: Option<u16>,
    },
    /// SUBACK with its granted QoS / reason codes.
    SubAck(&'a [u8]),
    /// PUBLISH: QoS, DUP flag, packet id, payload.
    Publish {
        /// QoS.
        qos: u8,
        /// DUP flag.
        dup: bool,
        /// Packet identifier (0 for QoS 0).
        pid: u16,
        /// Application payload.
        payload: &'a [u8],
    },
    /// PUBACK.
    PubAck,
    /// DISCONNECT from the broker (5.0) with reason code.
    Disconnect(u8),
    /// Anything else (PINGRESP, PUBREC, ...).
    Other,
}

/// Reads a variable byte integer; `None` when more bytes are needed.
fn read_varint(b: &[u8]) -> Result<Option<(usize, usize)>> {
    let mut n = 0usize;
    for i in 0..4 {
        let Some(&byte) = b.get(i) else {
            return Ok(None);
        };
        n |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((n, i + 1)));
        }
    }
    bail!("malformed remaining length")
}

/// Splits one whole frame off the front of `buf`; `None` when incomplete.
pub fn next_frame(buf: &[u8]) -> Result<Option<(u8, &[u8], usize)>> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let Some((len, n)) = read_varint(buf.get(1..).unwrap_or_default())? else {
        return Ok(None);
    };
    let start = 1 + n;
    match buf.get(start..start + len) {
        Some(body) => Ok(Some((first, body, start + len))),
        None => Ok(None),
    }
}

fn skip_props(mut p: &[u8]) -> Result<Option<u16>> {
    let mut receive_max = None;
    while p.has_remaining() {
        let id = p.get_u8();
        let skip = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
            0x21 if p.len() >= 2 => {
                receive_max = Some(u16::from_be_bytes([p[0], p[1]]));
                2
            }
            0x13 | 0x21 | 0x22 | 0x23 => 2,
            0x02 | 0x11 | 0x18 | 0x27 => 4,
            0x0B => match read_varint(p)? {
                Some((_, n)) => n,
                None => bail!("bad property"),
            },
            0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F if p.len() >= 2 => {
                2 + usize::from(u16::from_be_bytes([p[0], p[1]]))
            }
            0x26 if p.len() >= 2 => {
                let k = 2 + usize::from(u16::from_be_bytes([p[0], p[1]]));
                let Some(rest) = p.get(k..) else {
                    bail!("bad property")
                };
                let Some(v) = rest.get(..2) else {
                    bail!("bad property")
                };
                k + 2 + usize::from(u16::from_be_bytes([v[0], v[1]]))
            }
            _ => bail!("unknown property {id:#x}"),
        };
        if p.len() < skip {
            bail!("truncated property");
        }
        p.advance(skip);
    }
    Ok(receive_max)
}

/// Length of a 5.0 property block at the start of `b` (its varint plus contents).
fn props_len(b: &[u8]) -> Result<(usize, usize)> {
    match read_varint(b)? {
        Some((len, n)) => Ok((n, len)),
        None => bail!("truncated properties"),
    }
}

/// Decodes one frame produced by [`next_frame`].
pub fn decode(v: Version, first: u8, body: &[u8]) -> Result<Incoming<'_>> {
    let v5 = v == Version::V5;
    let short = || anyhow::anyhow!("short packet {first:#x}");
    Ok(match first >> 4 {
        2 => {
            let (&flags, rest) = body.split_first().ok_or_else(short)?;
            let (&code, rest) = rest.split_first().ok_or_else(short)?;
            let receive_max = if v5 && !rest.is_empty() {
                let (n, len) = props_len(rest)?;
                skip_props(rest.get(n..n + len).ok_or_else(short)?)?
            } else {
                None
            };
            Incoming::ConnAck {
                session_present: flags & 1 == 1,
                code,
                receive_max,
            }
        }
        9 => {
            let mut rest = body.get(2..).ok_or_else(short)?;
            if v5 {
                let (n, len) = props_len(rest)?;
                rest = rest.get(n + len..).ok_or_else(short)?;
            }
            Incoming::SubAck(rest)
        }
        3 => {
            let qos = (first >> 1) & 3;
            let tlen = usize::from(u16::from_be_bytes([
                *body.first().ok_or_else(short)?,
                *body.get(1).ok_or_else(short)?,
            ]));
            let mut at = 2 + tlen;
            let mut pid = 0;
            if qos > 0 {
                let p = body.get(at..at + 2).ok_or_else(short)?;
                pid = u16::from_be_bytes([p[0], p[1]]);
                at += 2;
            }
            if v5 {
                let (n, len) = props_len(body.get(at..).ok_or_else(short)?)?;
                at += n + len;
            }
            Incoming::Publish {
                qos,
                dup: first & 0x08 != 0,
                pid,
                payload: body.get(at..).ok_or_else(short)?,
            }
        }
        4 => {
            body.get(..2).ok_or_else(short)?;
            Incoming::PubAck
        }
        14 => Incoming::Disconnect(body.first().copied().unwrap_or(0)),
        _ => Incoming::Other,
    })
}

/// Bytes at the start of every bench payload: publisher id, sequence, send time.
pub const HEADER_LEN: usize = 20;

/// Encodes the payload header.
pub fn header(publisher: u32, seq: u64, sent_ns: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&publisher.to_le_bytes());
    h[4..12].copy_from_slice(&seq.to_le_bytes());
    h[12..].copy_from_slice(&sent_ns.to_le_bytes());
    h
}

/// Decodes the payload header: (publisher id, sequence, send time in ns).
pub fn parse_header(p: &[u8]) -> Option<(u32, u64, u64)> {
    let h: &[u8; HEADER_LEN] = p.get(..HEADER_LEN)?.try_into().ok()?;
    let id = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let seq = u64::from_le_bytes([h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11]]);
    let t = u64::from_le_bytes([h[12], h[13], h[14], h[15], h[16], h[17], h[18], h[19]]);
    Some((id, seq, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_roundtrip_v4_and_v5() {
        for v in [Version::V4, Version::V5] {
            let mut b = BytesMut::new();
            publish(&mut b, v, b"a/b", 1, 7, &header(3, 9, 11), 64);
            let (first, body, used) = next_frame(&b).unwrap().unwrap();
            assert_eq!(used, b.len());
            match decode(v, first, body).unwrap() {
                Incoming::Publish {
                    qos, pid, payload, ..
                } => {
                    assert_eq!((qos, pid, payload.len()), (1, 7, 64));
                    assert_eq!(parse_header(payload), Some((3, 9, 11)));
                }
                p => panic!("{p:?}"),
            }
        }
    }

    #[test]
    fn partial_frames_wait() {
        let mut b = BytesMut::new();
        publish(&mut b, Version::V4, b"t", 0, 0, &header(1, 2, 3), 300);
        for cut in 0..b.len() {
            assert!(next_frame(&b[..cut]).unwrap().is_none());
        }
    }

    #[test]
    fn connack_v5_receive_max() {
        let b = [0x20, 6, 0, 0, 3, 0x21, 0x00, 0x40];
        let (first, body, _) = next_frame(&b).unwrap().unwrap();
        match decode(Version::V5, first, body).unwrap() {
            Incoming::ConnAck { receive_max, .. } => assert_eq!(receive_max, Some(64)),
            p => panic!("{p:?}"),
        }
    }
}
