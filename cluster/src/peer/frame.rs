//! Peer-link frames. Each frame is one length-delimited record (the codec bounds its size);
//! inside it, a tag byte and fixed-size fields, then an opaque body that is not copied.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::LinkError;

/// Version of this frame layout and handshake; both sides must agree.
pub(crate) const PROTOCOL_VERSION: u8 = 1;
/// Size of handshake nonces and HMAC-SHA256 proofs.
pub(crate) const NONCE_LEN: usize = 32;

const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const CLIENT_PROOF: u8 = 3;
const REQUEST: u8 = 4;
const RESPONSE: u8 = 5;
const MESSAGE: u8 = 6;

/// One frame on a peer link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// Dialer → listener: who I am, and a fresh nonce the listener must sign.
    ClientHello {
        version: u8,
        node_id: u64,
        nonce: [u8; NONCE_LEN],
    },
    /// Listener → dialer: who I am, my nonce, and my proof over both nonces.
    ServerHello {
        version: u8,
        node_id: u64,
        nonce: [u8; NONCE_LEN],
        proof: [u8; NONCE_LEN],
    },
    /// Dialer → listener: the dialer's proof over both nonces.
    ClientProof { proof: [u8; NONCE_LEN] },
    /// A request (dialer → listener) carrying an id the response echoes.
    Request { id: u64, body: Bytes },
    /// The response to request `id` (listener → dialer).
    Response { id: u64, body: Bytes },
    /// A one-way application message (dialer → listener).
    Message(Bytes),
}

impl Frame {
    /// Encodes the frame body (the codec adds the length prefix).
    pub(crate) fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            Frame::ClientHello {
                version,
                node_id,
                nonce,
            } => {
                b.put_u8(CLIENT_HELLO);
                b.put_u8(*version);
                b.put_u64(*node_id);
                b.put_slice(nonce);
            }
            Frame::ServerHello {
                version,
                node_id,
                nonce,
                proof,
            } => {
                b.put_u8(SERVER_HELLO);
                b.put_u8(*version);
                b.put_u64(*node_id);
                b.put_slice(nonce);
                b.put_slice(proof);
            }
            Frame::ClientProof { proof } => {
                b.put_u8(CLIENT_PROOF);
                b.put_slice(proof);
            }
            Frame::Request { id, body } | Frame::Response { id, body } => {
                b.reserve(9 + body.len());
                b.put_u8(if matches!(self, Frame::Request { .. }) {
                    REQUEST
                } else {
                    RESPONSE
                });
                b.put_u64(*id);
                b.put_slice(body);
            }
            Frame::Message(body) => {
                b.reserve(1 + body.len());
                b.put_u8(MESSAGE);
                b.put_slice(body);
            }
        }
        b.freeze()
    }

    /// Decodes one frame; never panics on any input.
    pub(crate) fn decode(mut b: Bytes) -> Result<Frame, LinkError> {
        let tag = take_u8(&mut b)?;
        let frame = match tag {
            CLIENT_HELLO => Frame::ClientHello {
                version: take_u8(&mut b)?,
                node_id: take_u64(&mut b)?,
                nonce: take_array(&mut b)?,
            },
            SERVER_HELLO => Frame::ServerHello {
                version: take_u8(&mut b)?,
                node_id: take_u64(&mut b)?,
                nonce: take_array(&mut b)?,
                proof: take_array(&mut b)?,
            },
            CLIENT_PROOF => Frame::ClientProof {
                proof: take_array(&mut b)?,
            },
            REQUEST => {
                return Ok(Frame::Request {
                    id: take_u64(&mut b)?,
                    body: b,
                });
            }
            RESPONSE => {
                return Ok(Frame::Response {
                    id: take_u64(&mut b)?,
                    body: b,
                });
            }
            MESSAGE => return Ok(Frame::Message(b)),
            other => return Err(LinkError::Protocol(format!("unknown frame tag {other}"))),
        };
        if b.has_remaining() {
            return Err(LinkError::Protocol(
                "trailing bytes in handshake frame".into(),
            ));
        }
        Ok(frame)
    }
}

fn short() -> LinkError {
    LinkError::Protocol("truncated frame".into())
}

fn take_u8(b: &mut Bytes) -> Result<u8, LinkError> {
    if b.remaining() < 1 {
        return Err(short());
    }
    Ok(b.get_u8())
}

fn take_u64(b: &mut Bytes) -> Result<u64, LinkError> {
    if b.remaining() < 8 {
        return Err(short());
    }
    Ok(b.get_u64())
}

fn take_array(b: &mut Bytes) -> Result<[u8; NONCE_LEN], LinkError> {
    if b.remaining() < NONCE_LEN {
        return Err(short());
    }
    let mut out = [0u8; NONCE_LEN];
    b.copy_to_slice(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let frames = [
            Frame::ClientHello {
                version: 1,
                node_id: 7,
                nonce: [3; NONCE_LEN],
            },
            Frame::ServerHello {
                version: 1,
                node_id: 9,
                nonce: [4; NONCE_LEN],
                proof: [5; NONCE_LEN],
            },
            Frame::ClientProof {
                proof: [6; NONCE_LEN],
            },
            Frame::Request {
                id: 42,
                body: Bytes::from_static(b"abc"),
            },
            Frame::Response {
                id: 43,
                body: Bytes::new(),
            },
            Frame::Message(Bytes::from_static(b"hello")),
        ];
        for f in frames {
            assert_eq!(Frame::decode(f.encode()).unwrap(), f);
        }
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for len in 0..80 {
            for tag in 0..8u8 {
                let mut v = vec![tag];
                v.extend(std::iter::repeat_n(0xAA, len));
                let _ = Frame::decode(Bytes::from(v));
            }
        }
        assert!(Frame::decode(Bytes::new()).is_err());
        assert!(Frame::decode(Bytes::from_static(&[CLIENT_PROOF, 1, 2])).is_err());
    }
}
