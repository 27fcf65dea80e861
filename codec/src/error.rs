//! Decode and encode errors.
//!
//! Every [`DecodeError`] maps to the MQTT 5 reason code the broker should put
//! in its CONNACK / DISCONNECT before closing ([`DecodeError::reason_code`]).

/// Why a client→server frame could not be decoded. The connection must be
/// closed after any of these (MQTT 5 §4.13): the stream position is lost.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum DecodeError {
    /// Malformed Packet (reason 0x81): the bytes violate the wire format.
    #[error("malformed packet: {0}")]
    MalformedPacket(&'static str),
    /// Protocol Error (reason 0x82): well-formed bytes that break a protocol rule.
    #[error("protocol error: {0}")]
    ProtocolError(&'static str),
    /// Packet Too Large (reason 0x95): the declared total frame size (fixed
    /// header included) exceeds [`crate::Limits::max_packet_size`].
    #[error("packet of {size} bytes exceeds maximum {max}")]
    PacketTooLarge {
        /// Declared total frame size in bytes.
        size: usize,
        /// The limit in force.
        max: u32,
    },
    /// CONNECT protocol name is not "MQTT" (reason 0x81). MQTT 3.1.1
    /// §3.1.2.1 says the server MAY close without a CONNACK, which the broker does.
    #[error("invalid protocol name")]
    InvalidProtocolName,
    /// CONNECT protocol level other than 4 or 5 (reason 0x84; 3.1.1 return code 1).
    #[error("unsupported protocol version {0}")]
    UnsupportedProtocolVersion(u8),
    /// PUBLISH topic name contains a wildcard (reason 0x90).
    #[error("topic name invalid")]
    TopicNameInvalid,
    /// More properties in one packet than [`crate::Limits::max_properties`].
    /// Reason 0x83 (Implementation specific error): the packet is legal MQTT,
    /// this broker merely refuses to spend memory on it.
    #[error("too many properties")]
    TooManyProperties,
    /// More filters in one SUBSCRIBE/UNSUBSCRIBE than
    /// [`crate::Limits::max_filters`] (reason 0x97 Quota exceeded).
    #[error("too many topic filters")]
    TooManyFilters,
    /// I/O error from the underlying transport (reason 0x80 Unspecified).
    /// Stored as text so the error stays `Clone + Eq`.
    #[error("i/o error: {0}")]
    Io(String),
}

impl DecodeError {
    /// The MQTT 5 reason code to report for this error (CONNACK or DISCONNECT).
    pub fn reason_code(&self) -> u8 {
        match self {
            DecodeError::MalformedPacket(_) | DecodeError::InvalidProtocolName => 0x81,
            DecodeError::ProtocolError(_) => 0x82,
            DecodeError::PacketTooLarge { .. } => 0x95,
            DecodeError::UnsupportedProtocolVersion(_) => 0x84,
            DecodeError::TopicNameInvalid => 0x90,
            DecodeError::TooManyProperties => 0x83,
            DecodeError::TooManyFilters => 0x97,
            DecodeError::Io(_) => 0x80,
        }
    }
}

impl From<std::io::Error> for DecodeError {
    fn from(e: std::io::Error) -> Self {
        DecodeError::Io(e.to_string())
    }
}

/// Why a packet could not be encoded. `out` is left unchanged on error.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum EncodeError {
    /// The encoded packet exceeds the peer's Maximum Packet Size or the
    /// protocol maximum (268,435,455 remaining length).
    #[error("packet of {size} bytes exceeds maximum {max}")]
    PacketTooLarge {
        /// Total encoded size in bytes (fixed header included).
        size: usize,
        /// The limit in force.
        max: u32,
    },
    /// A string or binary field is longer than its 65,535-byte length prefix allows.
    #[error("string or binary field longer than 65535 bytes")]
    StringTooLong,
    /// I/O error from the underlying transport.
    #[error("i/o error: {0}")]
    Io(String),
}

impl From<std::io::Error> for EncodeError {
    fn from(e: std::io::Error) -> Self {
        EncodeError::Io(e.to_string())
    }
}
