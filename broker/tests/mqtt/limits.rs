//! Configured limits as clients see them.

use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{Filter, PubAckReason, SubscribeReasonCode};

use crate::clients::{
    v4, v4_opts, v4_refused, v4_with, v4_with_ack, v5, v5_opts, v5_refused, v5_with,
};
use crate::harness::{Broker, Raw, connect_v4};

#[tokio::test]
async fn v5_max_subscriptions_per_client() {
    let b = Broker::start_with("[limits]\nmax_subscriptions_per_client = 2\n");
    let mut c = v5(&b, "c").await;
    c.client
        .subscribe_many(["s/1", "s/2", "s/3"].map(|f| Filter::new(f, QoS5::AtLeastOnce)))
        .await
        .unwrap();
    let ack = c.suback().await;
    let ok = SubscribeReasonCode::Success(QoS5::AtLeastOnce);
    assert_eq!(
        ack.return_codes,
        [ok, ok, SubscribeReasonCode::QuotaExceeded]
    );
    // Re-subscribing an existing filter is not a new subscription.
    let ack = c.subscribe("s/1", QoS5::AtMostOnce).await;
    assert_eq!(
        ack.return_codes,
        [SubscribeReasonCode::Success(QoS5::AtMostOnce)]
    );
}

#[tokio::test]
async fn v4_max_subscriptions_per_client() {
    let b = Broker::start_with("[limits]\nmax_subscriptions_per_client = 2\n");
    let mut c = v4(&b, "c").await;
    c.client
        .subscribe_many(
            ["s/1", "s/2", "s/3"]
                .map(|f| rumqttc::SubscribeFilter::new(f.into(), QoS::AtLeastOnce)),
        )
        .await
        .unwrap();
    let ack = c.suback().await;
    let ok = rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce);
    assert_eq!(
        ack.return_codes,
        [ok, ok, rumqttc::SubscribeReasonCode::Failure]
    );
}

#[tokio::test]
async fn v5_max_retained_messages() {
    let b = Broker::start_with("[limits]\nmax_retained_messages = 1\n");
    let mut publ = v5(&b, "pub").await;
    let mut retain = async |topic: &str, payload: &str| {
        publ.client
            .publish(topic, QoS5::AtLeastOnce, true, payload.to_owned())
            .await
            .unwrap();
        publ.puback().await.reason
    };
    assert_eq!(retain("rt/1", "a").await, PubAckReason::Success);
    assert_eq!(retain("rt/2", "b").await, PubAckReason::QuotaExceeded);
    // Replacing the stored one is within the quota.
    assert_eq!(retain("rt/1", "c").await, PubAckReason::Success);
    let mut s = v5(&b, "s").await;
    s.subscribe("rt/#", QoS5::AtLeastOnce).await;
    let got = s.collect().await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        (&got[0].topic[..], &got[0].payload[..]),
        (&b"rt/1"[..], &b"c"[..])
    );
}

#[tokio::test]
async fn v5_max_connections() {
    let b = Broker::start_with("[limits]\nmax_connections = 1\n");
    let _first = v5(&b, "first").await;
    let err = v5_refused(v5_opts(&b, "second")).await;
    assert!(err.contains("QuotaExceeded"), "{err}");
}

#[tokio::test]
async fn v4_max_connections() {
    let b = Broker::start_with("[limits]\nmax_connections = 1\n");
    let _first = v4(&b, "first").await;
    let err = v4_refused(v4_opts(&b, "second")).await;
    assert!(
        err.contains("ServiceUnavailable") || err.contains("unavailable"),
        "{err}"
    );
    // On the wire: return code 3, Server unavailable.
    let mut raw = Raw::connect(&b);
    raw.send(&connect_v4("third"));
    assert_eq!(raw.read_to_close(), [0x20, 0x02, 0x00, 0x03]);
}

#[tokio::test]
async fn v4_max_inflight_holds_back_until_acked() {
    let b = Broker::start_with("[limits]\nmax_inflight = 2\n");
    let mut o = v4_opts(&b, "slow");
    o.set_manual_acks(true);
    let mut slow = v4_with(o).await;
    slow.subscribe("mi/t", QoS::AtLeastOnce).await;
    let mut publ = v4(&b, "pub").await;
    for i in 0..5 {
        publ.client
            .publish("mi/t", QoS::AtLeastOnce, false, format!("{i}"))
            .await
            .unwrap();
        publ.puback().await;
    }
    let first = slow.collect().await;
    assert_eq!(first.len(), 2, "only the in-flight window is sent");
    slow.client.ack(&first[0]).await.unwrap();
    let next = slow.collect().await;
    assert_eq!(next.len(), 1, "one ack opens one slot");
    for p in first[1..].iter().chain(&next) {
        slow.client.ack(p).await.unwrap();
    }
    let rest = slow.collect().await;
    let payloads: Vec<&[u8]> = first
        .iter()
        .chain(&next)
        .chain(&rest)
        .map(|p| &p.payload[..])
        .collect();
    assert_eq!(
        payloads,
        [b"0", b"1", b"2", b"3", b"4"],
        "all delivered, in order"
    );
}

#[tokio::test]
async fn v5_max_inflight_holds_back_persistent_session() {
    let b = Broker::start_with("[limits]\nmax_inflight = 2\n");
    let mut o = v5_opts(&b, "slow");
    o.set_manual_acks(true)
        .set_clean_start(true)
        .set_session_expiry_interval(Some(60));
    let (mut slow, _) = v5_with(o).await;
    slow.subscribe("mi/t", QoS5::AtLeastOnce).await;
    let mut publ = v5(&b, "pub").await;
    for i in 0..5 {
        publ.client
            .publish("mi/t", QoS5::AtLeastOnce, false, format!("{i}"))
            .await
            .unwrap();
        publ.puback().await;
    }
    let first = slow.collect().await;
    assert_eq!(first.len(), 2, "only the in-flight window is sent");
    slow.client.ack(&first[0]).await.unwrap();
    let next = slow.collect().await;
    assert_eq!(next.len(), 1, "one ack opens one slot");
}

#[tokio::test]
async fn max_queued_messages_bounds_an_offline_session() {
    let b = Broker::start_with("[limits]\nmax_queued_messages = 3\n");
    let mut o = v4_opts(&b, "away");
    o.set_clean_session(false);
    let (mut s, _) = v4_with_ack(o.clone()).await;
    s.subscribe("mq/t", QoS::AtLeastOnce).await;
    s.disconnect().await;
    let mut publ = v4(&b, "pub").await;
    for i in 0..10 {
        publ.client
            .publish("mq/t", QoS::AtLeastOnce, false, format!("{i}"))
            .await
            .unwrap();
        publ.puback().await;
    }
    let (mut s, ack) = v4_with_ack(o).await;
    assert!(ack.session_present);
    assert_eq!(s.collect().await.len(), 3);
}
