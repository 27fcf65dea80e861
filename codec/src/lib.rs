//! Server-side MQTT 3.1.1 and 5.0 packet codec.
//!
//! Starling owns its codec (see `docs/adr/0001-codec.md`): `mqttbytes` 0.6 is
//! frozen upstream and mis-handles inputs a broker sees every day. This crate
//! keeps mqttbytes' framing design and fixes its defects:
//!
//! ```text
//!   bytes ──► frame::check (whole frame buffered? size ok?) ──► decode::* ──► Packet
//!   Packet ──► encode::* ──► BytesMut
//! ```
//!
//! * "need more bytes" (`Ok(None)`) and "malformed" (`Err`) are distinct;
//! * every error maps to an MQTT 5 reason code ([`DecodeError::reason_code`]);
//! * nothing is allocated from a client-declared size before the whole frame
//!   is buffered and known to be under the size limit;
//! * payloads and PUBLISH topics are zero-copy slices of the read buffer.
//!
//! Depends on nothing else in the workspace.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod codec;
mod decode;
mod encode;
mod error;
mod frame;
mod packet;
mod properties;

pub use codec::{Limits, MqttCodec};
pub use decode::decode;
pub use encode::{connack_return_code, encode, suback_return_code};
pub use error::{DecodeError, EncodeError};
pub use packet::*;
pub use properties::{Properties, Props};
