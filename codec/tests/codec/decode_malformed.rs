//! PUBLISH, strings and v5 property validation.

use bytes::BytesMut;
use starling_codec::{DecodeError, Limits, Packet, Protocol, QoS, decode};

use crate::common::*;

const V4: Protocol = Protocol::V311;
const V5: Protocol = Protocol::V5;

/// v5 PUBLISH QoS 0 to `topic` with a raw property block and payload.
fn publish_v5(topic: &[u8], props: &[u8], payload: &[u8]) -> BytesMut {
    let mut body = s(topic);
    body.push(props.len() as u8);
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    frame(0x30, &body)
}

#[test]
fn publish_qos3_is_malformed() {
    malformed(&frame(0x36, &cat(&[&s(b"a"), &[0, 1]])), V4);
}

#[test]
fn publish_dup_with_qos0_is_malformed() {
    malformed(&frame(0x38, &s(b"a")), V4);
    // DUP with QoS 1 is fine.
    let p = ok(&frame(0x3A, &cat(&[&s(b"a"), &[0, 1]])), V4);
    assert!(matches!(p, Packet::Publish(p) if p.dup && p.qos == QoS::AtLeastOnce));
}

#[test]
fn packet_id_zero_is_protocol_error() {
    protocol_error(&frame(0x32, &cat(&[&s(b"a"), &[0, 0]])), V4);
    protocol_error(&frame(0x34, &cat(&[&s(b"a"), &[0, 0], &[0]])), V5);
    for b in [0x40, 0x50, 0x62, 0x70] {
        protocol_error(&[b, 0x02, 0x00, 0x00], V4);
        protocol_error(&[b, 0x02, 0x00, 0x00], V5);
    }
    protocol_error(&frame(0x82, &cat(&[&[0, 0], &s(b"a"), &[0]])), V4);
    protocol_error(&frame(0xA2, &cat(&[&[0, 0], &s(b"a")])), V4);
}

#[test]
fn wildcard_publish_topic_is_topic_name_invalid() {
    for t in [&b"a/+"[..], b"#", b"a/#", b"+"] {
        assert_eq!(err(&frame(0x30, &s(t)), V4), DecodeError::TopicNameInvalid);
        assert_eq!(
            err(&publish_v5(t, &[], b""), V5),
            DecodeError::TopicNameInvalid
        );
    }
    assert_eq!(DecodeError::TopicNameInvalid.reason_code(), 0x90);
}

#[test]
fn empty_topic_without_alias_is_protocol_error() {
    protocol_error(&frame(0x30, &s(b"")), V4);
    protocol_error(&publish_v5(b"", &[], b"x"), V5);
    // With a topic alias it is allowed in v5.
    let p = ok(&publish_v5(b"", &[0x23, 0x00, 0x05], b"x"), V5);
    assert!(
        matches!(p, Packet::Publish(p) if p.topic.is_empty() && p.properties.topic_alias == Some(5))
    );
}

#[test]
fn topic_alias_zero_is_protocol_error() {
    protocol_error(&publish_v5(b"t", &[0x23, 0x00, 0x00], b""), V5);
}

#[test]
fn subscription_identifier_in_client_publish_is_protocol_error() {
    protocol_error(&publish_v5(b"t", &[0x0B, 0x01], b""), V5);
}

#[test]
fn surrogate_and_overlong_in_topic_are_malformed() {
    malformed(&frame(0x30, &s(&[b'a', 0xED, 0xA0, 0x80])), V4);
    malformed(&frame(0x30, &s(&[0xC0, 0xAF])), V4);
    malformed(&publish_v5(&[0xED, 0xA0, 0x80], &[], b""), V5);
    malformed(&publish_v5(&[0xC0, 0xAF], &[], b""), V5);
    // Surrogate / overlong in a subscribe filter.
    malformed(
        &frame(0x82, &cat(&[&[0, 1], &s(&[0xED, 0xA0, 0x80]), &[0]])),
        V4,
    );
    malformed(&frame(0xA2, &cat(&[&[0, 1], &s(&[0xC0, 0xAF])])), V4);
}

#[test]
fn nul_in_strings_is_malformed() {
    malformed(&frame(0x30, &s(b"a\0b")), V4);
    malformed(&frame(0x82, &cat(&[&[0, 1], &s(b"a\0"), &[0]])), V4);
    // In a property string (content type).
    malformed(&publish_v5(b"t", &cat(&[&[0x03], &s(b"x\0")]), b""), V5);
}

#[test]
fn surrogate_and_overlong_in_property_string_are_malformed() {
    malformed(
        &publish_v5(b"t", &cat(&[&[0x03], &s(&[0xED, 0xA0, 0x80])]), b""),
        V5,
    );
    malformed(
        &publish_v5(b"t", &cat(&[&[0x26], &s(b"k"), &s(&[0xC0, 0xAF])]), b""),
        V5,
    );
}

#[test]
fn bom_is_kept() {
    let p = ok(&frame(0x30, &s("\u{FEFF}a".as_bytes())), V4);
    assert!(matches!(p, Packet::Publish(p) if &*p.topic == "\u{FEFF}a"));
}

