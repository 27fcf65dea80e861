//! Persistent sessions: offline queueing, clean session/start, expiry and
//! resending unacknowledged messages.

use std::time::Duration;

use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;

use crate::clients::{V4, V5, v4, v4_opts, v4_with_ack, v5, v5_opts, v5_with};
use crate::harness::Broker;

async fn v4_session(b: &Broker, id: &str, clean: bool, manual_acks: bool) -> (V4, bool) {
    let mut o = v4_opts(b, id);
    o.set_clean_session(clean).set_manual_acks(manual_acks);
    let (c, ack) = v4_with_ack(o).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    (c, ack.session_present)
}

async fn v5_session(
    b: &Broker,
    id: &str,
    clean: bool,
    expiry: u32,
    manual_acks: bool,
) -> (V5, bool) {
    let mut o = v5_opts(b, id);
    o.set_clean_start(clean)
        .set_session_expiry_interval(Some(expiry))
        .set_manual_acks(manual_acks);
    let (c, ack) = v5_with(o).await;
    assert_eq!(
        ack.code,
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
    );
    (c, ack.session_present)
}

#[tokio::test]
async fn v4_persistent_session_queues_while_offline() {
    let b = Broker::start();
    let (mut s, present) = v4_session(&b, "ps", false, false).await;
    assert!(!present);
    s.subscribe("ps/t", QoS::AtLeastOnce).await;
    s.disconnect().await;

    let mut publ = v4(&b, "pub").await;
    publ.client
        .publish("ps/t", QoS::AtLeastOnce, false, "while away")
        .await
        .unwrap();
    publ.puback().await;

    let (mut s, present) = v4_session(&b, "ps", false, false).await;
    assert!(present, "the session must be resumed");
    let p = s.publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.qos),
        ("ps/t", &b"while away"[..], QoS::AtLeastOnce)
    );
    // The subscription itself survived too.
    publ.client
        .publish("ps/t", QoS::AtLeastOnce, false, "live")
        .await
        .unwrap();
    assert_eq!(&s.publish().await.payload[..], b"live");
}

#[tokio::test]
async fn v4_clean_session_discards_the_session() {
    let b = Broker::start();
    let (mut s, _) = v4_session(&b, "cs", false, false).await;
    s.subscribe("cs/t", QoS::AtLeastOnce).await;
    s.disconnect().await;
    let mut publ = v4(&b, "pub").await;
    publ.client
        .publish("cs/t", QoS::AtLeastOnce, false, "queued")
        .await
        .unwrap();
    publ.puback().await;

    let (mut s, present) = v4_session(&b, "cs", true, false).await;
    assert!(!present);
    s.no_publish().await;
    s.disconnect().await;
    // Nothing of the old session is left for a persistent reconnect either.
    let (mut s, present) = v4_session(&b, "cs", false, false).await;
    assert!(!present);
    publ.client
        .publish("cs/t", QoS::AtLeastOnce, false, "after")
        .await
        .unwrap();
    s.no_publish().await;
}

#[tokio::test]
async fn v5_session_resumes_within_expiry() {
    let b = Broker::start();
    let (mut s, present) = v5_session(&b, "se", true, 60, false).await;
    assert!(!present);
    s.subscribe("se/t", QoS5::AtLeastOnce).await;
    s.disconnect().await;
    let mut publ = v5(&b, "pub").await;
    publ.client
        .publish("se/t", QoS5::AtLeastOnce, false, "kept")
        .await
        .unwrap();
    publ.puback().await;
    let (mut s, present) = v5_session(&b, "se", false, 60, false).await;
    assert!(present);
    assert_eq!(&s.publish().await.payload[..], b"kept");
}

#[tokio::test]
async fn v5_session_expires() {
    let b = Broker::start_with("[session]\nexpiry_check_interval = \"100ms\"\n");
    let (mut s, _) = v5_session(&b, "se", true, 1, false).await;
    s.subscribe("se/t", QoS5::AtLeastOnce).await;
    s.disconnect().await;
    let mut publ = v5(&b, "pub").await;
    publ.client
        .publish("se/t", QoS5::AtLeastOnce, false, "queued")
        .await
        .unwrap();
    publ.puback().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (mut s, present) = v5_session(&b, "se", false, 60, false).await;
    assert!(!present, "the session expired after 1 s");
    s.no_publish().await;
}

