//! Differential tests against `mqttbytes` 0.6.
//!
//! Server→client: we encode, mqttbytes decodes, fields must agree.
//! Client→server: mqttbytes encodes, we decode, fields must agree.
//! Only forms mqttbytes supports are compared (e.g. it cannot read a v5
//! `E0 00` DISCONNECT).

use bytes::{Bytes, BytesMut};
use mqttbytes::{v4, v5};
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use starling_codec::{
    ConnAck, Limits, Packet, Properties, Props, Protocol, PubResp, Publish, QoS, SubAck, UnsubAck,
    connack_return_code, decode, encode, suback_return_code,
};

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn their_qos(q: QoS) -> mqttbytes::QoS {
    match q {
        QoS::AtMostOnce => mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => mqttbytes::QoS::ExactlyOnce,
    }
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9/ é€]{0,10}"
}

fn user_props() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((text(), text()), 0..3)
}

fn ours(p: &Packet, proto: Protocol) -> BytesMut {
    let mut b = BytesMut::new();
    encode(p, proto, None, &mut b).unwrap();
    b
}

fn publish() -> impl Strategy<Value = Publish> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        "[a-z/]{1,10}",
        1u16..,
        vec(any::<u8>(), 0..64),
    )
        .prop_map(|(qos, dup, retain, topic, pkid, payload)| Publish {
            dup: dup && qos != QoS::AtMostOnce,
            qos,
            retain,
            topic: topic.into(),
            pkid: if qos == QoS::AtMostOnce { 0 } else { pkid },
            properties: Props::default(),
            payload: payload.into(),
        })
}

const CONNACK_REASONS: [u8; 21] = [
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D,
];

