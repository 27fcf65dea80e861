//! Fixed header, remaining length and partial-frame behaviour.

use bytes::BytesMut;
use starling_codec::{DecodeError, Limits, Packet, Protocol, Publish, QoS, decode, encode};

use crate::common::*;

#[test]
fn empty_buffer_needs_more() {
    assert_eq!(dec(&[], Protocol::V311), Ok(None));
}

#[test]
fn fifth_varint_byte_is_malformed() {
    // The 4th byte already carries a continuation bit: malformed without
    // waiting for a 5th byte.
    malformed(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF], Protocol::V5);
    malformed(&[0x30, 0x80, 0x80, 0x80, 0x80, 0x01], Protocol::V311);
}

#[test]
fn partial_varint_needs_more() {
    assert_eq!(dec(&[0x30], Protocol::V5), Ok(None));
    assert_eq!(dec(&[0x30, 0x80], Protocol::V5), Ok(None));
    assert_eq!(dec(&[0x30, 0x80, 0x80], Protocol::V5), Ok(None));
    assert_eq!(dec(&[0x30, 0x80, 0x80, 0x80], Protocol::V5), Ok(None));
}

#[test]
fn non_minimal_varint_is_malformed() {
    malformed(&[0xC0, 0x80, 0x00], Protocol::V311);
}

#[test]
fn oversized_header_only_frame_is_too_large() {
    // Only 5 bytes buffered; the declared size alone exceeds the limit.
    let e = err(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], Protocol::V5);
    assert_eq!(
        e,
        DecodeError::PacketTooLarge {
            size: 268_435_455 + 5,
            max: 1024 * 1024
        }
    );
    assert_eq!(e.reason_code(), 0x95);
}

#[test]
fn limit_counts_fixed_header() {
    let limits = Limits {
        max_packet_size: 10,
        ..Limits::default()
    };
    // PUBLISH "a" QoS0 with 5-byte payload: 2 + 3 + 5 = 10 bytes total: fits.
    let mut ok_frame = frame(0x30, &cat(&[&s(b"a"), b"12345"]));
    assert_eq!(ok_frame.len(), 10);
    assert!(matches!(
        decode(&mut ok_frame, Protocol::V311, &limits),
        Ok(Some(_))
    ));
    // One more byte: remaining length 9 < 10 but total 11 > 10.
    let mut big = frame(0x30, &cat(&[&s(b"a"), b"123456"]));
    assert_eq!(
        decode(&mut big, Protocol::V311, &limits),
        Err(DecodeError::PacketTooLarge { size: 11, max: 10 })
    );
    // Rejected with only the fixed header buffered.
    let mut head = BytesMut::from(&big[..2]);
    assert!(decode(&mut head, Protocol::V311, &limits).is_err());
}

#[test]
fn complete_malformed_frame_is_err_not_none() {
    // PUBACK with a 1-byte body: complete frame, truncated packet id.
    malformed(&[0x40, 0x01, 0x00], Protocol::V311);
    // SUBSCRIBE whose string length runs past the frame end.
    malformed(&[0x82, 0x04, 0x00, 0x01, 0x00, 0x09], Protocol::V311);
}

fn sample_frames() -> Vec<(Protocol, BytesMut)> {
    let mut out = Vec::new();
    for protocol in [Protocol::V311, Protocol::V5] {
        let mut props = starling_codec::Properties::default();
        if protocol == Protocol::V5 {
            props.user_properties.push(("k".into(), "v".into()));
            props.message_expiry_interval = Some(60);
        }
        let publish = Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            topic: "a/b".into(),
            pkid: 7,
            properties: props.into(),
            payload: vec![1u8; 300].into(),
            ..Default::default()
        });
        let mut b = BytesMut::new();
        encode(&publish, protocol, None, &mut b).unwrap();
        out.push((protocol, b));
        out.push((
            protocol,
            if protocol == Protocol::V5 {
                connect_v5(0b0000_0010, &[0x21, 0, 10], &s(b"client"))
            } else {
                connect_v4(0b0000_0010, &s(b"client"))
            },
        ));
    }
    out
}