#[tokio::test]
async fn v5_clean_start_discards_the_session() {
    let b = Broker::start();
    let (mut s, _) = v5_session(&b, "cst", true, 60, false).await;
    s.subscribe("cst/t", QoS5::AtLeastOnce).await;
    s.disconnect().await;
    let mut publ = v5(&b, "pub").await;
    publ.client
        .publish("cst/t", QoS5::AtLeastOnce, false, "queued")
        .await
        .unwrap();
    publ.puback().await;
    let (mut s, present) = v5_session(&b, "cst", true, 60, false).await;
    assert!(!present);
    s.no_publish().await;
}

#[tokio::test]
async fn v4_unacknowledged_message_is_resent_with_dup() {
    let b = Broker::start();
    let (mut s, _) = v4_session(&b, "inf", false, true).await;
    s.subscribe("inf/t", QoS::AtLeastOnce).await;
    let mut publ = v4(&b, "pub").await;
    publ.client
        .publish("inf/t", QoS::AtLeastOnce, false, "ack me")
        .await
        .unwrap();
    publ.puback().await;
    let first = s.publish().await;
    assert!(!first.dup);
    // Leave without acknowledging it.
    s.disconnect().await;

    let (mut s, present) = v4_session(&b, "inf", false, false).await;
    assert!(present);
    let again = s.publish().await;
    assert_eq!(&again.payload[..], b"ack me");
    assert!(again.dup, "a resent PUBLISH carries DUP=1");
    assert_eq!(again.qos, QoS::AtLeastOnce);
    assert_eq!(again.pkid, first.pkid, "resent with the same packet id");
    // Acknowledged now: a later reconnect gets nothing.
    s.no_publish().await;
    s.disconnect().await;
    let (mut s, _) = v4_session(&b, "inf", false, false).await;
    s.no_publish().await;
}

#[tokio::test]
async fn v5_unacknowledged_message_is_resent_with_dup() {
    let b = Broker::start();
    let (mut s, _) = v5_session(&b, "inf5", true, 60, true).await;
    s.subscribe("inf/t", QoS5::ExactlyOnce).await;
    let mut publ = v5(&b, "pub").await;
    publ.client
        .publish("inf/t", QoS5::AtLeastOnce, false, "ack me")
        .await
        .unwrap();
    publ.puback().await;
    let first = s.publish().await;
    assert!(!first.dup);
    s.disconnect().await;

    let (mut s, present) = v5_session(&b, "inf5", false, 60, false).await;
    assert!(present);
    let again = s.publish().await;
    assert_eq!(&again.payload[..], b"ack me");
    assert!(again.dup, "a resent PUBLISH carries DUP=1");
    assert_eq!(again.pkid, first.pkid);
    s.no_publish().await;
}

#[tokio::test]
async fn unsubscribe_is_remembered_by_the_session() {
    let b = Broker::start();
    let (mut s, _) = v4_session(&b, "un", false, false).await;
    s.subscribe("un/a", QoS::AtLeastOnce).await;
    s.subscribe("un/b", QoS::AtLeastOnce).await;
    s.client.unsubscribe("un/a").await.unwrap();
    s.unsuback().await;
    s.disconnect().await;
    let mut publ = v4(&b, "pub").await;
    for t in ["un/a", "un/b"] {
        publ.client
            .publish(t, QoS::AtLeastOnce, false, t)
            .await
            .unwrap();
        publ.puback().await;
    }
    let (mut s, present) = v4_session(&b, "un", false, false).await;
    assert!(present);
    let got = s.collect().await;
    let topics: Vec<&str> = got.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(topics, ["un/b"]);
}

#[tokio::test]
async fn offline_messages_keep_their_order() {
    let b = Broker::start();
    let (mut s, _) = v4_session(&b, "ord", false, false).await;
    s.subscribe("ord/t", QoS::ExactlyOnce).await;
    s.disconnect().await;
    let mut publ = v4(&b, "pub").await;
    for i in 0..20 {
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        publ.client
            .publish("ord/t", qos, false, format!("{i}"))
            .await
            .unwrap();
    }
    // Wait until all 20 are acknowledged (10 PUBACK + 10 PUBCOMP).
    let mut acks = 0;
    while acks < 20 {
        if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_) | rumqttc::Packet::PubComp(_)) =
            publ.next().await
        {
            acks += 1;
        }
    }
    let (mut s, _) = v4_session(&b, "ord", false, false).await;
    let got: Vec<String> = s
        .collect()
        .await
        .iter()
        .map(|p| String::from_utf8(p.payload.to_vec()).unwrap())
        .collect();
    let want: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
}
