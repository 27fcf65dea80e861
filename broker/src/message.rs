//! Domain types shared by the router, the state machine and the protocol
//! layer. They are independent of the wire codec (only `protocol*` converts)
//! and serializable, because the same values travel through the replicated
//! log and, later, over peer links.

use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::topic::TopicName;

/// A client identifier, validated at CONNECT. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClientId(Arc<str>);

impl ClientId {
    /// Wraps an identifier that the protocol layer has already validated.
    pub fn new(id: &str) -> ClientId {
        ClientId(Arc::from(id))
    }

    /// The identifier text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Quality of service, the broker's own copy (the codec's stays in `protocol`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub enum QoS {
    /// At most once.
    #[default]
    AtMostOnce,
    /// At least once.
    AtLeastOnce,
    /// Exactly once.
    ExactlyOnce,
}

/// Application properties of a v5 message that the broker passes through
/// unchanged. Shared by every copy of the message (one allocation per publish).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MessageProps {
    /// Payload Format Indicator (1 = UTF-8, already validated at ingress).
    pub payload_format_utf8: bool,
    /// Content Type.
    pub content_type: Option<String>,
    /// Response Topic.
    pub response_topic: Option<String>,
    /// Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// User Properties, in order.
    pub user_properties: Vec<(String, String)>,
}

impl MessageProps {
    /// True when nothing would be sent on the wire.
    pub fn is_empty(&self) -> bool {
        !self.payload_format_utf8
            && self.content_type.is_none()
            && self.response_topic.is_none()
            && self.correlation_data.is_none()
            && self.user_properties.is_empty()
    }
}

/// A published application message as the broker stores and routes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Topic the message was published to (after alias resolution).
    pub topic: TopicName,
    /// Payload; shared, never copied per subscriber.
    pub payload: Bytes,
    /// QoS the publisher used.
    pub qos: QoS,
    /// Retain flag as published.
    pub retain: bool,
    /// v5 pass-through properties.
    pub props: Arc<MessageProps>,
    /// Absolute expiry in Unix milliseconds (v5 Message Expiry Interval).
    pub expires_at_ms: Option<u64>,
    /// The publishing client, for v5 No Local; `None` for broker-made messages.
    pub publisher: Option<ClientId>,
    /// When this node read the PUBLISH from its client, for the delivery
    /// latency histogram. An `Instant` means nothing on another node, so it
    /// is never replicated or forwarded: a deserialized message has `None`,
    /// as do wills and broker-made messages.
    #[serde(skip)]
    pub received_at: Option<Instant>,
}

impl Message {
    /// True when the message has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|t| t <= now_ms)
    }

    /// Remaining expiry interval in whole seconds (rounded up) for forwarding.
    pub fn remaining_expiry_secs(&self, now_ms: u64) -> Option<u32> {
        self.expires_at_ms.map(|t| {
            let ms = t.saturating_sub(now_ms);
            u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)
        })
    }
}

/// Options of one subscription (v5 subscription options; 3.1.1 uses the defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubOptions {
    /// Maximum QoS granted.
    pub qos: QoS,
    /// Do not deliver the subscriber's own publishes.
    pub no_local: bool,
    /// Keep the retain flag as published instead of clearing it.
    pub retain_as_published: bool,
    /// v5 Subscription Identifier, if any.
    pub subscription_id: Option<u32>,
}

/// Wall-clock time in Unix milliseconds. Commands carry it explicitly so the
/// state machine stays deterministic when replayed.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
