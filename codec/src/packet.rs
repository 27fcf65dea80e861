//! Packet types shared by the decoder and the encoder.

use bytes::Bytes;
use bytestring::ByteString;

use crate::Props;

/// MQTT protocol revision negotiated by CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// MQTT 3.1.1 (protocol level 4).
    #[default]
    V311,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

/// Quality of service level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum QoS {
    /// At most once.
    #[default]
    AtMostOnce = 0,
    /// At least once.
    AtLeastOnce = 1,
    /// Exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// Parses a QoS from its two-bit wire value; 3 is malformed.
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// Any MQTT control packet.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// CONNECT (client → server).
    Connect(Box<Connect>),
    /// CONNACK (server → client).
    ConnAck(ConnAck),
    /// PUBLISH (both directions).
    Publish(Publish),
    /// PUBACK (both directions).
    PubAck(PubResp),
    /// PUBREC (both directions).
    PubRec(PubResp),
    /// PUBREL (both directions).
    PubRel(PubResp),
    /// PUBCOMP (both directions).
    PubComp(PubResp),
    /// SUBSCRIBE (client → server).
    Subscribe(Subscribe),
    /// SUBACK (server → client).
    SubAck(SubAck),
    /// UNSUBSCRIBE (client → server).
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (server → client).
    UnsubAck(UnsubAck),
    /// PINGREQ (client → server).
    PingReq,
    /// PINGRESP (server → client).
    PingResp,
    /// DISCONNECT (both directions; v5 carries a reason).
    Disconnect(Disconnect),
    /// AUTH (v5 only, both directions).
    Auth(Auth),
}

/// Will message carried in CONNECT.
#[derive(Debug, Clone, PartialEq)]
pub struct LastWill {
    /// Will topic (validated UTF-8, no NUL; wildcards are checked by the broker).
    pub topic: ByteString,
    /// Will payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will retain flag.
    pub retain: bool,
    /// Will properties (v5; empty for 3.1.1).
    pub properties: Props,
}

/// CONNECT packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Connect {
    /// Protocol revision requested by the client.
    pub protocol: Protocol,
    /// Clean session (3.1.1) / clean start (v5).
    pub clean_start: bool,
    /// Keep alive in seconds (0 = disabled).
    pub keep_alive: u16,
    /// Client identifier (may be empty).
    pub client_id: String,
    /// Will, if the will flag was set.
    pub will: Option<LastWill>,
    /// User name, if its flag was set (an empty user name is still `Some`).
    pub username: Option<String>,
    /// Password as binary data, if its flag was set (empty is still `Some`).
    pub password: Option<Bytes>,
    /// CONNECT properties (v5).
    pub properties: Props,
}

/// CONNACK packet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnAck {
    /// Session present flag.
    pub session_present: bool,
    /// v5 reason code; for 3.1.1 the encoder maps it to a return code 0–5.
    pub reason: u8,
    /// CONNACK properties (v5).
    pub properties: Props,
}

/// PUBLISH packet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Publish {
    /// Duplicate delivery flag.
    pub dup: bool,
    /// QoS level.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Topic name; empty only when a v5 topic alias is present.
    pub topic: ByteString,
    /// Packet identifier (non-zero for QoS > 0, 0 for QoS 0).
    pub pkid: u16,
    /// PUBLISH properties (v5).
    pub properties: Props,
    /// Application payload (zero-copy slice of the read buffer).
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PubResp {
    /// Packet identifier (non-zero).
    pub pkid: u16,
    /// v5 reason code (0 = success); always 0 for 3.1.1.
    pub reason: u8,
    /// Properties (v5).
    pub properties: Props,
}

/// Retain handling subscription option (v5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// Send retained messages at subscribe time.
    #[default]
    SendAtSubscribe = 0,
    /// Send retained messages only if the subscription did not exist.
    SendIfNew = 1,
    /// Never send retained messages at subscribe time.
    DoNotSend = 2,
}

/// One filter in a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeFilter {
    /// Topic filter text (validated UTF-8, no NUL; structure is checked by the broker).
    pub filter: String,
    /// Maximum QoS.
    pub qos: QoS,
    /// No local (v5).
    pub no_local: bool,
    /// Retain as published (v5).
    pub retain_as_published: bool,
    /// Retain handling (v5).
    pub retain_handling: RetainHandling,
}

/// SUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    /// Packet identifier (non-zero).
    pub pkid: u16,
    /// At least one filter.
    pub filters: Vec<SubscribeFilter>,
    /// Properties (v5): subscription identifier, user properties.
    pub properties: Props,
}

/// SUBACK packet.
#[derive(Debug, Clone, PartialEq)]
pub struct SubAck {
    /// Packet identifier.
    pub pkid: u16,
    /// One v5 reason code per filter; the 3.1.1 encoder maps failures (≥ 0x80) to 0x80.
    pub reasons: Vec<u8>,
    /// Properties (v5).
    pub properties: Props,
}

/// UNSUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsubscribe {
    /// Packet identifier (non-zero).
    pub pkid: u16,
    /// At least one filter.
    pub filters: Vec<String>,
    /// Properties (v5).
    pub properties: Props,
}

/// UNSUBACK packet.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsubAck {
    /// Packet identifier.
    pub pkid: u16,
    /// One v5 reason code per filter (not encoded for 3.1.1).
    pub reasons: Vec<u8>,
    /// Properties (v5).
    pub properties: Props,
}

/// DISCONNECT packet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Disconnect {
    /// v5 reason code (0 = normal disconnection).
    pub reason: u8,
    /// Properties (v5).
    pub properties: Props,
}

/// AUTH packet (v5).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Auth {
    /// Reason code (0x00 success, 0x18 continue, 0x19 re-authenticate).
    pub reason: u8,
    /// Properties: authentication method and data.
    pub properties: Props,
}
