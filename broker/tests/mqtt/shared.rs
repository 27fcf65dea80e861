//! Shared subscriptions (`$share/{group}/{filter}`).

use std::collections::BTreeSet;

use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode;

use crate::clients::{v4, v5, wait_connected};
use crate::harness::Broker;

const SYS_FAST: &str = "[sys]\ninterval = \"100ms\"\n";

#[tokio::test]
async fn v5_each_message_goes_to_exactly_one_member() {
    let b = Broker::start();
    let mut members = Vec::new();
    for i in 0..3 {
        let mut m = v5(&b, &format!("m{i}")).await;
        m.subscribe("$share/g/sh/t", QoS5::AtLeastOnce).await;
        members.push(m);
    }
    let mut publ = v5(&b, "pub").await;
    for i in 0..30 {
        publ.client
            .publish("sh/t", QoS5::AtLeastOnce, false, format!("{i}"))
            .await
            .unwrap();
        publ.puback().await;
    }
    let mut all = BTreeSet::new();
    let mut total = 0;
    for m in &mut members {
        let got = m.collect().await;
        assert!(!got.is_empty(), "every member gets some of the 30 messages");
        for p in got {
            assert_eq!(&p.topic[..], b"sh/t");
            total += 1;
            all.insert(String::from_utf8(p.payload.to_vec()).unwrap());
        }
    }
    assert_eq!(
        total, 30,
        "each message delivered exactly once in the group"
    );
    assert_eq!(all.len(), 30);
}

#[tokio::test]
async fn v4_shared_subscription() {
    let b = Broker::start();
    let mut m1 = v4(&b, "m1").await;
    let mut m2 = v4(&b, "m2").await;
    for m in [&mut m1, &mut m2] {
        let ack = m.subscribe("$share/g/sh/t", QoS::AtLeastOnce).await;
        assert_eq!(
            ack.return_codes,
            [rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
        );
    }
    let mut publ = v4(&b, "pub").await;
    for i in 0..20 {
        publ.client
            .publish("sh/t", QoS::AtLeastOnce, false, format!("{i}"))
            .await
            .unwrap();
        publ.puback().await;
    }
    let a = m1.collect().await.len();
    let c = m2.collect().await.len();
    assert!(a > 0 && c > 0, "both members get some: {a} + {c}");
    assert_eq!(a + c, 20);
}

#[tokio::test]
async fn disconnected_member_is_skipped() {
    let b = Broker::start_with(SYS_FAST);
    let mut m1 = v5(&b, "m1").await;
    m1.subscribe("$share/g/sh/t", QoS5::AtLeastOnce).await;
    let mut m2 = v5(&b, "m2").await;
    m2.subscribe("$share/g/sh/t", QoS5::AtLeastOnce).await;
    let mut publ = v5(&b, "pub").await;
    m2.disconnect().await;
    // m1 and the publisher remain.
    wait_connected(&b, 2).await;
    for i in 0..10 {
        publ.client
            .publish("sh/t", QoS5::AtLeastOnce, false, format!("{i}"))
            .await
            .unwrap();
        publ.puback().await;
    }
    assert_eq!(
        m1.collect().await.len(),
        10,
        "the remaining member gets them all"
    );
}

#[tokio::test]
async fn killed_member_is_skipped() {
    let b = Broker::start_with(SYS_FAST);
    let mut m1 = v4(&b, "m1").await;
    m1.subscribe("$share/g/sh/t", QoS::AtLeastOnce).await;
    let mut m2 = v4(&b, "m2").await;
    m2.subscribe("$share/g/sh/t", QoS::AtLeastOnce).await;
    let mut publ = v4(&b, "pub").await;
    m2.kill();
    wait_connected(&b, 2).await;
    for i in 0..10 {
        publ.client
            .publish("sh/t", QoS::AtLeastOnce, false, format!("{i}"))
            .await
            .unwrap();
        publ.puback().await;
    }
    assert_eq!(m1.collect().await.len(), 10);
}

#[tokio::test]
async fn shared_and_plain_subscribers_both_receive() {
    let b = Broker::start();
    let mut m = v5(&b, "member").await;
    m.subscribe("$share/g/sp/t", QoS5::AtLeastOnce).await;
    let mut plain = v5(&b, "plain").await;
    plain.subscribe("sp/t", QoS5::AtLeastOnce).await;
    let publ = v5(&b, "pub").await;
    for i in 0..5 {
        publ.client
            .publish("sp/t", QoS5::AtLeastOnce, false, format!("{i}"))
            .await
            .unwrap();
    }
    assert_eq!(m.collect().await.len(), 5);
    assert_eq!(plain.collect().await.len(), 5);
}

#[tokio::test]
async fn shared_subscription_gets_no_retained_messages() {
    let b = Broker::start();
    let mut publ = v5(&b, "pub").await;
    publ.client
        .publish("sr/t", QoS5::AtLeastOnce, true, "retained")
        .await
        .unwrap();
    publ.puback().await;
    let mut m = v5(&b, "member").await;
    m.subscribe("$share/g/sr/t", QoS5::AtLeastOnce).await;
    m.no_publish().await;
}

const INVALID_SHARES: [&str; 3] = ["$share//x", "$share/+/x", "$share/g"];

#[tokio::test]
async fn v5_invalid_share_filters_get_0x8f() {
    let b = Broker::start();
    let mut c = v5(&b, "c").await;
    for f in INVALID_SHARES {
        let ack = c.subscribe(f, QoS5::AtLeastOnce).await;
        assert_eq!(
            ack.return_codes,
            [SubscribeReasonCode::TopicFilterInvalid],
            "{f}"
        );
    }
    // Still connected and usable.
    let ack = c.subscribe("$share/g/ok", QoS5::AtLeastOnce).await;
    assert_eq!(
        ack.return_codes,
        [SubscribeReasonCode::Success(QoS5::AtLeastOnce)]
    );
}

#[tokio::test]
async fn v4_invalid_share_filters_get_0x80() {
    let b = Broker::start();
    let mut c = v4(&b, "c").await;
    for f in INVALID_SHARES {
        let ack = c.subscribe(f, QoS::AtLeastOnce).await;
        assert_eq!(
            ack.return_codes,
            [rumqttc::SubscribeReasonCode::Failure],
            "{f}"
        );
    }
    let ack = c.subscribe("$share/g/ok", QoS::AtLeastOnce).await;
    assert_eq!(
        ack.return_codes,
        [rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
}
