//! PUBACK family, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT and AUTH decoding.

use starling_codec::{
    DecodeError, Disconnect, Limits, Packet, Protocol, PubResp, QoS, RetainHandling, decode,
};

use crate::common::*;

const V4: Protocol = Protocol::V311;
const V5: Protocol = Protocol::V5;

#[test]
fn disconnect_e0_00_decodes() {
    assert_eq!(
        ok(&[0xE0, 0x00], V5),
        Packet::Disconnect(Disconnect::default())
    );
    assert_eq!(
        ok(&[0xE0, 0x00], V4),
        Packet::Disconnect(Disconnect::default())
    );
}

#[test]
fn disconnect_reason_only_and_with_properties() {
    let d = ok(&[0xE0, 0x01, 0x04], V5);
    assert!(matches!(d, Packet::Disconnect(ref d) if d.reason == 4 && d.properties.is_empty()));
    let d = ok(&[0xE0, 0x07, 0x00, 0x05, 0x11, 0, 0, 0, 9], V5);
    assert!(matches!(d, Packet::Disconnect(d) if d.properties.session_expiry_interval == Some(9)));
    // 3.1.1 DISCONNECT must have no body.
    malformed(&[0xE0, 0x01, 0x00], V4);
    // Server-only reason code.
    malformed(&[0xE0, 0x01, 0x8E], V5);
}

#[test]
fn short_form_puback_family() {
    for (b, ctor) in [
        (0x40u8, Packet::PubAck as fn(PubResp) -> Packet),
        (0x50, Packet::PubRec),
        (0x62, Packet::PubRel),
        (0x70, Packet::PubComp),
    ] {
        let expected = ctor(PubResp {
            pkid: 0x1234,
            ..Default::default()
        });
        // Remaining length 2: reason 0, no properties (both protocols).
        assert_eq!(ok(&[b, 0x02, 0x12, 0x34], V5), expected);
        assert_eq!(ok(&[b, 0x02, 0x12, 0x34], V4), expected);
        // Remaining length 3: reason only.
        assert_eq!(ok(&[b, 0x03, 0x12, 0x34, 0x00], V5), expected);
        // Remaining length 4: reason + empty properties.
        assert_eq!(ok(&[b, 0x04, 0x12, 0x34, 0x00, 0x00], V5), expected);
        // 3.1.1 allows nothing beyond the packet id.
        malformed(&[b, 0x03, 0x12, 0x34, 0x00], V4);
    }
    let p = ok(&[0x40, 0x03, 0x00, 0x01, 0x10], V5);
    assert!(matches!(p, Packet::PubAck(p) if p.reason == 0x10));
    let p = ok(
        &cat(&[&[0x62, 0x0B, 0x00, 0x01, 0x92, 0x07, 0x1F], &s(b"gone")]),
        V5,
    );
    assert!(
        matches!(p, Packet::PubRel(p) if p.reason == 0x92 && p.properties.reason_string.as_deref() == Some("gone"))
    );
    // Reason code not valid for PUBREL.
    malformed(&[0x62, 0x03, 0x00, 0x01, 0x10], V5);
}

#[test]
fn subscribe_without_filters_is_protocol_error() {
    protocol_error(&[0x82, 0x02, 0x00, 0x01], V4);
    protocol_error(&[0x82, 0x03, 0x00, 0x01, 0x00], V5);
    protocol_error(&[0xA2, 0x02, 0x00, 0x01], V4);
    protocol_error(&[0xA2, 0x03, 0x00, 0x01, 0x00], V5);
}

#[test]
fn subscribe_filter_missing_options_byte_is_malformed() {
    malformed(&frame(0x82, &cat(&[&[0, 1], &s(b"a/b")])), V4);
    malformed(
        &frame(0x82, &cat(&[&[0, 1, 0], &s(b"a"), &[1], &s(b"b")])),
        V5,
    );
}

