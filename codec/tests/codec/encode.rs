//! Encoder behaviour: protocol mappings, short forms, size limits.

use bytes::BytesMut;
use starling_codec::{
    ConnAck, Disconnect, EncodeError, Packet, Properties, Props, Protocol, PubResp, Publish, QoS,
    SubAck, UnsubAck, encode,
};

const V4: Protocol = Protocol::V311;
const V5: Protocol = Protocol::V5;

fn enc(p: &Packet, proto: Protocol) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode(p, proto, None, &mut b).unwrap();
    b.to_vec()
}

fn with_reason_string() -> Properties {
    Properties {
        reason_string: Some("why".into()),
        ..Default::default()
    }
}

#[test]
fn connack_v311_return_code_mapping() {
    for (reason, rc) in [
        (0x00, 0),
        (0x84, 1),
        (0x85, 2),
        (0x88, 3),
        (0x89, 3),
        (0x86, 4),
        (0x87, 5),
        (0x8A, 5),
        (0x8C, 5),
        (0x80, 3),
        (0x81, 3),
    ] {
        let p = Packet::ConnAck(ConnAck {
            session_present: true,
            reason,
            properties: with_reason_string().into(),
        });
        let sp = u8::from(reason == 0);
        assert_eq!(enc(&p, V4), vec![0x20, 0x02, sp, rc], "reason {reason:#x}");
    }
}

#[test]
fn connack_v5_keeps_reason_and_properties() {
    let p = Packet::ConnAck(ConnAck {
        session_present: false,
        reason: 0x87,
        properties: Props::default(),
    });
    assert_eq!(enc(&p, V5), vec![0x20, 0x03, 0x00, 0x87, 0x00]);
}

#[test]
fn suback_v311_maps_failures() {
    let p = Packet::SubAck(SubAck {
        pkid: 1,
        reasons: vec![0, 1, 2, 0x80, 0x87, 0x8F],
        properties: with_reason_string().into(),
    });
    assert_eq!(
        enc(&p, V4),
        vec![0x90, 0x08, 0, 1, 0, 1, 2, 0x80, 0x80, 0x80]
    );
}

#[test]
fn unsuback_v311_has_no_payload() {
    let p = Packet::UnsubAck(UnsubAck {
        pkid: 3,
        reasons: vec![0, 0x11],
        properties: Props::default(),
    });
    assert_eq!(enc(&p, V4), vec![0xB0, 0x02, 0, 3]);
    assert_eq!(enc(&p, V5), vec![0xB0, 0x05, 0, 3, 0, 0, 0x11]);
}

#[test]
fn puback_family_short_forms() {
    let ok = PubResp {
        pkid: 9,
        ..Default::default()
    };
    assert_eq!(enc(&Packet::PubAck(ok.clone()), V5), vec![0x40, 0x02, 0, 9]);
    assert_eq!(enc(&Packet::PubRel(ok.clone()), V5), vec![0x62, 0x02, 0, 9]);
    let reason = PubResp {
        pkid: 9,
        reason: 0x10,
        ..Default::default()
    };
    assert_eq!(
        enc(&Packet::PubAck(reason.clone()), V5),
        vec![0x40, 0x03, 0, 9, 0x10]
    );
    assert_eq!(enc(&Packet::PubAck(reason), V4), vec![0x40, 0x02, 0, 9]);
    let props = PubResp {
        pkid: 9,
        reason: 0,
        properties: with_reason_string().into(),
    };
    assert_eq!(
        enc(&Packet::PubComp(props), V5),
        vec![0x70, 0x0A, 0, 9, 0, 6, 0x1F, 0, 3, b'w', b'h', b'y']
    );
}

#[test]
fn disconnect_forms() {
    let d = Packet::Disconnect(Disconnect::default());
    assert_eq!(enc(&d, V5), vec![0xE0, 0x00]);
    assert_eq!(enc(&d, V4), vec![0xE0, 0x00]);
    let d = Packet::Disconnect(Disconnect {
        reason: 0x8E,
        properties: Props::default(),
    });
    assert_eq!(enc(&d, V5), vec![0xE0, 0x01, 0x8E]);
    assert_eq!(enc(&d, V4), vec![0xE0, 0x00]);
}

#[test]
fn ping() {
    assert_eq!(enc(&Packet::PingResp, V4), vec![0xD0, 0x00]);
    assert_eq!(enc(&Packet::PingReq, V5), vec![0xC0, 0x00]);
}

#[test]
fn qos0_publish_never_sets_dup() {
    let p = Packet::Publish(Publish {
        dup: true,
        topic: "t".into(),
        ..Default::default()
    });
    assert_eq!(enc(&p, V4), vec![0x30, 0x03, 0, 1, b't']);
}

