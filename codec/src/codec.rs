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
#[derive(Debug, Clone, Default)]
pub struct MqttCodec {
    protocol: Protocol,
    limits: Limits,
    max_outgoing: Option<u32>,
}

impl MqttCodec {
    /// A codec for a fresh connection.
    pub fn new(limits: Limits) -> Self {
        MqttCodec {
            protocol: Protocol::V311,
            limits,
            max_outgoing: None,
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

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        crate::decode(src, self.protocol, &self.limits)
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
