//! CONNECT decoding.

use bytes::Bytes;
use starling_codec::{DecodeError, Packet, Protocol, QoS};

use crate::common::*;

const V4: Protocol = Protocol::V311;
const V5: Protocol = Protocol::V5;

fn connect(p: Packet) -> starling_codec::Connect {
    match p {
        Packet::Connect(c) => *c,
        other => panic!("not CONNECT: {other:?}"),
    }
}

#[test]
fn minimal_connects() {
    let c = connect(ok(&connect_v4(0x02, &s(b"cid")), V4));
    assert_eq!(c.protocol, Protocol::V311);
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 60);
    assert_eq!(c.client_id, "cid");
    let c = connect(ok(&connect_v5(0x00, &[0x11, 0, 0, 0, 30], &s(b"")), V4));
    assert_eq!(c.protocol, Protocol::V5);
    assert!(c.client_id.is_empty());
    assert_eq!(c.properties.session_expiry_interval, Some(30));
}

#[test]
fn connect_decodes_regardless_of_codec_protocol() {
    let v5 = connect_v5(0x02, &[], &s(b"a"));
    let v4 = connect_v4(0x02, &s(b"a"));
    assert_eq!(ok(&v5, V4), ok(&v5, V5));
    assert_eq!(ok(&v4, V4), ok(&v4, V5));
}

#[test]
fn protocol_name_and_level() {
    let mut body = s(b"MQTX");
    body.extend_from_slice(&[4, 2, 0, 60]);
    body.extend_from_slice(&s(b"c"));
    assert_eq!(
        err(&frame(0x10, &body), V4),
        DecodeError::InvalidProtocolName
    );
    for level in [3u8, 6, 0, 255] {
        let mut body = s(b"MQTT");
        body.extend_from_slice(&[level, 2, 0, 60]);
        body.extend_from_slice(&s(b"c"));
        assert_eq!(
            err(&frame(0x10, &body), V4),
            DecodeError::UnsupportedProtocolVersion(level)
        );
    }
    // MQTT 3.1 ("MQIsdp", level 3) gets "unsupported version" so the broker
    // can answer CONNACK return code 1.
    let mut body = s(b"MQIsdp");
    body.extend_from_slice(&[3, 2, 0, 60]);
    body.extend_from_slice(&s(b"c"));
    assert_eq!(
        err(&frame(0x10, &body), V4),
        DecodeError::UnsupportedProtocolVersion(3)
    );
}

#[test]
fn reserved_connect_flag_is_malformed() {
    malformed(&connect_v4(0x03, &s(b"c")), V4);
    malformed(&connect_v5(0x01, &[], &s(b"c")), V5);
}

#[test]
fn will_flag_rules() {
    // Will QoS without will flag.
    malformed(&connect_v4(0b0000_1000, &s(b"c")), V4);
    // Will retain without will flag.
    malformed(&connect_v4(0b0010_0000, &s(b"c")), V4);
    // Will QoS 3.
    malformed(
        &connect_v4(0b0001_1100, &cat(&[&s(b"c"), &s(b"t"), &s(b"p")])),
        V4,
    );
    // Valid will.
    let c = connect(ok(
        &connect_v4(0b0011_0100, &cat(&[&s(b"c"), &s(b"w/t"), &s(b"bye")])),
        V4,
    ));
    let w = c.will.unwrap();
    assert_eq!(&*w.topic, "w/t");
    assert_eq!(w.payload, Bytes::from_static(b"bye"));
    assert_eq!(w.qos, QoS::ExactlyOnce);
    assert!(w.retain);
    // v5 will with properties.
    let will = cat(&[&[5, 0x18, 0, 0, 0, 10], &s(b"w"), &s(b"")]);
    let c = connect(ok(
        &connect_v5(0b0000_0100, &[], &cat(&[&s(b"c"), &will])),
        V5,
    ));
    assert_eq!(c.will.unwrap().properties.will_delay_interval, Some(10));
    // A CONNECT-only property inside the will block.
    let will = cat(&[&[3, 0x21, 0, 1], &s(b"w"), &s(b"")]);
    protocol_error(&connect_v5(0b0000_0100, &[], &cat(&[&s(b"c"), &will])), V5);
}

#[test]
fn password_without_username() {
    malformed(&connect_v4(0b0100_0010, &cat(&[&s(b"c"), &s(b"pw")])), V4);
    // Allowed in v5.
    let c = connect(ok(
        &connect_v5(0b0100_0010, &[], &cat(&[&s(b"c"), &s(b"pw")])),
        V5,
    ));
    assert_eq!(c.username, None);
    assert_eq!(c.password, Some(Bytes::from_static(b"pw")));
}

#[test]
fn empty_username_and_password_keep_presence() {
    let c = connect(ok(
        &connect_v4(0b1100_0010, &cat(&[&s(b"c"), &s(b""), &s(b"")])),
        V4,
    ));
    assert_eq!(c.username.as_deref(), Some(""));
    assert_eq!(c.password, Some(Bytes::new()));
    // Password is binary: invalid UTF-8 is fine.
    let c = connect(ok(
        &connect_v4(0b1100_0010, &cat(&[&s(b"c"), &s(b"u"), &s(&[0xFF, 0])])),
        V4,
    ));
    assert_eq!(c.password.as_deref(), Some(&[0xFF, 0][..]));
}

#[test]
fn invalid_utf8_in_connect_strings_is_malformed() {
    malformed(&connect_v4(0x02, &s(&[0xED, 0xA0, 0x80])), V4);
    malformed(&connect_v4(0x02, &s(&[0xC0, 0xAF])), V4);
    malformed(&connect_v4(0x02, &s(b"a\0")), V4);
    malformed(
        &connect_v4(0b1000_0010, &cat(&[&s(b"c"), &s(&[0xC0, 0xAF])])),
        V4,
    );
    malformed(
        &connect_v4(
            0b0000_0110,
            &cat(&[&s(b"c"), &s(&[0xED, 0xA0, 0x80]), &s(b"")]),
        ),
        V4,
    );
    // Authentication method property.
    malformed(
        &connect_v5(0x02, &cat(&[&[0x15], &s(&[0xC0, 0xAF])]), &s(b"c")),
        V5,
    );
}

#[test]
fn auth_data_without_method_is_protocol_error() {
    protocol_error(&connect_v5(0x02, &[0x16, 0, 1, 7], &s(b"c")), V5);
    let c = connect(ok(
        &connect_v5(0x02, &cat(&[&[0x15], &s(b"m"), &[0x16, 0, 1, 7]]), &s(b"c")),
        V5,
    ));
    assert_eq!(c.properties.authentication_method.as_deref(), Some("m"));
}

#[test]
fn truncated_and_trailing_connect_is_malformed() {
    malformed(&connect_v4(0b1000_0010, &s(b"c")), V4);
    malformed(&connect_v4(0x02, &cat(&[&s(b"c"), &[0]])), V4);
}
