//! Malformed and hostile input, as raw bytes. Each case must close only the
//! offending connection; afterwards fresh clients still connect.

use crate::harness::{
    Broker, Raw, assert_alive, connect_raw, frame, publish_raw, str16, subscribe_raw,
};

/// Sends `bytes` after a successful 3.1.1 CONNECT; expects a silent close.
fn v4_closes(b: &Broker, bytes: &[u8]) {
    let mut raw = Raw::v4(b, "bad4");
    raw.send(bytes);
    raw.expect_silent_close();
}

/// Sends `bytes` after a successful 5.0 CONNECT; expects a close, with at
/// most a DISCONNECT carrying an error reason.
fn v5_closes(b: &Broker, bytes: &[u8]) -> Option<u8> {
    let mut raw = Raw::v5(b, "bad5");
    raw.send(bytes);
    raw.expect_v5_error_close()
}

/// Sends `bytes` as the very first thing; expects a close without any
/// successful CONNACK.
fn refused_first(b: &Broker, bytes: &[u8]) {
    let mut raw = Raw::connect(b);
    raw.send(bytes);
    raw.expect_refused_close();
}

#[test]
fn first_packet_must_be_connect() {
    let b = Broker::start();
    for first in [
        publish_raw(false, 0, b"a/b", 0, &[], b"hi"),
        subscribe_raw(false, 1, &[(b"a", 0)]),
        vec![0xC0, 0x00],
        vec![0xE0, 0x00],
    ] {
        let mut raw = Raw::connect(&b);
        raw.send(&first);
        raw.expect_silent_close();
    }
    assert_alive(&b);
}

#[test]
fn huge_first_packet_is_refused_without_reading_it() {
    let b = Broker::start();
    // Claims 268,435,455 bytes; only a few follow. Closing must not wait for the rest.
    let mut raw = Raw::connect(&b);
    raw.send(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F, b'a', b'b', b'c']);
    raw.expect_silent_close();
    let mut raw = Raw::connect(&b);
    raw.send(&[0x10, 0xFF, 0xFF, 0xFF, 0x7F, 0x00, 0x04]);
    raw.expect_silent_close();
    assert_alive(&b);
}

