//! MQTT 5 features: assigned client ids, topic aliases, message expiry,
//! no-local, subscription identifiers, properties, payload format, receive
//! maximum, packet size limits, authentication method, UNSUBACK codes.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, Filter, PubAckReason, PublishProperties, RetainForwardRule,
    SubscribeProperties, UnsubAckReason,
};

use crate::clients::{props5, v5, v5_opts, v5_refused, v5_with};
use crate::harness::{
    Broker, Raw, assert_alive, connect_raw, disconnect_reason, publish_raw, split_packets,
};

#[tokio::test]
async fn assigned_client_identifier_for_empty_id() {
    let b = Broker::start();
    let (_c1, ack1) = v5_with(v5_opts(&b, "")).await;
    let (_c2, ack2) = v5_with(v5_opts(&b, "")).await;
    assert_eq!(ack1.code, ConnectReturnCode::Success);
    let id1 = ack1
        .properties
        .and_then(|p| p.assigned_client_identifier)
        .expect("assigned id");
    let id2 = ack2
        .properties
        .and_then(|p| p.assigned_client_identifier)
        .expect("assigned id");
    assert!(!id1.is_empty());
    assert_ne!(id1, id2, "each client gets its own identifier");
}

#[tokio::test]
async fn inbound_topic_alias() {
    let b = Broker::start();
    let mut sub = v5(&b, "sub").await;
    sub.subscribe("ta/#", QoS5::AtLeastOnce).await;
    let mut publ = v5(&b, "pub").await;
    let alias = |a| PublishProperties {
        topic_alias: Some(a),
        ..props5()
    };
    // Set alias 1, use it, then remap it to another topic and use it again.
    let sends = [("ta/x", "1"), ("", "2"), ("ta/y", "3"), ("", "4")];
    for (topic, payload) in sends {
        publ.client
            .publish_with_properties(topic, QoS5::AtLeastOnce, false, payload, alias(1))
            .await
            .unwrap();
        assert_eq!(publ.puback().await.reason, PubAckReason::Success);
    }
    for (topic, payload) in [("ta/x", "1"), ("ta/x", "2"), ("ta/y", "3"), ("ta/y", "4")] {
        let p = sub.publish().await;
        assert_eq!(
            (&p.topic[..], &p.payload[..]),
            (topic.as_bytes(), payload.as_bytes())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_inbound_topic_alias_closes_the_connection() {
    let b = Broker::start();
    let mut raw = Raw::v5(&b, "alias");
    let mut alias = vec![0x23];
    alias.extend_from_slice(&7u16.to_be_bytes());
    raw.send(&publish_raw(true, 0, b"", 0, &alias, b"x"));
    assert!(
        raw.expect_v5_error_close().is_some(),
        "v5 gets a DISCONNECT reason"
    );
    assert_alive(&b);
}

#[tokio::test]
async fn outbound_topic_alias() {
    let b = Broker::start();
    let mut o = v5_opts(&b, "sub");
    o.set_topic_alias_max(Some(2));
    let (mut sub, _) = v5_with(o).await;
    sub.subscribe("oa/#", QoS5::AtLeastOnce).await;
    let mut publ = v5(&b, "pub").await;
    let topics = ["oa/1", "oa/2", "oa/1", "oa/3", "oa/2", "oa/3", "oa/1"];
    for t in topics {
        publ.client
            .publish(t, QoS5::AtLeastOnce, false, t)
            .await
            .unwrap();
        publ.puback().await;
    }
    // Resolve aliases as a client must (rumqttc reports the raw PUBLISH).
    let mut aliases: HashMap<u16, Bytes> = HashMap::new();
    let mut aliased = 0;
    for t in topics {
        let p = sub.publish().await;
        let alias = p.properties.as_ref().and_then(|pr| pr.topic_alias);
        if let Some(a) = alias {
            assert!((1..=2).contains(&a), "alias {a} above our maximum 2");
        }
        let topic = match (p.topic.is_empty(), alias) {
            (false, Some(a)) => {
                aliases.insert(a, p.topic.clone());
                p.topic.clone()
            }
            (false, None) => p.topic.clone(),
            (true, Some(a)) => {
                aliased += 1;
                aliases
                    .get(&a)
                    .cloned()
                    .expect("alias used before it was set")
            }
            (true, None) => panic!("empty topic without alias"),
        };
        assert_eq!(&topic[..], t.as_bytes());
        assert_eq!(&p.payload[..], t.as_bytes());
    }
    assert!(aliased > 0, "the broker never used an alias");
}

#[tokio::test]
async fn expired_message_not_delivered_to_offline_session() {
    let b = Broker::start();
    let mut o = v5_opts(&b, "me");
    o.set_clean_start(true)
        .set_session_expiry_interval(Some(60));
    let (mut s, _) = v5_with(o.clone()).await;
    s.subscribe("me/t", QoS5::AtLeastOnce).await;
    s.disconnect().await;

    let mut publ = v5(&b, "pub").await;
    let expiry = |secs| PublishProperties {
        message_expiry_interval: Some(secs),
        ..props5()
    };
    publ.client
        .publish_with_properties("me/t", QoS5::AtLeastOnce, false, "short", expiry(1))
        .await
        .unwrap();
    publ.puback().await;
    publ.client
        .publish_with_properties("me/t", QoS5::AtLeastOnce, false, "long", expiry(30))
        .await
        .unwrap();
    publ.puback().await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    o.set_clean_start(false);
    let (mut s, ack) = v5_with(o).await;
    assert!(ack.session_present);
    let p = s.publish().await;
    assert_eq!(
        &p.payload[..],
        b"long",
        "the expired message must be skipped"
    );
    let left = p
        .properties
        .and_then(|pr| pr.message_expiry_interval)
        .expect("expiry forwarded");
    assert!(
        (1..30).contains(&left),
        "remaining expiry {left} after 2 s must be below 30"
    );
    s.no_publish().await;
}

#[tokio::test]
async fn message_expiry_forwarded_to_live_subscriber() {
    let b = Broker::start();
    let mut s = v5(&b, "s").await;
    s.subscribe("mx/t", QoS5::AtLeastOnce).await;
    let publ = v5(&b, "pub").await;
    let props = PublishProperties {
        message_expiry_interval: Some(60),
        ..props5()
    };
    publ.client
        .publish_with_properties("mx/t", QoS5::AtLeastOnce, false, "x", props)
        .await
        .unwrap();
    let p = s.publish().await;
    let left = p
        .properties
        .and_then(|pr| pr.message_expiry_interval)
        .expect("expiry forwarded");
    assert!((1..=60).contains(&left), "remaining expiry {left}");
    // No expiry in → none out.
    publ.client
        .publish("mx/t", QoS5::AtLeastOnce, false, "y")
        .await
        .unwrap();
    let p = s.publish().await;
    assert_eq!(p.properties.and_then(|pr| pr.message_expiry_interval), None);
}

#[tokio::test]
async fn no_local() {
    let b = Broker::start();
    let mut me = v5(&b, "me").await;
    me.client
        .subscribe_many([Filter {
            path: "nl/t".into(),
            qos: QoS5::AtLeastOnce,
            nolocal: true,
            preserve_retain: false,
            retain_forward_rule: RetainForwardRule::OnEverySubscribe,
        }])
        .await
        .unwrap();
    me.suback().await;
    let mut other_sub = v5(&b, "other-sub").await;
    other_sub.subscribe("nl/t", QoS5::AtLeastOnce).await;

    me.client
        .publish("nl/t", QoS5::AtLeastOnce, false, "mine")
        .await
        .unwrap();
    assert_eq!(&other_sub.publish().await.payload[..], b"mine");
    me.no_publish().await;

    let other = v5(&b, "other").await;
    other
        .client
        .publish("nl/t", QoS5::AtLeastOnce, false, "theirs")
        .await
        .unwrap();
    assert_eq!(&me.publish().await.payload[..], b"theirs");
}

#[tokio::test]
async fn subscription_identifiers_delivered() {
    let b = Broker::start();
    let mut s = v5(&b, "s").await;
    for (filter, id) in [("si/+", 7), ("si/#", 9)] {
        let props = SubscribeProperties {
            id: Some(id),
            user_properties: vec![],
        };
        s.client
            .subscribe_with_properties(filter, QoS5::AtLeastOnce, props)
            .await
            .unwrap();
        s.suback().await;
    }
    s.subscribe("si/none", QoS5::AtLeastOnce).await;
    let publ = v5(&b, "pub").await;

    // Matches both: every identifier, in one or several copies.
    publ.client
        .publish("si/a", QoS5::AtLeastOnce, false, "a")
        .await
        .unwrap();
    let got = s.collect().await;
    assert!(!got.is_empty());
    let mut ids: Vec<usize> = got
        .iter()
        .flat_map(|p| {
            p.properties
                .clone()
                .unwrap_or_default()
                .subscription_identifiers
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids, [7, 9]);

    publ.client
        .publish("si/a/b", QoS5::AtLeastOnce, false, "ab")
        .await
        .unwrap();
    let p = s.publish().await;
    assert_eq!(
        p.properties.unwrap_or_default().subscription_identifiers,
        [9]
    );
}

#[tokio::test]
async fn publish_properties_passed_through() {
    let b = Broker::start();
    let mut s = v5(&b, "s").await;
    s.subscribe("pp/t", QoS5::AtLeastOnce).await;
    let publ = v5(&b, "pub").await;
    let props = PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        response_topic: Some("pp/reply".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
        user_properties: vec![
            ("a".into(), "1".into()),
            ("b".into(), "2".into()),
            ("a".into(), "3".into()),
        ],
        ..props5()
    };
    publ.client
        .publish_with_properties("pp/t", QoS5::AtLeastOnce, false, "{}", props.clone())
        .await
        .unwrap();
    let p = s.publish().await;
    let got = p.properties.expect("properties");
    assert_eq!(got.payload_format_indicator, Some(1));
    assert_eq!(got.content_type, props.content_type);
    assert_eq!(got.response_topic, props.response_topic);
    assert_eq!(got.correlation_data, props.correlation_data);
    assert_eq!(
        got.user_properties, props.user_properties,
        "order and duplicates kept"
    );
}

#[tokio::test]
async fn invalid_utf8_with_payload_format_indicator_gets_0x99() {
    let b = Broker::start();
    let mut s = v5(&b, "s").await;
    s.subscribe("pf/t", QoS5::AtLeastOnce).await;
    let mut publ = v5(&b, "pub").await;
    let utf8 = PublishProperties {
        payload_format_indicator: Some(1),
        ..props5()
    };
    publ.client
        .publish_with_properties(
            "pf/t",
            QoS5::AtLeastOnce,
            false,
            vec![0xC3, 0x28, 0xFF],
            utf8.clone(),
        )
        .await
        .unwrap();
    assert_eq!(
        publ.puback().await.reason,
        PubAckReason::PayloadFormatInvalid
    );
    s.no_publish().await;
    // Only that message was refused; the connection goes on.
    publ.client
        .publish_with_properties("pf/t", QoS5::AtLeastOnce, false, "ok ✓", utf8)
        .await
        .unwrap();
    assert_eq!(publ.puback().await.reason, PubAckReason::Success);
    assert_eq!(&s.publish().await.payload[..], "ok ✓".as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_maximum_exceeded_disconnects() {
    let b = Broker::start_with("[limits]\nreceive_maximum = 2\n");
    let mut raw = Raw::connect(&b);
    raw.send(&connect_raw(5, 0x02, 60, &[], b"greedy", &[]));
    let (b1, body) = raw.packet();
    assert_eq!((b1, body[1]), (0x20, 0));
    // CONNACK advertises Receive Maximum (0x21) = 2.
    assert!(body.windows(3).any(|w| w == [0x21, 0, 2]), "{body:02x?}");
    for pkid in 1..=3u16 {
        raw.send(&publish_raw(true, 0x04, b"rm/t", pkid, &[], b"q2"));
    }
    let got = raw.read_to_close();
    let pubrecs = split_packets(&got)
        .iter()
        .filter(|(b1, _)| *b1 == 0x50)
        .count();
    assert_eq!(pubrecs, 2, "the first two are accepted: {got:02x?}");
    assert_eq!(disconnect_reason(&got), Some(0x93), "{got:02x?}");
    assert_alive(&b);
}

#[tokio::test]
async fn client_maximum_packet_size_respected() {
    let b = Broker::start();
    let mut o = v5_opts(&b, "small");
    o.set_max_packet_size(Some(100));
    let (mut s, _) = v5_with(o).await;
    s.subscribe("mp/t", QoS5::AtLeastOnce).await;
    let mut publ = v5(&b, "pub").await;
    for payload in [vec![b'x'; 500], b"small".to_vec()] {
        publ.client
            .publish("mp/t", QoS5::AtLeastOnce, false, payload)
            .await
            .unwrap();
        publ.puback().await;
    }
    let p = s.publish().await;
    assert_eq!(
        &p.payload[..],
        b"small",
        "the 500-byte message must be skipped"
    );
    s.no_publish().await;
}

#[test]
fn broker_maximum_packet_size_v5() {
    let b =
        Broker::start_with("[limits]\nmax_packet_size = 1024\nmax_connect_packet_size = 1024\n");
    let mut raw = Raw::connect(&b);
    raw.send(&connect_raw(5, 0x02, 60, &[], b"big", &[]));
    let (b1, body) = raw.packet();
    assert_eq!((b1, body[1]), (0x20, 0));
    // CONNACK advertises Maximum Packet Size (0x27) = 1024.
    assert!(
        body.windows(5).any(|w| w == [0x27, 0, 0, 4, 0]),
        "{body:02x?}"
    );
    raw.send(&publish_raw(true, 0x02, b"mp/t", 1, &[], &[b'x'; 2000]));
    let got = raw.read_to_close();
    assert!(
        split_packets(&got).iter().all(|(b1, _)| *b1 == 0xE0),
        "no PUBACK for an oversized packet: {got:02x?}"
    );
    assert_eq!(disconnect_reason(&got), Some(0x95), "{got:02x?}");
    assert_alive(&b);
}

#[test]
fn broker_maximum_packet_size_v4() {
    let b =
        Broker::start_with("[limits]\nmax_packet_size = 1024\nmax_connect_packet_size = 1024\n");
    let mut raw = Raw::v4(&b, "big");
    raw.send(&publish_raw(false, 0x02, b"mp/t", 1, &[], &[b'x'; 2000]));
    raw.expect_silent_close();
    // Just under the limit is fine.
    let mut raw = Raw::v4(&b, "fits");
    raw.send(&publish_raw(false, 0x02, b"mp/t", 1, &[], &[b'x'; 1000]));
    let (b1, body) = raw.packet();
    assert_eq!((b1, body), (0x40, vec![0, 1]));
    assert_alive(&b);
}

#[tokio::test]
async fn authentication_method_refused_with_0x8c() {
    let b = Broker::start();
    let mut o = v5_opts(&b, "auth");
    o.set_authentication_method(Some("SCRAM-SHA-1".into()));
    let err = v5_refused(o).await;
    assert!(err.contains("BadAuthenticationMethod"), "{err}");
    let _ok = v5(&b, "after").await;
}

#[tokio::test]
async fn unsubscribe_reason_codes() {
    let b = Broker::start();
    let mut s = v5(&b, "s").await;
    s.subscribe("u/a", QoS5::AtLeastOnce).await;
    s.client.unsubscribe("u/a").await.unwrap();
    assert_eq!(s.unsuback().await.reasons, [UnsubAckReason::Success]);
    s.client.unsubscribe("u/b").await.unwrap();
    assert_eq!(
        s.unsuback().await.reasons,
        [UnsubAckReason::NoSubscriptionExisted]
    );
    // Unsubscribed for real.
    s.client.unsubscribe("u/a").await.unwrap();
    assert_eq!(
        s.unsuback().await.reasons,
        [UnsubAckReason::NoSubscriptionExisted]
    );
    let publ = v5(&b, "pub").await;
    publ.client
        .publish("u/a", QoS5::AtLeastOnce, false, "x")
        .await
        .unwrap();
    s.no_publish().await;
}

#[test]
fn topic_alias_above_maximum_gets_0x94() {
    let b = Broker::start();
    let mut raw = Raw::v5(&b, "alias");
    // Our Topic Alias Maximum is 32 (default).
    let mut alias = vec![0x23];
    alias.extend_from_slice(&33u16.to_be_bytes());
    raw.send(&publish_raw(true, 0, b"ta/t", 0, &alias, b"x"));
    assert_eq!(raw.expect_v5_error_close(), Some(0x94));
    assert_alive(&b);
}

#[test]
fn no_local_on_shared_subscription_is_a_protocol_error() {
    let b = Broker::start();
    let mut raw = Raw::v5(&b, "nl");
    // Options: QoS 1 | No Local [MQTT-3.8.3-4].
    raw.send(&crate::harness::subscribe_raw(
        true,
        1,
        &[(b"$share/g/t", 0x05)],
    ));
    assert_eq!(raw.expect_v5_error_close(), Some(0x82));
    assert_alive(&b);
}

#[test]
fn disconnect_setting_expiry_after_zero_is_a_protocol_error() {
    let b = Broker::start();
    // Connected with Session Expiry 0 (absent), DISCONNECT with 60 [MQTT-3.14.2-2].
    let mut raw = Raw::v5(&b, "se0");
    let mut body = vec![0x00];
    body.extend_from_slice(&crate::harness::props(&[0x11, 0, 0, 0, 60]));
    raw.send(&crate::harness::frame(0xE0, &body));
    assert_eq!(raw.expect_v5_error_close(), Some(0x82));
    assert_alive(&b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_with_expiry_zero_ends_the_session() {
    let b = Broker::start();
    let mut o = v5_opts(&b, "bye");
    o.set_clean_start(true)
        .set_session_expiry_interval(Some(60));
    let (mut c, _) = v5_with(o.clone()).await;
    c.subscribe("bye/t", QoS5::AtLeastOnce).await;
    c.kill();
    // Resume, then leave with Session Expiry 0 in DISCONNECT.
    let mut p = vec![0x11];
    p.extend_from_slice(&60u32.to_be_bytes());
    tokio::task::block_in_place(|| {
        let mut raw = Raw::connect(&b);
        raw.send(&connect_raw(5, 0x00, 60, &p, b"bye", &[]));
        let (b1, body) = raw.packet();
        assert_eq!((b1, body[0], body[1]), (0x20, 1, 0), "session present");
        let mut d = vec![0x00];
        d.extend_from_slice(&crate::harness::props(&[0x11, 0, 0, 0, 0]));
        raw.send(&crate::harness::frame(0xE0, &d));
        assert!(raw.read_to_close().is_empty());
    });
    o.set_clean_start(false);
    let (_c, ack) = v5_with(o).await;
    assert!(
        !ack.session_present,
        "DISCONNECT with expiry 0 ended the session"
    );
}

/// Outbound QoS 2 across a reconnect: after PUBREC, the broker resends PUBREL,
/// not the PUBLISH [MQTT-4.4.0-1].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_qos2_resumes_with_pubrel() {
    let b = Broker::start();
    let mut p = vec![0x11];
    p.extend_from_slice(&60u32.to_be_bytes());
    let connect =
        |clean: bool| connect_raw(5, if clean { 0x02 } else { 0x00 }, 60, &p, b"q2sub", &[]);
    let mut raw = Raw::connected(&b, &connect(true));
    raw.send(&crate::harness::subscribe_raw(true, 1, &[(b"q2o/t", 2)]));
    let (b1, _) = raw.packet();
    assert_eq!(b1, 0x90);
    let publ = v5(&b, "pub").await;
    publ.client
        .publish("q2o/t", QoS5::ExactlyOnce, false, "two-step")
        .await
        .unwrap();
    let pkid = tokio::task::block_in_place(|| {
        let (b1, body) = raw.packet();
        assert_eq!(b1 & 0xF6, 0x34, "QoS 2 PUBLISH, got {b1:#x}");
        let tlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
        let pkid = [body[2 + tlen], body[3 + tlen]];
        raw.send(&[0x50, 0x02, pkid[0], pkid[1]]);
        let (b1, body) = raw.packet();
        assert_eq!((b1, &body[..2]), (0x62, &pkid[..]), "PUBREL");
        pkid
    });
    drop(raw);
    tokio::task::block_in_place(|| {
        let mut raw = Raw::connect(&b);
        raw.send(&connect(false));
        let (b1, body) = raw.packet();
        assert_eq!((b1, body[0], body[1]), (0x20, 1, 0), "session present");
        let (b1, body) = raw.packet();
        assert_eq!(
            (b1, &body[..2]),
            (0x62, &pkid[..]),
            "PUBREL resent, not PUBLISH"
        );
        raw.send(&[0x70, 0x02, pkid[0], pkid[1]]);
        raw.ping();
    });
    drop(publ);
}