#[test]
fn remaining_length_boundaries() {
    // Body sizes around each varint length boundary.
    for body in [127usize, 128, 16_383, 16_384, 2_097_151, 2_097_152] {
        let payload_len = body - 3; // topic "t" = 3 bytes
        let p = Packet::Publish(Publish {
            topic: "t".into(),
            payload: vec![0u8; payload_len].into(),
            ..Default::default()
        });
        let bytes = enc(&p, V4);
        let varint_len = match body {
            0..=127 => 1,
            128..=16_383 => 2,
            16_384..=2_097_151 => 3,
            _ => 4,
        };
        assert_eq!(bytes.len(), 1 + varint_len + body);
        let mut b = BytesMut::from(&bytes[..]);
        let limits = starling_codec::Limits {
            max_packet_size: u32::MAX,
            ..Default::default()
        };
        assert_eq!(
            starling_codec::decode(&mut b, V4, &limits).unwrap(),
            Some(p)
        );
    }
}

#[test]
fn string_too_long_is_an_error_and_out_is_untouched() {
    let p = Packet::Publish(Publish {
        topic: "a".repeat(65_536).into(),
        ..Default::default()
    });
    let mut b = BytesMut::from(&b"keep"[..]);
    assert_eq!(
        encode(&p, V4, None, &mut b),
        Err(EncodeError::StringTooLong)
    );
    assert_eq!(&b[..], b"keep");
    // Exactly 65535 is fine.
    let p = Packet::Publish(Publish {
        topic: "a".repeat(65_535).into(),
        ..Default::default()
    });
    assert!(encode(&p, V4, None, &mut b).is_ok());
    let up = Properties {
        user_properties: vec![("k".into(), "v".repeat(70_000))],
        ..Default::default()
    };
    let p = Packet::PubAck(PubResp {
        pkid: 1,
        reason: 0,
        properties: up.into(),
    });
    assert_eq!(
        encode(&p, V5, None, &mut BytesMut::new()),
        Err(EncodeError::StringTooLong)
    );
}

#[test]
fn protocol_maximum_size() {
    let p = Packet::Publish(Publish {
        topic: "t".into(),
        payload: vec![0u8; 268_435_455 - 3 + 1].into(),
        ..Default::default()
    });
    let mut b = BytesMut::new();
    assert!(matches!(
        encode(&p, V4, None, &mut b),
        Err(EncodeError::PacketTooLarge { .. })
    ));
    assert!(b.is_empty());
}

#[test]
fn max_size_publish_is_refused_and_out_untouched() {
    let p = Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        pkid: 1,
        topic: "t".into(),
        payload: vec![0u8; 100].into(),
        ..Default::default()
    });
    let total = enc(&p, V5).len();
    let mut b = BytesMut::from(&b"xy"[..]);
    assert_eq!(
        encode(&p, V5, Some(total as u32 - 1), &mut b),
        Err(EncodeError::PacketTooLarge {
            size: total,
            max: total as u32 - 1
        })
    );
    assert_eq!(&b[..], b"xy");
    encode(&p, V5, Some(total as u32), &mut b).unwrap();
    assert_eq!(b.len(), 2 + total);
}

#[test]
fn max_size_strips_reason_string_and_user_properties() {
    let props = Properties {
        reason_string: Some("a long diagnostic message".into()),
        user_properties: vec![("k".into(), "v".into())],
        ..Default::default()
    };
    let p = Packet::PubAck(PubResp {
        pkid: 1,
        reason: 0x10,
        properties: props.into(),
    });
    let mut b = BytesMut::new();
    encode(&p, V5, Some(10), &mut b).unwrap();
    assert_eq!(&b[..], &[0x40, 0x03, 0, 1, 0x10]);
    // Stripped and still too large.
    let mut b = BytesMut::new();
    assert!(matches!(
        encode(&p, V5, Some(4), &mut b),
        Err(EncodeError::PacketTooLarge { size: 5, max: 4 })
    ));
    assert!(b.is_empty());
    // CONNACK keeps its other properties.
    let c = Packet::ConnAck(ConnAck {
        session_present: false,
        reason: 0,
        properties: Properties {
            receive_maximum: Some(10),
            reason_string: Some("x".repeat(50)),
            ..Default::default()
        }
        .into(),
    });
    let mut b = BytesMut::new();
    encode(&c, V5, Some(20), &mut b).unwrap();
    assert_eq!(&b[..], &[0x20, 0x06, 0, 0, 3, 0x21, 0, 10]);
}

#[test]
fn oversized_subscription_identifier_is_an_error() {
    let p = Packet::Publish(Publish {
        topic: "t".into(),
        properties: Properties {
            subscription_identifiers: vec![u32::MAX],
            ..Default::default()
        }
        .into(),
        ..Default::default()
    });
    let mut b = BytesMut::new();
    assert!(encode(&p, V5, None, &mut b).is_err());
    assert!(b.is_empty());
}