#[test]
fn five_byte_remaining_length() {
    let b = Broker::start();
    refused_first(&b, &[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
    v4_closes(&b, &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
    v5_closes(&b, &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
    assert_alive(&b);
}

#[test]
fn second_connect_closes() {
    let b = Broker::start();
    v4_closes(&b, &crate::harness::connect_v4("again"));
    let reason = v5_closes(&b, &crate::harness::connect_v5("again"));
    assert_eq!(reason, Some(0x82), "v5: Protocol Error");
    assert_alive(&b);
}

#[test]
fn reserved_fixed_header_flags() {
    let b = Broker::start();
    let sub_body = {
        let mut v = vec![0, 1];
        v.extend_from_slice(&str16(b"a"));
        v.push(0);
        v
    };
    let unsub_body = {
        let mut v = vec![0, 1];
        v.extend_from_slice(&str16(b"a"));
        v
    };
    let cases = [
        frame(0x80, &sub_body),   // SUBSCRIBE must have flags 0010
        frame(0x8A, &sub_body),   // ... not 1010
        frame(0xA0, &unsub_body), // UNSUBSCRIBE must have flags 0010
        frame(0x60, &[0, 1]),     // PUBREL must have flags 0010
        frame(0x41, &[0, 1]),     // PUBACK must have flags 0000
        vec![0xC1, 0x00],         // PINGREQ
        vec![0xE2, 0x00],         // DISCONNECT
    ];
    for bytes in &cases {
        v4_closes(&b, bytes);
    }
    assert!(v5_closes(&b, &cases[0]).is_some());
    assert_alive(&b);
}

#[test]
fn publish_with_qos_3() {
    let b = Broker::start();
    let mut body = str16(b"a/b");
    body.extend_from_slice(&[0, 1]);
    body.extend_from_slice(b"x");
    v4_closes(&b, &frame(0x36, &body));
    let mut body5 = str16(b"a/b");
    body5.extend_from_slice(&[0, 1, 0]);
    body5.extend_from_slice(b"x");
    v5_closes(&b, &frame(0x36, &body5));
    assert_alive(&b);
}

#[test]
fn publish_with_empty_topic_and_no_alias() {
    let b = Broker::start();
    v4_closes(&b, &publish_raw(false, 0, b"", 0, &[], b"x"));
    v4_closes(&b, &publish_raw(false, 0x02, b"", 1, &[], b"x"));
    v5_closes(&b, &publish_raw(true, 0, b"", 0, &[], b"x"));
    assert_alive(&b);
}

#[test]
fn subscribe_missing_options_byte() {
    let b = Broker::start();
    let mut body = vec![0, 1];
    body.extend_from_slice(&str16(b"a/b"));
    v4_closes(&b, &frame(0x82, &body));
    let mut body5 = vec![0, 1, 0];
    body5.extend_from_slice(&str16(b"a/b"));
    v5_closes(&b, &frame(0x82, &body5));
    assert_alive(&b);
}

#[test]
fn subscribe_without_filters() {
    let b = Broker::start();
    v4_closes(&b, &frame(0x82, &[0, 1]));
    v5_closes(&b, &frame(0x82, &[0, 1, 0]));
    // UNSUBSCRIBE without filters too.
    v4_closes(&b, &frame(0xA2, &[0, 1]));
    assert_alive(&b);
}

#[test]
fn filter_of_65535_slashes() {
    let b = Broker::start();
    let filter = vec![b'/'; 65_535];
    for v5 in [false, true] {
        let mut raw = if v5 {
            Raw::v5(&b, "slashes5")
        } else {
            Raw::v4(&b, "slashes4")
        };
        raw.send(&subscribe_raw(v5, 1, &[(&filter, 0)]));
        // Either a failure code in SUBACK or a closed connection; never a grant.
        match raw.read_packet() {
            None => {}
            Some((0x90, body)) => {
                let code = *body.last().unwrap();
                assert!(code >= 0x80, "65,535-level filter granted: {body:02x?}");
            }
            Some((0xE0, body)) if v5 => assert!(body[0] >= 0x80),
            Some(other) => panic!("unexpected {other:02x?}"),
        }
    }
    assert_alive(&b);
}

#[test]
fn wildcards_in_publish_topic() {
    let b = Broker::start();
    for topic in [&b"a/+"[..], b"a/#", b"#", b"+"] {
        v4_closes(&b, &publish_raw(false, 0, topic, 0, &[], b"x"));
        v5_closes(&b, &publish_raw(true, 0x02, topic, 1, &[], b"x"));
    }
    assert_alive(&b);
}

#[test]
fn invalid_utf8_in_topic() {
    let b = Broker::start();
    // Surrogate half U+D800 and an overlong '/'.
    for topic in [&b"a/\xED\xA0\x80"[..], b"a\xC0\xAF", b"\xFF"] {
        v4_closes(&b, &publish_raw(false, 0, topic, 0, &[], b"x"));
        v5_closes(&b, &publish_raw(true, 0, topic, 0, &[], b"x"));
        v4_closes(&b, &subscribe_raw(false, 1, &[(topic, 0)]));
    }
    assert_alive(&b);
}

#[test]
fn invalid_utf8_in_client_id() {
    let b = Broker::start();
    for id in [&b"c\xED\xA0\x80"[..], b"c\xC0\xAF"] {
        refused_first(&b, &connect_raw(4, 0x02, 60, &[], id, &[]));
        refused_first(&b, &connect_raw(5, 0x02, 60, &[], id, &[]));
    }
    assert_alive(&b);
}

#[test]
fn nul_character_in_topic_and_client_id() {
    let b = Broker::start();
    v4_closes(&b, &publish_raw(false, 0, b"a\0b", 0, &[], b"x"));
    v5_closes(&b, &publish_raw(true, 0, b"a\0b", 0, &[], b"x"));
    refused_first(&b, &connect_raw(4, 0x02, 60, &[], b"c\0d", &[]));
    assert_alive(&b);
}

#[test]
fn server_only_packets_from_client() {
    let b = Broker::start();
    let cases: [&[u8]; 4] = [
        &[0x20, 0x02, 0x00, 0x00],       // CONNACK
        &[0x90, 0x03, 0x00, 0x01, 0x00], // SUBACK
        &[0xB0, 0x02, 0x00, 0x01],       // UNSUBACK
        &[0xD0, 0x00],                   // PINGRESP
    ];
    for bytes in cases {
        v4_closes(&b, bytes);
        v5_closes(&b, bytes);
        // And as the first packet.
        let mut raw = Raw::connect(&b);
        raw.send(bytes);
        raw.expect_silent_close();
    }
    assert_alive(&b);
}

#[test]
fn bad_protocol_name() {
    let b = Broker::start();
    for name in [&b"MQTX"[..], b"mqtt", b""] {
        let mut body = str16(name);
        body.extend_from_slice(&[4, 0x02, 0, 60]);
        body.extend_from_slice(&str16(b"c"));
        refused_first(&b, &frame(0x10, &body));
    }
    assert_alive(&b);
}

#[test]
fn unsupported_protocol_level_gets_return_code_1() {
    let b = Broker::start();
    for (name, level) in [(&b"MQIsdp"[..], 3u8), (b"MQTT", 3), (b"MQTT", 6)] {
        let mut body = str16(name);
        body.extend_from_slice(&[level, 0x02, 0, 60]);
        body.extend_from_slice(&str16(b"old"));
        let mut raw = Raw::connect(&b);
        raw.send(&frame(0x10, &body));
        let got = raw.read_to_close();
        assert_eq!(got, [0x20, 0x02, 0x00, 0x01], "level {level}: {got:02x?}");
    }
    assert_alive(&b);
}

#[test]
fn packet_id_zero() {
    let b = Broker::start();
    v4_closes(&b, &publish_raw(false, 0x02, b"a/b", 0, &[], b"x"));
    v4_closes(&b, &publish_raw(false, 0x04, b"a/b", 0, &[], b"x"));
    v5_closes(&b, &publish_raw(true, 0x02, b"a/b", 0, &[], b"x"));
    v4_closes(&b, &subscribe_raw(false, 0, &[(b"a", 0)]));
    assert_alive(&b);
}

#[test]
fn invalid_filters_get_failure_codes_without_closing() {
    let b = Broker::start();
    let filters: [&[u8]; 5] = [b"a/#/b", b"#/#", b"a+", b"+x/y", b"a/b#"];
    for v5 in [false, true] {
        let mut raw = if v5 {
            Raw::v5(&b, "f5")
        } else {
            Raw::v4(&b, "f4")
        };
        let list: Vec<(&[u8], u8)> = filters
            .iter()
            .map(|f| (*f, 1))
            .chain([(&b"ok/+"[..], 1)])
            .collect();
        raw.send(&subscribe_raw(v5, 9, &list));
        let (b1, body) = raw.packet();
        assert_eq!(b1, 0x90);
        assert_eq!(body[..2], [0, 9]);
        let codes = if v5 { &body[3..] } else { &body[2..] };
        let fail = if v5 { 0x8F } else { 0x80 };
        assert_eq!(codes, [fail, fail, fail, fail, fail, 1], "v5={v5}");
        raw.ping();
    }
    assert_alive(&b);
}

#[test]
fn garbage_bytes_first() {
    let b = Broker::start();
    for bytes in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0x00, 0x00],
        &[0xF0, 0x00],
    ] {
        refused_first(&b, bytes);
    }
    assert_alive(&b);
}