#[test]
fn subscription_options_validation() {
    // 3.1.1: upper six bits reserved.
    malformed(&frame(0x82, &cat(&[&[0, 1], &s(b"a"), &[0x04]])), V4);
    // v5: bits 6-7 reserved.
    malformed(&frame(0x82, &cat(&[&[0, 1, 0], &s(b"a"), &[0x40]])), V5);
    // QoS 3.
    malformed(&frame(0x82, &cat(&[&[0, 1], &s(b"a"), &[0x03]])), V4);
    malformed(&frame(0x82, &cat(&[&[0, 1, 0], &s(b"a"), &[0x03]])), V5);
    // Retain handling 3.
    protocol_error(&frame(0x82, &cat(&[&[0, 1, 0], &s(b"a"), &[0x30]])), V5);
    // All v5 options decoded.
    let p = ok(
        &frame(0x82, &cat(&[&[0, 1, 0], &s(b"a"), &[0b0010_1110]])),
        V5,
    );
    let Packet::Subscribe(sub) = p else { panic!() };
    let f = &sub.filters[0];
    assert_eq!(f.qos, QoS::ExactlyOnce);
    assert!(f.no_local && f.retain_as_published);
    assert_eq!(f.retain_handling, RetainHandling::DoNotSend);
}

#[test]
fn empty_filter_is_left_to_the_broker() {
    let p = ok(&frame(0x82, &cat(&[&[0, 1], &s(b""), &[1]])), V4);
    assert!(matches!(p, Packet::Subscribe(s) if s.filters[0].filter.is_empty()));
}

#[test]
fn too_many_filters() {
    let limits = Limits {
        max_filters: 2,
        ..Limits::default()
    };
    let f = cat(&[&s(b"a"), &[0]]);
    let mut two = frame(0x82, &cat(&[&[0, 1], &f, &f]));
    assert!(decode(&mut two, V4, &limits).unwrap().is_some());
    let mut three = frame(0x82, &cat(&[&[0, 1], &f, &f, &f]));
    assert_eq!(
        decode(&mut three, V4, &limits),
        Err(DecodeError::TooManyFilters)
    );
    let mut three = frame(0xA2, &cat(&[&[0, 1], &s(b"a"), &s(b"a"), &s(b"a")]));
    assert_eq!(
        decode(&mut three, V4, &limits),
        Err(DecodeError::TooManyFilters)
    );
    assert_eq!(DecodeError::TooManyFilters.reason_code(), 0x97);
}

#[test]
fn subscribe_with_identifier_and_user_properties() {
    let props = cat(&[&[0x0B, 0x80, 0x01, 0x26], &s(b"k"), &s(b"v")]);
    let body = cat(&[&[0, 9, props.len() as u8], &props, &s(b"x/#"), &[1]]);
    let Packet::Subscribe(sub) = ok(&frame(0x82, &body), V5) else {
        panic!()
    };
    assert_eq!(sub.pkid, 9);
    assert_eq!(sub.properties.subscription_identifiers, vec![128]);
    assert_eq!(
        sub.properties.user_properties,
        vec![("k".into(), "v".into())]
    );
    assert_eq!(sub.filters[0].filter, "x/#");
}

#[test]
fn auth_forms() {
    let a = ok(&[0xF0, 0x01, 0x18], V5);
    assert!(matches!(a, Packet::Auth(a) if a.reason == 0x18));
    let body = cat(&[&[0x18, 0x0B, 0x15], &s(b"SCRAM"), &[0x16, 0x00, 0x00]]);
    let Packet::Auth(a) = ok(&frame(0xF0, &body), V5) else {
        panic!()
    };
    assert_eq!(a.properties.authentication_method.as_deref(), Some("SCRAM"));
    assert_eq!(a.properties.authentication_data.as_deref(), Some(&b""[..]));
    malformed(&[0xF0, 0x01, 0x05], V5);
}

#[test]
fn publish_zero_copy_payload() {
    let f = frame(0x32, &cat(&[&s(b"a/b"), &[0, 5], b"hello"]));
    let Packet::Publish(p) = ok(&f, V4) else {
        panic!()
    };
    assert_eq!(&*p.topic, "a/b");
    assert_eq!(p.pkid, 5);
    assert_eq!(&p.payload[..], b"hello");
}

#[test]
fn reason_codes() {
    assert_eq!(DecodeError::MalformedPacket("x").reason_code(), 0x81);
    assert_eq!(DecodeError::ProtocolError("x").reason_code(), 0x82);
    assert_eq!(DecodeError::InvalidProtocolName.reason_code(), 0x81);
    assert_eq!(
        DecodeError::UnsupportedProtocolVersion(3).reason_code(),
        0x84
    );
    assert_eq!(
        DecodeError::from(std::io::Error::other("x")).reason_code(),
        0x80
    );
}
