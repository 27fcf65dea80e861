//! Property tests: encode→decode round trips of valid client packets, and
//! decoding arbitrary or mutated bytes never panics.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use starling_codec::{
    Auth, Connect, Disconnect, LastWill, Limits, Packet, Properties, Protocol, PubResp, Publish,
    QoS, RetainHandling, Subscribe, SubscribeFilter, Unsubscribe, decode, encode,
};

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9/ _é€😀\u{FEFF}-]{0,12}"
}

fn topic() -> impl Strategy<Value = String> {
    "[a-z0-9/é€😀]{1,12}"
}

fn filter() -> impl Strategy<Value = String> {
    "[a-z0-9/+#é$]{0,12}"
}

fn bin() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn user_props() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((text(), text()), 0..3)
}

fn flag() -> impl Strategy<Value = Option<u8>> {
    of(0u8..=1)
}

fn connect_props() -> impl Strategy<Value = Properties> {
    (
        of(any::<u32>()),
        of(1u16..),
        of(1u32..),
        of(any::<u16>()),
        flag(),
        flag(),
        user_props(),
        of((text(), of(bin()))),
    )
        .prop_map(|(se, rm, mps, tam, rri, rpi, up, auth)| Properties {
            session_expiry_interval: se,
            receive_maximum: rm,
            maximum_packet_size: mps,
            topic_alias_maximum: tam,
            request_response_information: rri,
            request_problem_information: rpi,
            user_properties: up,
            authentication_method: auth.as_ref().map(|a| a.0.clone()),
            authentication_data: auth.and_then(|a| a.1),
            ..Default::default()
        })
}

/// Message properties shared by PUBLISH and will (no topic alias here).
fn message_props() -> impl Strategy<Value = Properties> {
    (
        flag(),
        of(any::<u32>()),
        of(text()),
        of(topic()),
        of(bin()),
        user_props(),
    )
        .prop_map(|(pfi, mei, ct, rt, cd, up)| Properties {
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            content_type: ct,
            response_topic: rt,
            correlation_data: cd,
            user_properties: up,
            ..Default::default()
        })
}

fn diag_props() -> impl Strategy<Value = Properties> {
    (of(text()), user_props()).prop_map(|(rs, up)| Properties {
        reason_string: rs,
        user_properties: up,
        ..Default::default()
    })
}

fn v5(p: Protocol) -> bool {
    p == Protocol::V5
}

fn props_if(
    p: Protocol,
    s: impl Strategy<Value = Properties>,
) -> impl Strategy<Value = Properties> {
    s.prop_map(move |props| if v5(p) { props } else { Properties::default() })
}

fn connect(p: Protocol) -> impl Strategy<Value = Packet> {
    let will = of((
        topic(),
        bin(),
        qos(),
        any::<bool>(),
        props_if(
            p,
            (message_props(), of(any::<u32>())).prop_map(|(mut m, d)| {
                m.will_delay_interval = d;
                m
            }),
        ),
    ));
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        will,
        of(text()),
        of(bin()),
        props_if(p, connect_props()),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                // 3.1.1 forbids a password without a user name.
                let password = if v5(p) || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    protocol: p,
                    clean_start,
                    keep_alive,
                    client_id,
                    will: will.map(|(topic, payload, qos, retain, properties)| LastWill {
                        topic: topic.into(),
                        payload,
                        qos,
                        retain,
                        properties: properties.into(),
                    }),
                    username,
                    password,
                    properties: properties.into(),
                }))
            },
        )
}

fn publish(p: Protocol) -> impl Strategy<Value = Packet> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic(),
        1u16..,
        props_if(p, message_props()),
        of(1u16..),
        any::<bool>(),
        bin(),
    )
        .prop_map(
            move |(qos, dup, retain, topic, pkid, mut properties, alias, empty, payload)| {
                let mut topic = topic;
                if v5(p) {
                    properties.topic_alias = alias;
                    if alias.is_some() && empty {
                        topic.clear();
                    }
                }
                let at_most_once = qos == QoS::AtMostOnce;
                Packet::Publish(Publish {
                    dup: dup && !at_most_once,
                    qos,
                    retain,
                    topic: topic.into(),
                    pkid: if at_most_once { 0 } else { pkid },
                    properties: properties.into(),
                    payload,
                })
            },
        )
}

fn pub_resp(p: Protocol) -> impl Strategy<Value = Packet> {
    (
        0usize..4,
        1u16..,
        prop::sample::select(vec![0x00u8, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]),
        props_if(p, diag_props()),
    )
        .prop_map(move |(kind, pkid, reason, properties)| {
            // PUBREL/PUBCOMP only have 0x00 and 0x92.
            let reason = match (v5(p), kind) {
                (false, _) => 0,
                (true, 0 | 1) => reason,
                (true, _) => {
                    if reason == 0 {
                        0
                    } else {
                        0x92
                    }
                }
            };
            let r = PubResp {
                pkid,
                reason,
                properties: properties.into(),
            };
            match kind {
                0 => Packet::PubAck(r),
                1 => Packet::PubRec(r),
                2 => Packet::PubRel(r),
                _ => Packet::PubComp(r),
            }
        })
}