#[test]
fn partial_frames_at_every_split_point() {
    for (protocol, full) in sample_frames() {
        let expected = ok(&full, protocol);
        for split in 0..full.len() {
            let mut buf = BytesMut::from(&full[..split]);
            assert_eq!(
                decode(&mut buf, protocol, &Limits::default()),
                Ok(None),
                "split {split}"
            );
            assert_eq!(buf.len(), split, "incomplete frame must not be consumed");
            buf.extend_from_slice(&full[split..]);
            let got = decode(&mut buf, protocol, &Limits::default())
                .unwrap()
                .unwrap();
            assert_eq!(got, expected);
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn back_to_back_frames_decode_in_order() {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0xC0, 0x00]);
    buf.extend_from_slice(&[0x40, 0x02, 0x00, 0x05]);
    buf.extend_from_slice(&[0xC0]);
    let l = Limits::default();
    assert_eq!(
        decode(&mut buf, Protocol::V311, &l),
        Ok(Some(Packet::PingReq))
    );
    assert!(matches!(
        decode(&mut buf, Protocol::V311, &l),
        Ok(Some(Packet::PubAck(_)))
    ));
    assert_eq!(decode(&mut buf, Protocol::V311, &l), Ok(None));
    assert_eq!(&buf[..], &[0xC0]);
}

#[test]
fn reserved_packet_type_zero_is_malformed() {
    malformed(&[0x00, 0x00], Protocol::V5);
}

#[test]
fn server_only_types_are_protocol_errors() {
    for b in [0x20, 0x90, 0xB0, 0xD0] {
        protocol_error(&[b, 0x00], Protocol::V311);
        protocol_error(&[b, 0x00], Protocol::V5);
    }
}

#[test]
fn reserved_fixed_header_flags_are_malformed() {
    // PUBREL/SUBSCRIBE/UNSUBSCRIBE require 0b0010.
    malformed(&[0x60, 0x02, 0x00, 0x01], Protocol::V311);
    malformed(
        &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00],
        Protocol::V311,
    );
    malformed(&[0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'], Protocol::V311);
    // Everything else requires 0.
    malformed(&[0xC1, 0x00], Protocol::V311);
    malformed(&[0x42, 0x02, 0x00, 0x01], Protocol::V311);
    malformed(&[0xE8, 0x00], Protocol::V5);
    malformed(&[0x11, 0x00], Protocol::V5);
}

#[test]
fn auth_is_v5_only() {
    malformed(&[0xF0, 0x00], Protocol::V311);
    assert!(matches!(ok(&[0xF0, 0x00], Protocol::V5), Packet::Auth(a) if a.reason == 0));
}

#[test]
fn pingreq_with_body_is_malformed() {
    malformed(&[0xC0, 0x01, 0x00], Protocol::V311);
}

/// A small PUBLISH kept alive (queued, retained) must not hold on to the read
/// buffer it arrived in: the buffer stays unshared and is reused in place.
#[test]
fn small_publish_does_not_pin_the_read_buffer() {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // QoS 0 PUBLISH, topic "t", payload "hello", followed by part of another.
    buf.extend_from_slice(&[0x30, 8, 0, 1, b't', b'h', b'e', b'l', b'l', b'o', 0x30]);
    let start = buf.as_ptr();
    let kept = decode(&mut buf, Protocol::V311, &Limits::default())
        .unwrap()
        .unwrap();
    let Packet::Publish(p) = &kept else {
        panic!("{kept:?}")
    };
    assert_eq!(&p.payload[..], b"hello");
    // Room for the whole capacity again means reclaiming the consumed
    // front, which an unshared buffer does in place; a shared one (a slice
    // still alive in `kept`) would be reallocated elsewhere.
    buf.reserve(64 * 1024 - buf.len());
    assert_eq!(
        buf.as_ptr(),
        start,
        "the decoded message pins the read buffer"
    );
    assert_eq!(&buf[..], &[0x30]);
    drop(kept);
}

/// A large PUBLISH is sliced out of the buffer without a copy.
#[test]
fn large_publish_is_not_copied() {
    let payload = vec![7u8; 20 * 1024];
    let mut frame = BytesMut::new();
    let p = Publish {
        topic: "big".into(),
        payload: payload.clone().into(),
        ..Publish::default()
    };
    encode(&Packet::Publish(p), Protocol::V311, None, &mut frame).unwrap();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    buf.extend_from_slice(&frame);
    let start = buf.as_ptr() as usize;
    let Some(Packet::Publish(got)) = decode(&mut buf, Protocol::V311, &Limits::default()).unwrap()
    else {
        panic!("not a publish")
    };
    let at = got.payload.as_ptr() as usize;
    assert!(at > start && at < start + 64 * 1024, "payload was copied");
    assert_eq!(&got.payload[..], &payload[..]);
}
