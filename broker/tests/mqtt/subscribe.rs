//! Subscription semantics: re-subscribing, overlapping filters, QoS downgrade.

use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;

use crate::clients::{v4, v4_opts, v4_with_ack, v5};
use crate::harness::{Broker, Raw, connect_raw};

#[tokio::test]
async fn resubscribe_replaces_the_subscription() {
    let b = Broker::start();
    let mut s = v4(&b, "s").await;
    s.subscribe("rs/t", QoS::AtLeastOnce).await;
    s.subscribe("rs/t", QoS::AtMostOnce).await;
    let publ = v4(&b, "pub").await;
    publ.client
        .publish("rs/t", QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    let got = s.collect().await;
    assert_eq!(got.len(), 1, "one subscription, one copy");
    assert_eq!(got[0].qos, QoS::AtMostOnce, "the new QoS applies");
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_at_highest_qos() {
    let b = Broker::start();
    let mut s = v5(&b, "s").await;
    s.subscribe("ov/+", QoS5::AtMostOnce).await;
    s.subscribe("ov/#", QoS5::AtLeastOnce).await;
    let publ = v5(&b, "pub").await;
    publ.client
        .publish("ov/a", QoS5::ExactlyOnce, false, "x")
        .await
        .unwrap();
    let got = s.collect().await;
    assert!(!got.is_empty());
    assert!(
        got.iter().any(|p| p.qos == QoS5::AtLeastOnce),
        "at least one copy at the higher granted QoS: {got:?}"
    );
    assert!(
        got.iter().all(|p| p.qos != QoS5::ExactlyOnce),
        "never above a granted QoS"
    );
}

#[tokio::test]
async fn qos_downgraded_to_granted() {
    let b = Broker::start();
    let mut s = v4(&b, "s").await;
    s.subscribe("dg/t", QoS::AtLeastOnce).await;
    let publ = v4(&b, "pub").await;
    publ.client
        .publish("dg/t", QoS::ExactlyOnce, false, "x")
        .await
        .unwrap();
    assert_eq!(s.publish().await.qos, QoS::AtLeastOnce);
    publ.client
        .publish("dg/t", QoS::AtMostOnce, false, "y")
        .await
        .unwrap();
    assert_eq!(s.publish().await.qos, QoS::AtMostOnce, "never upgraded");
}

#[tokio::test]
async fn v4_empty_client_id() {
    let b = Broker::start();
    let (_c, ack) = v4_with_ack(v4_opts(&b, "")).await;
    assert_eq!(
        ack.code,
        rumqttc::ConnectReturnCode::Success,
        "clean session: accepted"
    );
    // Clean session 0 with an empty id: return code 2 [MQTT-3.1.3-8].
    let mut raw = Raw::connect(&b);
    raw.send(&connect_raw(4, 0x00, 60, &[], b"", &[]));
    assert_eq!(raw.read_to_close(), [0x20, 0x02, 0x00, 0x02]);
}
