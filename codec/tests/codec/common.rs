//! Helpers shared by the integration tests.

use bytes::{BufMut, BytesMut};
use starling_codec::{DecodeError, Limits, Packet, Protocol, decode};

/// A frame with a correct remaining length around `body`.
pub fn frame(byte1: u8, body: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u8(byte1);
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        b.put_u8(byte);
        if len == 0 {
            break;
        }
    }
    b.extend_from_slice(body);
    b
}

/// Length-prefixed string bytes.
pub fn s(v: &[u8]) -> Vec<u8> {
    let mut out = (v.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(v);
    out
}

/// Concatenate byte pieces.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

pub fn dec(bytes: &[u8], p: Protocol) -> Result<Option<Packet>, DecodeError> {
    let mut b = BytesMut::from(bytes);
    decode(&mut b, p, &Limits::default())
}

/// Decode a complete frame, asserting it decodes to exactly one packet.
pub fn ok(bytes: &[u8], p: Protocol) -> Packet {
    let mut b = BytesMut::from(bytes);
    let pkt = decode(&mut b, p, &Limits::default())
        .expect("decode error")
        .expect("incomplete");
    assert!(b.is_empty(), "frame not fully consumed");
    pkt
}

pub fn err(bytes: &[u8], p: Protocol) -> DecodeError {
    match dec(bytes, p) {
        Err(e) => e,
        other => panic!("expected error, got {other:?}"),
    }
}

pub fn malformed(bytes: &[u8], p: Protocol) {
    let e = err(bytes, p);
    assert!(matches!(e, DecodeError::MalformedPacket(_)), "{e:?}");
}

pub fn protocol_error(bytes: &[u8], p: Protocol) {
    let e = err(bytes, p);
    assert!(matches!(e, DecodeError::ProtocolError(_)), "{e:?}");
}

/// Minimal v5 CONNECT body with given flags, properties block and payload tail.
pub fn connect_v5(flags: u8, props: &[u8], payload: &[u8]) -> BytesMut {
    let mut body = s(b"MQTT");
    body.push(5);
    body.push(flags);
    body.extend_from_slice(&[0, 60]);
    body.push(props.len() as u8);
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    frame(0x10, &body)
}

pub fn connect_v4(flags: u8, payload: &[u8]) -> BytesMut {
    let mut body = s(b"MQTT");
    body.push(4);
    body.push(flags);
    body.extend_from_slice(&[0, 60]);
    body.extend_from_slice(payload);
    frame(0x10, &body)
}
