//! MQTT protocol layer: the only module that sees the codec's packet types.
//!
//! One task per connection (`connection`): it decodes client packets,
//! converts them to domain types, drives the per-connection flows (QoS
//! handshakes, keep alive, topic aliases, receive maximum) and writes the
//! deliveries it is given. Every malformed input ends here, in one place,
//! as a reason code or a closed connection.

mod connect;
mod connection;
mod memo;
mod outbound;

use std::net::SocketAddr;
use std::sync::Arc;

use starling_codec as codec;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::message::QoS;

pub(crate) use connection::serve;

/// v5 DISCONNECT reason sent while draining.
pub(crate) const SERVER_SHUTTING_DOWN: u8 = reason::SERVER_SHUTTING_DOWN;

/// Where a connection came from: for logs, the policy and telemetry.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub addr: SocketAddr,
    pub listener: Arc<str>,
    /// The connection uses TLS.
    pub tls: bool,
    /// The verified TLS client certificate, when one was presented.
    pub cert: Option<Arc<crate::transport::CertIdentity>>,
}

/// Any byte stream a client can reach us over (TCP now; TLS and WebSocket later).
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for T {}

fn qos_from_wire(q: codec::QoS) -> QoS {
    match q {
        codec::QoS::AtMostOnce => QoS::AtMostOnce,
        codec::QoS::AtLeastOnce => QoS::AtLeastOnce,
        codec::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn qos_to_wire(q: QoS) -> codec::QoS {
    match q {
        QoS::AtMostOnce => codec::QoS::AtMostOnce,
        QoS::AtLeastOnce => codec::QoS::AtLeastOnce,
        QoS::ExactlyOnce => codec::QoS::ExactlyOnce,
    }
}

/// v5 reason codes the broker sends (MQTT 5 §2.4).
pub(crate) mod reason {
    pub const SUCCESS: u8 = 0x00;
    pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    pub const UNSPECIFIED: u8 = 0x80;
    pub const NOT_AUTHORIZED: u8 = 0x87;
    pub const PROTOCOL_ERROR: u8 = 0x82;
    pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
    pub const CLIENT_ID_NOT_VALID: u8 = 0x85;
    pub const SERVER_UNAVAILABLE: u8 = 0x88;
    pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
    pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    pub const PACKET_ID_NOT_FOUND: u8 = 0x92;
    pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
}

/// The packet a plugin refused (answered by CONNACK, PUBACK/PUBREC or
/// SUBACK): each answer allows its own set of v5 reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Connect,
    Publish,
    Subscribe,
}

/// The v5 reason code for a plugin's refusal in `answer`.
fn plugin_reason(r: starling_plugins::Rejection, answer: Answer) -> u8 {
    use starling_plugins::Rejection::*;
    const IMPLEMENTATION_SPECIFIC: u8 = 0x83;
    const PACKET_TOO_LARGE: u8 = 0x95;
    match (r, answer) {
        (NotAuthorized, _) => reason::NOT_AUTHORIZED,
        (Quota, _) => reason::QUOTA_EXCEEDED,
        (PayloadInvalid, Answer::Subscribe) | (TooLarge, Answer::Subscribe) => {
            IMPLEMENTATION_SPECIFIC
        }
        (PayloadInvalid, _) => reason::PAYLOAD_FORMAT_INVALID,
        (TooLarge, Answer::Connect) => PACKET_TOO_LARGE,
        // PUBACK/PUBREC have no "too large": the quota is what was exceeded.
        (TooLarge, Answer::Publish) => reason::QUOTA_EXCEEDED,
    }
}

/// Human-readable text for the reason codes the broker closes connections
/// with; sent as the v5 DISCONNECT Reason String.
fn reason_text(code: u8) -> &'static str {
    match code {
        0x81 => "malformed packet",
        0x82 => "protocol error",
        0x83 => "too many properties",
        reason::SERVER_SHUTTING_DOWN => "server shutting down",
        reason::NOT_AUTHORIZED => "not authorized",
        0x96 => "message rate too high",
        0x98 => "disconnected by an administrator",
        reason::KEEP_ALIVE_TIMEOUT => "keep alive timeout",
        0x8E => "session taken over by another connection",
        reason::TOPIC_NAME_INVALID => "topic name invalid",
        reason::RECEIVE_MAXIMUM_EXCEEDED => "too many QoS 2 messages awaiting PUBREL",
        reason::TOPIC_ALIAS_INVALID => "topic alias invalid",
        0x95 => "packet too large",
        reason::QUOTA_EXCEEDED => "quota exceeded",
        reason::PAYLOAD_FORMAT_INVALID => "payload is not valid UTF-8",
        0x9C => "this node lost contact with the cluster: use another server",
        _ => "unspecified error",
    }
}
