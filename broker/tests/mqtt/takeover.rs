//! A second CONNECT with the same client id takes the session over.

use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;

use crate::clients::{v4, v4_opts, v4_with_ack, v5, v5_opts, v5_with};
use crate::harness::Broker;

#[tokio::test]
async fn v5_old_connection_gets_session_taken_over() {
    let b = Broker::start();
    let mut old = v5(&b, "same").await;
    let mut new = v5(&b, "same").await;
    let why = old.closed().await;
    assert!(
        why.contains("SessionTakenOver"),
        "old connection ended with {why}"
    );
    // The new connection works.
    new.subscribe("tk/t", QoS5::AtLeastOnce).await;
    let publ = v5(&b, "pub").await;
    publ.client
        .publish("tk/t", QoS5::AtLeastOnce, false, "hi")
        .await
        .unwrap();
    assert_eq!(&new.publish().await.payload[..], b"hi");
}

#[tokio::test]
async fn v4_old_connection_is_closed() {
    let b = Broker::start();
    let mut old = v4(&b, "same").await;
    let mut new = v4(&b, "same").await;
    old.closed().await;
    new.subscribe("tk/t", QoS::AtLeastOnce).await;
    let publ = v4(&b, "pub").await;
    publ.client
        .publish("tk/t", QoS::AtLeastOnce, false, "hi")
        .await
        .unwrap();
    assert_eq!(&new.publish().await.payload[..], b"hi");
}

#[tokio::test]
async fn v4_takeover_keeps_the_persistent_session() {
    let b = Broker::start();
    let mut o = v4_opts(&b, "same");
    o.set_clean_session(false);
    let (mut old, _) = v4_with_ack(o.clone()).await;
    old.subscribe("tk/t", QoS::AtLeastOnce).await;
    let (mut new, ack) = v4_with_ack(o).await;
    assert!(ack.session_present);
    old.closed().await;
    // No SUBSCRIBE on the new connection: the session's subscription serves it.
    let publ = v4(&b, "pub").await;
    publ.client
        .publish("tk/t", QoS::AtLeastOnce, false, "still here")
        .await
        .unwrap();
    assert_eq!(&new.publish().await.payload[..], b"still here");
    new.no_publish().await;
}

#[tokio::test]
async fn v5_takeover_with_clean_start_0_keeps_the_session() {
    let b = Broker::start();
    let mut o = v5_opts(&b, "same");
    o.set_clean_start(false)
        .set_session_expiry_interval(Some(60));
    let (mut old, _) = v5_with(o.clone()).await;
    old.subscribe("tk/t", QoS5::AtLeastOnce).await;
    let (mut new, ack) = v5_with(o).await;
    assert!(ack.session_present);
    let why = old.closed().await;
    assert!(
        why.contains("SessionTakenOver"),
        "old connection ended with {why}"
    );
    let publ = v5(&b, "pub").await;
    publ.client
        .publish("tk/t", QoS5::AtLeastOnce, false, "still here")
        .await
        .unwrap();
    assert_eq!(&new.publish().await.payload[..], b"still here");
    new.no_publish().await;
}

#[tokio::test]
async fn v5_takeover_with_clean_start_1_drops_the_session() {
    let b = Broker::start();
    let mut o = v5_opts(&b, "same");
    o.set_clean_start(false)
        .set_session_expiry_interval(Some(60));
    let (mut old, _) = v5_with(o.clone()).await;
    old.subscribe("tk/t", QoS5::AtLeastOnce).await;
    o.set_clean_start(true);
    let (mut new, ack) = v5_with(o).await;
    assert!(!ack.session_present);
    old.closed().await;
    let publ = v5(&b, "pub").await;
    publ.client
        .publish("tk/t", QoS5::AtLeastOnce, false, "nobody")
        .await
        .unwrap();
    new.no_publish().await;
}