const SUBACK_REASONS: [u8; 10] = [0, 1, 2, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn v4_server_packets_decode_in_mqttbytes(
        sp in any::<bool>(),
        reason in prop::sample::select(CONNACK_REASONS.to_vec()),
        publish in publish(),
        pkid in 1u16..,
        reasons in vec(prop::sample::select(SUBACK_REASONS.to_vec()), 1..6),
    ) {
        let p = Protocol::V311;
        let mut b = ours(&Packet::ConnAck(ConnAck { session_present: sp, reason, properties: Props::default() }), p);
        let v4::Packet::ConnAck(c) = v4::read(&mut b, 1 << 20).unwrap() else { panic!() };
        prop_assert_eq!(c.code as u8, connack_return_code(reason));
        prop_assert_eq!(c.session_present, sp && reason == 0);

        let mut b = ours(&Packet::Publish(publish.clone()), p);
        let v4::Packet::Publish(t) = v4::read(&mut b, 1 << 20).unwrap() else { panic!() };
        prop_assert_eq!(t.topic, publish.topic.to_string());
        prop_assert_eq!(t.qos, their_qos(publish.qos));
        prop_assert_eq!((t.dup, t.retain, t.pkid), (publish.dup, publish.retain, publish.pkid));
        prop_assert_eq!(t.payload, publish.payload);

        let mut b = ours(&Packet::SubAck(SubAck { pkid, reasons: reasons.clone(), properties: Props::default() }), p);
        let v4::Packet::SubAck(s) = v4::read(&mut b, 1 << 20).unwrap() else { panic!() };
        prop_assert_eq!(s.pkid, pkid);
        let got: Vec<u8> = s.return_codes.iter().map(|r| match r {
            v4::SubscribeReasonCode::Success(q) => *q as u8,
            v4::SubscribeReasonCode::Failure => 0x80,
        }).collect();
        let want: Vec<u8> = reasons.iter().map(|&r| suback_return_code(r)).collect();
        prop_assert_eq!(got, want);

        let mut b = ours(&Packet::UnsubAck(UnsubAck { pkid, reasons: vec![0], properties: Props::default() }), p);
        prop_assert_eq!(v4::read(&mut b, 1 << 20).unwrap(), v4::Packet::UnsubAck(v4::UnsubAck::new(pkid)));

        let r = PubResp { pkid, ..Default::default() };
        let mut b = ours(&Packet::PubAck(r.clone()), p);
        prop_assert_eq!(v4::read(&mut b, 1 << 20).unwrap(), v4::Packet::PubAck(v4::PubAck::new(pkid)));
        let mut b = ours(&Packet::PubRec(r.clone()), p);
        prop_assert_eq!(v4::read(&mut b, 1 << 20).unwrap(), v4::Packet::PubRec(v4::PubRec::new(pkid)));
        let mut b = ours(&Packet::PubRel(r.clone()), p);
        prop_assert_eq!(v4::read(&mut b, 1 << 20).unwrap(), v4::Packet::PubRel(v4::PubRel::new(pkid)));
        let mut b = ours(&Packet::PubComp(r), p);
        prop_assert_eq!(v4::read(&mut b, 1 << 20).unwrap(), v4::Packet::PubComp(v4::PubComp::new(pkid)));
        let mut b = ours(&Packet::PingResp, p);
        prop_assert_eq!(v4::read(&mut b, 1 << 20).unwrap(), v4::Packet::PingResp);
    }

    #[test]
    fn v5_server_packets_decode_in_mqttbytes(
        sp in any::<bool>(),
        // mqttbytes 0.6 knows no 0x8C..: restrict to the codes it parses.
        reason in prop::sample::select(vec![0x00u8, 0x80, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x95, 0x97]),
        publish in publish(),
        alias in of(1u16..),
        expiry in of(any::<u32>()),
        sub_ids in vec(1u32..=268_435_455, 0..3),
        up in user_props(),
        rs in of(text()),
        pkid in 1u16..,
        recv_max in of(1u16..),
        assigned in of(text()),
    ) {
        let p = Protocol::V5;
        let props = Properties { receive_maximum: recv_max, assigned_client_identifier: assigned.clone(), reason_string: rs.clone(), user_properties: up.clone(), ..Default::default() };
        let mut b = ours(&Packet::ConnAck(ConnAck { session_present: sp, reason, properties: props.clone().into() }), p);
        let v5::Packet::ConnAck(c) = v5::read(&mut b, 1 << 20).unwrap() else { panic!() };
        prop_assert_eq!(c.code as u8, reason);
        prop_assert_eq!(c.session_present, sp && reason == 0);
        match c.properties {
            Some(cp) => {
                prop_assert_eq!(cp.receive_max, recv_max);
                prop_assert_eq!(cp.assigned_client_identifier, assigned);
                prop_assert_eq!(cp.reason_string, rs.clone());
                prop_assert_eq!(cp.user_properties, up.clone());
            }
            None => prop_assert!(props.is_empty()),
        }

        let mut publish = publish;
        publish.properties = Properties { topic_alias: alias, message_expiry_interval: expiry, subscription_identifiers: sub_ids.clone(), user_properties: up.clone(), ..Default::default() }.into();
        let mut b = ours(&Packet::Publish(publish.clone()), p);
        let v5::Packet::Publish(t) = v5::read(&mut b, 1 << 20).unwrap() else { panic!() };
        prop_assert_eq!(t.topic, publish.topic.to_string());
        prop_assert_eq!(t.qos, their_qos(publish.qos));
        prop_assert_eq!((t.dup, t.retain, t.pkid), (publish.dup, publish.retain, publish.pkid));
        prop_assert_eq!(t.payload, publish.payload.clone());
        match t.properties {
            Some(tp) => {
                prop_assert_eq!(tp.topic_alias, alias);
                prop_assert_eq!(tp.message_expiry_interval, expiry);
                prop_assert_eq!(tp.subscription_identifiers, sub_ids.iter().map(|&i| i as usize).collect::<Vec<_>>());
                prop_assert_eq!(tp.user_properties, up.clone());
            }
            None => prop_assert!(publish.properties.is_empty()),
        }

        let reasons = vec![0u8, 1, 2, 0x80, 0x87];
        let mut b = ours(&Packet::SubAck(SubAck { pkid, reasons: reasons.clone(), properties: Properties { reason_string: rs.clone(), ..Default::default() }.into() }), p);
        let v5::Packet::SubAck(s) = v5::read(&mut b, 1 << 20).unwrap() else { panic!() };
        prop_assert_eq!(s.pkid, pkid);
        prop_assert_eq!(s.return_codes.iter().map(|r| *r as u8).collect::<Vec<_>>(), reasons);
        prop_assert_eq!(s.properties.and_then(|p| p.reason_string), rs.clone());

        let mut b = ours(&Packet::UnsubAck(UnsubAck { pkid, reasons: vec![0, 0x11, 0x87], properties: Props::default() }), p);
        let v5::Packet::UnsubAck(u) = v5::read(&mut b, 1 << 20).unwrap() else { panic!() };
        prop_assert_eq!(u.reasons.iter().map(|r| *r as u8).collect::<Vec<_>>(), vec![0, 0x11, 0x87]);

        for reason in [0u8, 0x10, 0x87] {
            let r = PubResp { pkid, reason, properties: Properties { reason_string: rs.clone(), ..Default::default() }.into() };
            let mut b = ours(&Packet::PubAck(r), p);
            let v5::Packet::PubAck(a) = v5::read(&mut b, 1 << 20).unwrap() else { panic!() };
            prop_assert_eq!((a.pkid, a.reason as u8), (pkid, reason));
            prop_assert_eq!(a.properties.and_then(|p| p.reason_string), rs.clone());
        }

        let d = starling_codec::Disconnect { reason: 0x8E, properties: Properties { reason_string: rs.clone(), ..Default::default() }.into() };
        let mut b = ours(&Packet::Disconnect(d), p);
        // mqttbytes needs the property length; only compare when present.
        if rs.is_some() {
            let v5::Packet::Disconnect(d) = v5::read(&mut b, 1 << 20).unwrap() else { panic!() };
            prop_assert_eq!(d.reason_code as u8, 0x8E);
            prop_assert_eq!(d.properties.and_then(|p| p.reason_string), rs);
        }
    }

    #[test]
    fn v4_client_packets_from_mqttbytes(
        id in "[a-z0-9]{0,10}",
        keep_alive in any::<u16>(),
        clean in any::<bool>(),
        login in of(("[a-z]{0,8}", "[a-z]{0,8}")),
        publish in publish(),
        filters in vec(("[a-z/+#]{1,10}", qos()), 1..4),
        pkid in 1u16..,
    ) {
        let mut c = v4::Connect::new(id.clone());
        c.keep_alive = keep_alive;
        c.clean_session = clean;
        if let Some((u, p)) = &login {
            c.set_login(u.clone(), p.clone());
        }
        let mut b = BytesMut::new();
        c.write(&mut b).unwrap();
        // mqttbytes omits empty user names/passwords (and then may send a
        // password without a user name, which 3.1.1 forbids).
        let username = login.as_ref().map(|l| l.0.clone()).filter(|u| !u.is_empty());
        let password = login.map(|l| Bytes::from(l.1)).filter(|p| !p.is_empty());
        if username.is_none() && password.is_some() {
            prop_assert!(matches!(decode(&mut b, Protocol::V311, &Limits::default()), Err(starling_codec::DecodeError::MalformedPacket(_))));
        } else {
            let Some(Packet::Connect(ours)) = decode(&mut b, Protocol::V311, &Limits::default()).unwrap() else { panic!() };
            prop_assert_eq!(ours.protocol, Protocol::V311);
            prop_assert_eq!((ours.client_id.as_str(), ours.keep_alive, ours.clean_start), (id.as_str(), keep_alive, clean));
            prop_assert_eq!(ours.username, username);
            prop_assert_eq!(ours.password, password);
        }

        let mut t = v4::Publish::new(publish.topic.to_string(), their_qos(publish.qos), publish.payload.to_vec());
        t.pkid = publish.pkid;
        t.dup = publish.dup;
        t.retain = publish.retain;
        let mut b = BytesMut::new();
        t.write(&mut b).unwrap();
        prop_assert_eq!(decode(&mut b, Protocol::V311, &Limits::default()).unwrap(), Some(Packet::Publish(publish)));

        let mut s = v4::Subscribe::new_many(filters.iter().map(|(f, q)| v4::SubscribeFilter::new(f.clone(), their_qos(*q))));
        s.pkid = pkid;
        let mut b = BytesMut::new();
        s.write(&mut b).unwrap();
        let Some(Packet::Subscribe(ours)) = decode(&mut b, Protocol::V311, &Limits::default()).unwrap() else { panic!() };
        prop_assert_eq!(ours.pkid, pkid);
        prop_assert_eq!(ours.filters.iter().map(|f| (f.filter.clone(), f.qos)).collect::<Vec<_>>(), filters.clone());

        let u = v4::Unsubscribe { pkid, topics: filters.iter().map(|f| f.0.clone()).collect() };
        let mut b = BytesMut::new();
        u.write(&mut b).unwrap();
        let Some(Packet::Unsubscribe(ours)) = decode(&mut b, Protocol::V311, &Limits::default()).unwrap() else { panic!() };
        prop_assert_eq!(ours.filters, filters.into_iter().map(|f| f.0).collect::<Vec<_>>());

        let mut b = BytesMut::new();
        v4::PubRel::new(pkid).write(&mut b).unwrap();
        prop_assert_eq!(decode(&mut b, Protocol::V311, &Limits::default()).unwrap(), Some(Packet::PubRel(PubResp { pkid, ..Default::default() })));
        let mut b = BytesMut::new();
        v4::PingReq.write(&mut b).unwrap();
        v4::Disconnect.write(&mut b).unwrap();
        prop_assert_eq!(decode(&mut b, Protocol::V311, &Limits::default()).unwrap(), Some(Packet::PingReq));
        prop_assert_eq!(decode(&mut b, Protocol::V311, &Limits::default()).unwrap(), Some(Packet::Disconnect(Default::default())));
    }

    #[test]
    fn v5_client_packets_from_mqttbytes(
        id in "[a-z0-9]{0,10}",
        session_expiry in of(any::<u32>()),
        recv_max in of(1u16..),
        up in user_props(),
        publish in publish(),
        expiry in of(any::<u32>()),
        sub_id in of(1usize..=268_435_455),
        filters in vec(("[a-z/+#]{1,10}", qos()), 1..4),
        pkid in 1u16..,
    ) {
        let mut c = v5::Connect::new(id.clone());
        c.properties = Some(v5::ConnectProperties {
            session_expiry_interval: session_expiry,
            receive_maximum: recv_max,
            max_packet_size: None,
            topic_alias_max: None,
            request_response_info: None,
            request_problem_info: None,
            user_properties: up.clone(),
            authentication_method: None,
            authentication_data: None,
        });
        let mut b = BytesMut::new();
        c.write(&mut b).unwrap();
        let Some(Packet::Connect(ours)) = decode(&mut b, Protocol::V311, &Limits::default()).unwrap() else { panic!() };
        prop_assert_eq!(ours.protocol, Protocol::V5);
        prop_assert_eq!(ours.client_id, id);
        prop_assert_eq!(ours.properties.session_expiry_interval, session_expiry);
        prop_assert_eq!(ours.properties.receive_maximum, recv_max);
        prop_assert_eq!(&ours.properties.user_properties, &up);

        let mut t = v5::Publish::new(publish.topic.to_string(), their_qos(publish.qos), publish.payload.to_vec());
        t.pkid = publish.pkid;
        t.dup = publish.dup;
        t.retain = publish.retain;
        t.properties = Some(v5::PublishProperties {
            payload_format_indicator: None,
            message_expiry_interval: expiry,
            topic_alias: None,
            response_topic: None,
            correlation_data: None,
            user_properties: up.clone(),
            subscription_identifiers: vec![],
            content_type: None,
        });
        let mut b = BytesMut::new();
        t.write(&mut b).unwrap();
        let mut want = publish;
        want.properties = Properties { message_expiry_interval: expiry, user_properties: up.clone(), ..Default::default() }.into();
        prop_assert_eq!(decode(&mut b, Protocol::V5, &Limits::default()).unwrap(), Some(Packet::Publish(want)));

        let mut s = v5::Subscribe::new_many(filters.iter().map(|(f, q)| v5::SubscribeFilter::new(f.clone(), their_qos(*q))));
        s.pkid = pkid;
        s.properties = Some(v5::SubscribeProperties { id: sub_id, user_properties: up.clone() });
        let mut b = BytesMut::new();
        s.write(&mut b).unwrap();
        let Some(Packet::Subscribe(ours)) = decode(&mut b, Protocol::V5, &Limits::default()).unwrap() else { panic!() };
        prop_assert_eq!(ours.pkid, pkid);
        prop_assert_eq!(ours.properties.subscription_identifiers.clone(), sub_id.map(|i| i as u32).into_iter().collect::<Vec<_>>());
        prop_assert_eq!(ours.filters.iter().map(|f| (f.filter.clone(), f.qos)).collect::<Vec<_>>(), filters);

        let mut b = BytesMut::new();
        v5::PubAck::new(pkid).write(&mut b).unwrap();
        prop_assert_eq!(decode(&mut b, Protocol::V5, &Limits::default()).unwrap(), Some(Packet::PubAck(PubResp { pkid, ..Default::default() })));
    }
}
