//! Publish/subscribe at every QoS, both protocol versions.

use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;

use crate::clients::{v4, v5};
use crate::harness::Broker;

#[tokio::test]
async fn v4_qos0_1_2_roundtrip() {
    let b = Broker::start();
    let mut sub = v4(&b, "sub").await;
    let ack = sub.subscribe("a/+/c", QoS::ExactlyOnce).await;
    assert_eq!(
        ack.return_codes,
        vec![rumqttc::SubscribeReasonCode::Success(QoS::ExactlyOnce)]
    );
    let publ = v4(&b, "pub").await;
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        publ.client
            .publish("a/b/c", qos, false, vec![i as u8; 3])
            .await
            .unwrap();
        let p = sub.publish().await;
        assert_eq!(p.topic, "a/b/c");
        assert_eq!(p.qos, qos);
        assert_eq!(&p.payload[..], &[i as u8; 3]);
    }
}

#[tokio::test]
async fn v5_qos0_1_2_roundtrip() {
    let b = Broker::start();
    let mut sub = v5(&b, "sub5").await;
    sub.subscribe("x/#", QoS5::ExactlyOnce).await;
    let publ = v5(&b, "pub5").await;
    for qos in [QoS5::AtMostOnce, QoS5::AtLeastOnce, QoS5::ExactlyOnce] {
        publ.client
            .publish("x/y", qos, false, b"hello".to_vec())
            .await
            .unwrap();
        let p = sub.publish().await;
        assert_eq!(&p.topic[..], b"x/y");
        assert_eq!(p.qos, qos);
        assert_eq!(&p.payload[..], b"hello");
    }
}