fn subscribe(p: Protocol) -> impl Strategy<Value = Packet> {
    let f = (filter(), qos(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(
        move |(filter, qos, nl, rap, rh)| SubscribeFilter {
            filter,
            qos,
            no_local: nl && v5(p),
            retain_as_published: rap && v5(p),
            retain_handling: match (v5(p), rh) {
                (true, 1) => RetainHandling::SendIfNew,
                (true, 2) => RetainHandling::DoNotSend,
                _ => RetainHandling::SendAtSubscribe,
            },
        },
    );
    let props = (of(1u32..=268_435_455), user_props()).prop_map(|(id, up)| Properties {
        subscription_identifiers: id.into_iter().collect(),
        user_properties: up,
        ..Default::default()
    });
    (1u16.., vec(f, 1..5), props_if(p, props)).prop_map(|(pkid, filters, properties)| {
        Packet::Subscribe(Subscribe {
            pkid,
            filters,
            properties: properties.into(),
        })
    })
}

fn unsubscribe(p: Protocol) -> impl Strategy<Value = Packet> {
    let props = user_props().prop_map(|up| Properties {
        user_properties: up,
        ..Default::default()
    });
    (1u16.., vec(filter(), 1..5), props_if(p, props)).prop_map(|(pkid, filters, properties)| {
        Packet::Unsubscribe(Unsubscribe {
            pkid,
            filters,
            properties: properties.into(),
        })
    })
}

fn disconnect(p: Protocol) -> impl Strategy<Value = Packet> {
    let props = (of(any::<u32>()), diag_props(), of(text())).prop_map(|(se, mut d, sr)| {
        d.session_expiry_interval = se;
        d.server_reference = sr;
        d
    });
    (
        prop::sample::select(vec![0x00u8, 0x04, 0x80, 0x81, 0x82, 0x83, 0x90, 0x93, 0x99]),
        props_if(p, props),
    )
        .prop_map(move |(reason, properties)| {
            Packet::Disconnect(Disconnect {
                reason: if v5(p) { reason } else { 0 },
                properties: properties.into(),
            })
        })
}

fn auth() -> impl Strategy<Value = Packet> {
    let props = (of(text()), of(bin()), diag_props()).prop_map(|(m, d, mut p)| {
        p.authentication_method = m;
        p.authentication_data = d;
        p
    });
    (prop::sample::select(vec![0x00u8, 0x18, 0x19]), props).prop_map(|(reason, properties)| {
        Packet::Auth(Auth {
            reason,
            properties: properties.into(),
        })
    })
}

fn client_packet(p: Protocol) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(p),
        publish(p),
        pub_resp(p),
        subscribe(p),
        unsubscribe(p),
        Just(Packet::PingReq),
        disconnect(p),
    ];
    if v5(p) {
        prop_oneof![6 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

fn any_client_packet() -> impl Strategy<Value = (Protocol, Packet)> {
    prop_oneof![Just(Protocol::V311), Just(Protocol::V5)]
        .prop_flat_map(|p| (Just(p), client_packet(p)))
}

/// Decodes every frame in `bytes`; re-encodes successes and checks they
/// decode to the same packet. Must never panic.
fn decode_all(bytes: &[u8], protocol: Protocol) {
    let limits = Limits::default();
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(packet)) = decode(&mut buf, protocol, &limits) {
        let proto = match &packet {
            Packet::Connect(c) => c.protocol,
            _ => protocol,
        };
        let mut out = BytesMut::new();
        encode(&packet, proto, None, &mut out).unwrap();
        let again = decode(&mut out, proto, &limits).unwrap().unwrap();
        assert_eq!(again, packet);
        assert!(out.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encode_decode_round_trip((protocol, packet) in any_client_packet()) {
        let mut buf = BytesMut::new();
        encode(&packet, protocol, None, &mut buf).unwrap();
        let total = buf.len();
        let decoded = decode(&mut buf, protocol, &Limits::default()).unwrap();
        prop_assert_eq!(decoded, Some(packet.clone()));
        prop_assert!(buf.is_empty());
        // Every strict prefix is "need more bytes".
        let mut again = BytesMut::new();
        encode(&packet, protocol, None, &mut again).unwrap();
        for cut in [0, 1, total / 2, total - 1] {
            let mut part = BytesMut::from(&again[..cut]);
            prop_assert_eq!(decode(&mut part, protocol, &Limits::default()), Ok(None));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256), v5 in any::<bool>()) {
        decode_all(&bytes, if v5 { Protocol::V5 } else { Protocol::V311 });
    }

    #[test]
    fn mutated_encodings_never_panic(
        (protocol, packet) in any_client_packet(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut buf = BytesMut::new();
        encode(&packet, protocol, None, &mut buf).unwrap();
        let mut bytes = buf.to_vec();
        for (idx, byte, op) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = idx.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
        }
        decode_all(&bytes, protocol);
    }
}
