//! Fixed-header framing: decides whether a whole frame is buffered.
//!
//! This runs on every read, so it only looks at the first ≤ 5 bytes and never
//! allocates. It distinguishes three outcomes the caller must not confuse:
//! `Ok(None)` (incomplete — read more), `Ok(Some)` (a whole frame of known
//! size is buffered) and `Err` (the stream is unusable — close it).

use crate::{DecodeError, Limits, Protocol};

/// Largest value a Variable Byte Integer can carry (MQTT 5 §1.5.5).
pub(crate) const VARINT_MAX: u32 = 268_435_455;

/// Location of one complete frame at the front of the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    /// First byte: packet type (high nibble) and flags (low nibble).
    pub byte1: u8,
    /// Fixed header length: 1 + length of the Remaining Length varint.
    pub header_len: usize,
    /// Total frame length (fixed header + remaining length).
    pub frame_len: usize,
}

/// Inspects the front of `buf`.
///
/// The first byte is validated as soon as it arrives, and the size limit is
/// enforced as soon as the Remaining Length is known, so a client cannot make
/// us buffer a huge body only to reject it afterwards.
pub(crate) fn check(
    buf: &[u8],
    protocol: Protocol,
    limits: &Limits,
) -> Result<Option<FrameHeader>, DecodeError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    check_first_byte(byte1, protocol)?;

    let mut remaining: usize = 0;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 != 0 {
            continue;
        }
        // [MQTT-1.5.5-1]: the minimum number of bytes MUST be used; a
        // trailing zero group (e.g. `80 00`) is a non-minimal encoding.
        if i > 0 && b == 0 {
            return Err(DecodeError::MalformedPacket(
                "non-minimal remaining length encoding",
            ));
        }
        let header_len = 2 + i;
        let frame_len = header_len + remaining;
        if frame_len > limits.max_packet_size as usize {
            return Err(DecodeError::PacketTooLarge {
                size: frame_len,
                max: limits.max_packet_size,
            });
        }
        if buf.len() < frame_len {
            return Ok(None);
        }
        return Ok(Some(FrameHeader {
            byte1,
            header_len,
            frame_len,
        }));
    }
    // The 4th byte still had its continuation bit set.
    Err(DecodeError::MalformedPacket(
        "remaining length longer than 4 bytes",
    ))
}

/// Validates packet type and fixed-header flags ([MQTT-2.1.3-1]) for a
/// packet travelling client → server.
fn check_first_byte(byte1: u8, protocol: Protocol) -> Result<(), DecodeError> {
    let flags = byte1 & 0x0f;
    let expected = match byte1 >> 4 {
        0 => return Err(DecodeError::MalformedPacket("reserved packet type 0")),
        3 => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(DecodeError::MalformedPacket("PUBLISH with QoS 3"));
            }
            // [MQTT-3.3.1-2]
            if qos == 0 && flags & 0b1000 != 0 {
                return Err(DecodeError::MalformedPacket("PUBLISH QoS 0 with DUP set"));
            }
            return Ok(());
        }
        2 | 9 | 11 | 13 => {
            return Err(DecodeError::ProtocolError(
                "server-to-client packet type sent by client",
            ));
        }
        15 if protocol == Protocol::V311 => {
            return Err(DecodeError::MalformedPacket("AUTH is not a 3.1.1 packet"));
        }
        6 | 8 | 10 => 0b0010,
        _ => 0,
    };
    if flags != expected {
        return Err(DecodeError::MalformedPacket("invalid fixed header flags"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check5(buf: &[u8]) -> Result<Option<FrameHeader>, DecodeError> {
        check(buf, Protocol::V5, &Limits::default())
    }

    #[test]
    fn header_lengths() {
        let h = check5(&[0xC0, 0x00]).unwrap().unwrap();
        assert_eq!((h.header_len, h.frame_len), (2, 2));
        let mut big = vec![0x30, 0x80, 0x01];
        big.resize(3 + 128, 0);
        let h = check5(&big).unwrap().unwrap();
        assert_eq!((h.header_len, h.frame_len), (3, 131));
        // Incomplete body.
        assert_eq!(check5(&big[..100]), Ok(None));
    }

    #[test]
    fn four_byte_length_with_continuation_is_malformed() {
        assert!(matches!(
            check5(&[0x30, 0x80, 0x80, 0x80, 0x80]),
            Err(DecodeError::MalformedPacket(_))
        ));
    }

    #[test]
    fn first_byte_rejected_before_length() {
        assert!(matches!(
            check5(&[0x00]),
            Err(DecodeError::MalformedPacket(_))
        ));
        assert!(matches!(
            check5(&[0x20]),
            Err(DecodeError::ProtocolError(_))
        ));
        assert!(matches!(
            check(&[0xF0], Protocol::V311, &Limits::default()),
            Err(DecodeError::MalformedPacket(_))
        ));
        assert_eq!(check5(&[0xF0]), Ok(None));
    }
}
