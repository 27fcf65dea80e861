//! MQTT 5 properties.
//!
//! One struct serves every packet type; the decoder rejects a property that is
//! not allowed in the packet it appears in, and duplicates of single-valued
//! properties (both are Protocol Errors, reason 0x82). 3.1.1 packets always
//! carry no properties.
//!
//! Packets hold their properties as [`Props`], out of line: most packets
//! carry none, and an inline `Properties` (over 300 bytes) made every packet
//! that large, copied at each move on the per-message path.

use bytes::Bytes;

/// The set of v5 properties a packet may carry. `None`/empty = absent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties {
    /// 0x01 Payload Format Indicator (0 = bytes, 1 = UTF-8).
    pub payload_format_indicator: Option<u8>,
    /// 0x02 Message Expiry Interval, seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03 Content Type.
    pub content_type: Option<String>,
    /// 0x08 Response Topic.
    pub response_topic: Option<String>,
    /// 0x09 Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// 0x0B Subscription Identifier(s): several in PUBLISH, at most one in SUBSCRIBE; never 0.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11 Session Expiry Interval, seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x12 Assigned Client Identifier.
    pub assigned_client_identifier: Option<String>,
    /// 0x13 Server Keep Alive, seconds.
    pub server_keep_alive: Option<u16>,
    /// 0x15 Authentication Method.
    pub authentication_method: Option<String>,
    /// 0x16 Authentication Data.
    pub authentication_data: Option<Bytes>,
    /// 0x17 Request Problem Information (0 or 1).
    pub request_problem_information: Option<u8>,
    /// 0x18 Will Delay Interval, seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x19 Request Response Information (0 or 1).
    pub request_response_information: Option<u8>,
    /// 0x1A Response Information.
    pub response_information: Option<String>,
    /// 0x1C Server Reference.
    pub server_reference: Option<String>,
    /// 0x1F Reason String.
    pub reason_string: Option<String>,
    /// 0x21 Receive Maximum (never 0).
    pub receive_maximum: Option<u16>,
    /// 0x22 Topic Alias Maximum.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23 Topic Alias (never 0).
    pub topic_alias: Option<u16>,
    /// 0x24 Maximum QoS (0 or 1).
    pub maximum_qos: Option<u8>,
    /// 0x25 Retain Available (0 or 1).
    pub retain_available: Option<u8>,
    /// 0x26 User Property pairs, in order.
    pub user_properties: Vec<(String, String)>,
    /// 0x27 Maximum Packet Size (never 0).
    pub maximum_packet_size: Option<u32>,
    /// 0x28 Wildcard Subscription Available (0 or 1).
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29 Subscription Identifier Available (0 or 1).
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A Shared Subscription Available (0 or 1).
    pub shared_subscription_available: Option<u8>,
}

impl Properties {
    /// No property set (usable in `const` and `static` items).
    pub const EMPTY: Properties = Properties {
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        subscription_identifiers: Vec::new(),
        session_expiry_interval: None,
        assigned_client_identifier: None,
        server_keep_alive: None,
        authentication_method: None,
        authentication_data: None,
        request_problem_information: None,
        will_delay_interval: None,
        request_response_information: None,
        response_information: None,
        server_reference: None,
        reason_string: None,
        receive_maximum: None,
        topic_alias_maximum: None,
        topic_alias: None,
        maximum_qos: None,
        retain_available: None,
        user_properties: Vec::new(),
        maximum_packet_size: None,
        wildcard_subscription_available: None,
        subscription_identifier_available: None,
        shared_subscription_available: None,
    };

    /// True when no property is set (encodes as a zero property length).
    pub fn is_empty(&self) -> bool {
        *self == Properties::EMPTY
    }
}

static NO_PROPERTIES: Properties = Properties::EMPTY;

/// True for the shared empty set a [`Props`] without properties derefs to:
/// the encoder's fast path, one pointer comparison instead of a field walk.
pub(crate) fn is_shared_empty(p: &Properties) -> bool {
    std::ptr::eq(p, &NO_PROPERTIES)
}

/// A packet's properties, boxed only when there are any.
///
/// Reads go through `Deref` (an empty set when there are none); a write
/// through `DerefMut` allocates the box. Equality compares the properties,
/// not whether a box exists.
#[derive(Clone, Default)]
pub struct Props(Option<Box<Properties>>);

impl Props {
    /// Takes the properties out, leaving none.
    pub fn take(&mut self) -> Properties {
        self.0.take().map(|b| *b).unwrap_or_default()
    }
}

impl std::ops::Deref for Props {
    type Target = Properties;

    fn deref(&self) -> &Properties {
        self.0.as_deref().unwrap_or(&NO_PROPERTIES)
    }
}

impl std::ops::DerefMut for Props {
    fn deref_mut(&mut self) -> &mut Properties {
        self.0.get_or_insert_with(Box::default)
    }
}

impl From<Properties> for Props {
    fn from(p: Properties) -> Props {
        if p.is_empty() {
            Props(None)
        } else {
            Props(Some(Box::new(p)))
        }
    }
}

impl PartialEq for Props {
    fn eq(&self, other: &Props) -> bool {
        **self == **other
    }
}

impl Eq for Props {}

impl std::fmt::Debug for Props {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}
