//! Bounds-checked cursor over a frame's bytes.
//!
//! Every read checks `remaining()` first, so a truncated field is a
//! `MalformedPacket`, never a panic. Slices are taken with `split_to` on the
//! frame's `Bytes`, which is zero-copy.

use bytes::{Buf, Bytes};
use bytestring::ByteString;

use crate::DecodeError;

const TRUNCATED: DecodeError = DecodeError::MalformedPacket("field runs past end of packet");

/// Cursor over (part of) a frame.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.remaining()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.buf.remaining() < 1 {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.buf.remaining() < 2 {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.buf.remaining() < 4 {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u32())
    }

    /// Variable Byte Integer (at most 4 bytes, minimal encoding).
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value: u32 = 0;
        for i in 0..4 {
            let b = self.u8()?;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(DecodeError::MalformedPacket(
                        "non-minimal variable byte integer",
                    ));
                }
                return Ok(value);
            }
        }
        Err(DecodeError::MalformedPacket(
            "variable byte integer longer than 4 bytes",
        ))
    }

    /// The next `n` bytes (zero-copy).
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if self.buf.remaining() < n {
            return Err(TRUNCATED);
        }
        Ok(self.buf.split_to(n))
    }

    /// Everything left (zero-copy).
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Two-byte length prefixed Binary Data.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    /// UTF-8 Encoded String, zero-copy.
    pub(crate) fn byte_string(&mut self) -> Result<ByteString, DecodeError> {
        let raw = self.binary()?;
        validate_utf8(raw)
    }

    /// UTF-8 Encoded String, owned.
    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        Ok(String::from(&*self.byte_string()?))
    }
}

/// [MQTT-1.5.4-1]: well-formed UTF-8 (`str::from_utf8` rejects surrogates
/// and overlong forms); [MQTT-1.5.4-2]: no U+0000. A BOM is kept as is
/// ([MQTT-1.5.4-3]: it MUST NOT be skipped or stripped).
pub(crate) fn validate_utf8(raw: Bytes) -> Result<ByteString, DecodeError> {
    // In well-formed UTF-8 a 0x00 byte can only be U+0000 itself.
    if raw.contains(&0) {
        return Err(DecodeError::MalformedPacket("string contains U+0000"));
    }
    ByteString::try_from(raw).map_err(|_| DecodeError::MalformedPacket("string is not valid UTF-8"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn r(b: &'static [u8]) -> Reader {
        Reader::new(Bytes::from_static(b))
    }

    #[test]
    fn varint() {
        assert_eq!(r(&[0x00]).varint(), Ok(0));
        assert_eq!(r(&[0x7F]).varint(), Ok(127));
        assert_eq!(r(&[0x80, 0x01]).varint(), Ok(128));
        assert_eq!(r(&[0xFF, 0xFF, 0xFF, 0x7F]).varint(), Ok(268_435_455));
        assert!(r(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]).varint().is_err());
        assert!(r(&[0x80, 0x00]).varint().is_err());
        assert!(r(&[0x80]).varint().is_err());
    }

    #[test]
    fn truncated_fields() {
        assert!(r(&[0x00]).u16().is_err());
        assert!(r(&[0, 0, 0]).u32().is_err());
        assert!(r(&[0x00, 0x03, b'a']).binary().is_err());
        assert_eq!(r(&[0x00, 0x00]).string().unwrap(), "");
    }

    #[test]
    fn utf8_rules() {
        assert!(validate_utf8(Bytes::from_static(&[0xED, 0xA0, 0x80])).is_err());
        assert!(validate_utf8(Bytes::from_static(&[0xC0, 0xAF])).is_err());
        assert!(validate_utf8(Bytes::from_static(b"a\0")).is_err());
        assert_eq!(
            &*validate_utf8(Bytes::from_static("\u{FEFF}x".as_bytes())).unwrap(),
            "\u{FEFF}x"
        );
    }
}
