//! `tokio_util` codec wrapping [`crate::decode()`] and [`crate::encode()`].

use bytes::BytesMut;

use crate::{DecodeError, EncodeError, Packet, Protocol};

/// Decoder limits (set by the broker; may change after CONNECT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Max total packet size in bytes, fixed header included. A larger frame
    /// is rejected with [`DecodeError::PacketTooLarge`] as soon as its fixed
    /// header is buffered, before any of its body is.
    pub max_packet_size: u32,
    /// Max number of property entries (each user property counts as one) in
    /// one packet, guarding against CVE-2021-41039-style floods of tiny
    /// properties. Over → [`DecodeError::TooManyProperties`] (reason 0x83).
    pub max_properties: usize,
    /// Max topic filters in one SUBSCRIBE/UNSUBSCRIBE. Over →
    /// [`DecodeError::TooManyFilters`] (reason 0x97).
    pub max_filters: usize,
}

impl Default for Limits {
    /// 1 MiB packets, 64 properties, 128 filters.
    fn default() -> Self {
        Limits {
            max_packet_size: 1024 * 1024,
            max_properties: 64,
            max_filters: 128,
        }
    }
}

/// `tokio_util` codec: decodes client→server packets, encodes any packet.
///
/// Starts in [`Protocol::V311`]; the broker switches it with
/// [`MqttCodec::set_protocol`] once it has accepted CONNECT (CONNECT itself is
/// decoded according to its own protocol level).
#[derive(Debug, Clone)]
pub struct MqttCodec {
    protocol: Protocol,
    limits: Limits,
    max_outgoing: Option<u32>,
    /// Capacity the read buffer is given before the next read (adaptive).
    read_hint: usize,
}

/// Smallest read buffer: what an idle or slow connection keeps.
const MIN_READ: usize = 512;
/// Largest read buffer a busy connection grows to.
const MAX_READ: usize = 64 * 1024;

impl Default for MqttCodec {
    fn default() -> Self {
        MqttCodec::new(Limits::default())
    }
}

impl MqttCodec {
    /// A codec for a fresh connection.
    pub fn new(limits: Limits) -> Self {
        MqttCodec {
            protocol: Protocol::V311,
            limits,
            max_outgoing: None,
            read_hint: MIN_READ,
        }
    }

    /// Sets the protocol used for every packet after CONNECT.
    pub fn set_protocol(&mut self, p: Protocol) {
        self.protocol = p;
    }

    /// The protocol currently used for decoding and encoding.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Replaces the decoder limits.
    pub fn set_limits(&mut self, l: Limits) {
        self.limits = l;
    }

    /// The decoder limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Max size (total bytes) of packets we send (the client's v5 Maximum
    /// Packet Size); `None` = unlimited (protocol maximum).
    pub fn set_max_outgoing(&mut self, max: Option<u32>) {
        self.max_outgoing = max;
    }
}

impl tokio_util::codec::Decoder for MqttCodec {
    type Item = Packet;
    type Error = DecodeError;

    /// Also sizes the read buffer. `FramedRead` only ever reserves one
    /// byte, so the buffer would stay at its first size: a busy connection
    /// would then need a `recv` per handful of packets. When a read filled
    /// the buffer (more is probably waiting in the socket) the next one gets
    /// twice the room, up to 64 KiB; when it did not, the room shrinks back
    /// towards 512 bytes, so idle connections stay small.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        // After a read, and after each frame split off its front, spare
        // capacity is what the read left unused: none means it filled it.
        let filled = src.len() == src.capacity();
        let frame = crate::decode(src, self.protocol, &self.limits)?;
        if frame.is_none() {
            self.read_hint = if filled {
                (self.read_hint * 2).min(MAX_READ)
            } else {
                (self.read_hint / 2).max(MIN_READ)
            };
            if src.capacity() < self.read_hint {
                src.reserve(self.read_hint - src.len());
            }
        }
        Ok(frame)
    }
}

impl tokio_util::codec::Encoder<&Packet> for MqttCodec {
    type Error = EncodeError;

    fn encode(&mut self, item: &Packet, dst: &mut BytesMut) -> Result<(), EncodeError> {
        crate::encode(item, self.protocol, self.max_outgoing, dst)
    }
}

impl tokio_util::codec::Encoder<Packet> for MqttCodec {
    type Error = EncodeError;

    fn encode(&mut self, item: Packet, dst: &mut BytesMut) -> Result<(), EncodeError> {
        crate::encode(&item, self.protocol, self.max_outgoing, dst)
    }
}