#[test]
fn property_not_allowed_for_packet_is_protocol_error() {
    // Session Expiry Interval in PUBLISH.
    protocol_error(&publish_v5(b"t", &[0x11, 0, 0, 0, 1], b""), V5);
    // Server Keep Alive (server-only) in PUBLISH.
    protocol_error(&publish_v5(b"t", &[0x13, 0, 1], b""), V5);
    // Topic Alias in PUBACK.
    protocol_error(&frame(0x40, &[0, 1, 0, 3, 0x23, 0, 1]), V5);
    // Message expiry in SUBSCRIBE.
    protocol_error(
        &frame(0x82, &cat(&[&[0, 1, 5, 0x02, 0, 0, 0, 1], &s(b"a"), &[0]])),
        V5,
    );
    // Subscription id in UNSUBSCRIBE.
    protocol_error(&frame(0xA2, &cat(&[&[0, 1, 2, 0x0B, 1], &s(b"a")])), V5);
    // Receive Maximum in DISCONNECT.
    protocol_error(&frame(0xE0, &[0, 3, 0x21, 0, 1]), V5);
}

#[test]
fn unknown_property_identifier_is_malformed() {
    malformed(&publish_v5(b"t", &[0x07, 0], b""), V5);
    malformed(&publish_v5(b"t", &[0x80, 0x01], b""), V5);
}

#[test]
fn duplicate_property_is_protocol_error() {
    protocol_error(
        &publish_v5(b"t", &[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2], b""),
        V5,
    );
    protocol_error(&publish_v5(b"t", &[0x01, 1, 0x01, 1], b""), V5);
    // Two subscription identifiers in SUBSCRIBE.
    protocol_error(
        &frame(0x82, &cat(&[&[0, 1, 4, 0x0B, 1, 0x0B, 2], &s(b"a"), &[0]])),
        V5,
    );
    // User properties may repeat.
    let p = ok(
        &publish_v5(
            b"t",
            &cat(&[&[0x26], &s(b"k"), &s(b"1"), &[0x26], &s(b"k"), &s(b"2")]),
            b"",
        ),
        V5,
    );
    let Packet::Publish(p) = p else { panic!() };
    assert_eq!(p.properties.user_properties.len(), 2);
}

#[test]
fn property_length_running_into_payload_is_detected() {
    // Property length says 2 but the message expiry value needs 4: the value
    // would overrun the block into the payload.
    let mut body = s(b"t");
    body.extend_from_slice(&[2, 0x02, 0, 0, 0, 1, 9, 9]);
    malformed(&frame(0x30, &body), V5);
    // Property length larger than what is left of the packet.
    let mut body = s(b"t");
    body.extend_from_slice(&[50, 0x01, 1]);
    malformed(&frame(0x30, &body), V5);
}

#[test]
fn invalid_property_values_are_protocol_errors() {
    protocol_error(&publish_v5(b"t", &[0x01, 2], b""), V5);
    protocol_error(&connect_v5(0x02, &[0x21, 0, 0], &s(b"c")), V5);
    protocol_error(&connect_v5(0x02, &[0x27, 0, 0, 0, 0], &s(b"c")), V5);
    protocol_error(&connect_v5(0x02, &[0x17, 2], &s(b"c")), V5);
    protocol_error(&connect_v5(0x02, &[0x19, 7], &s(b"c")), V5);
    protocol_error(
        &frame(0x82, &cat(&[&[0, 1, 2, 0x0B, 0], &s(b"a"), &[0]])),
        V5,
    );
    protocol_error(&publish_v5(b"t", &cat(&[&[0x08], &s(b"r/+")]), b""), V5);
}

#[test]
fn too_many_properties() {
    let limits = Limits {
        max_properties: 3,
        ..Limits::default()
    };
    let up = cat(&[&[0x26], &s(b"k"), &s(b"v")]);
    let props = cat(&[&up, &up, &up]);
    let mut b = publish_v5(b"t", &props, b"");
    assert!(decode(&mut b, V5, &limits).unwrap().is_some());
    let props = cat(&[&up, &up, &up, &up]);
    let mut b = publish_v5(b"t", &props, b"");
    assert_eq!(
        decode(&mut b, V5, &limits),
        Err(DecodeError::TooManyProperties)
    );
    assert_eq!(DecodeError::TooManyProperties.reason_code(), 0x83);
    // CONNECT and will properties count together.
    let will = cat(&[&[up.len() as u8 * 2], &up, &up, &s(b"w"), &s(b"p")]);
    let b = connect_v5(0b0000_0110, &up, &cat(&[&s(b"c"), &will]));
    let mut b2 = b.clone();
    assert_eq!(decode(&mut b2, V5, &limits), Ok(Some(ok(&b, V5))));
    let limits2 = Limits {
        max_properties: 2,
        ..Limits::default()
    };
    let mut b3 = b.clone();
    assert_eq!(
        decode(&mut b3, V5, &limits2),
        Err(DecodeError::TooManyProperties)
    );
}

#[test]
fn trailing_bytes_are_malformed() {
    malformed(&[0x40, 0x03, 0x00, 0x01, 0x00], V4);
    malformed(&[0xE0, 0x01, 0x00], V4);
}
