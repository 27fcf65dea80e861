//! `$SYS/broker/...` topics.

use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;

use crate::clients::{v4, v5};
use crate::harness::Broker;

#[tokio::test]
async fn sys_topics_are_published_periodically() {
    let b = Broker::start_with("[sys]\ninterval = \"200ms\"\n");
    let mut s = v5(&b, "watcher").await;
    s.subscribe("$SYS/broker/#", QoS5::AtMostOnce).await;
    let _others = [v5(&b, "o1").await, v5(&b, "o2").await];
    // Values refresh: the connected count climbs to 3 (watcher + 2).
    let mut seen = std::collections::BTreeMap::new();
    loop {
        let p = s.publish().await;
        let topic = String::from_utf8(p.topic.to_vec()).unwrap();
        let value = String::from_utf8(p.payload.to_vec()).unwrap();
        seen.insert(topic, value);
        if seen
            .get("$SYS/broker/clients/connected")
            .map(String::as_str)
            == Some("3")
        {
            break;
        }
    }
    let version = &seen["$SYS/broker/version"];
    assert!(version.starts_with("starling "), "{version}");
    let uptime = &seen["$SYS/broker/uptime"];
    assert!(uptime.ends_with(" seconds"), "{uptime}");
    assert!(seen.contains_key("$SYS/broker/messages/received"));
}

#[tokio::test]
async fn late_subscriber_gets_retained_sys_values_at_once() {
    // One refresh at start-up, then none for an hour: whatever arrives is
    // the retained copy.
    let b = Broker::start_with("[sys]\ninterval = \"1h\"\n");
    // Make sure the start-up refresh has happened.
    let mut first = v5(&b, "first").await;
    first
        .subscribe("$SYS/broker/version", QoS5::AtMostOnce)
        .await;
    first.publish().await;
    let mut s = v4(&b, "late").await;
    s.subscribe("$SYS/broker/#", QoS::AtMostOnce).await;
    let got = s.collect().await;
    let topics: Vec<&str> = got.iter().map(|p| p.topic.as_str()).collect();
    for t in [
        "$SYS/broker/version",
        "$SYS/broker/uptime",
        "$SYS/broker/clients/connected",
    ] {
        assert!(topics.contains(&t), "{t} missing from {topics:?}");
    }
    for p in &got {
        assert!(p.retain, "{} arrived without the retain flag", p.topic);
    }
}

#[tokio::test]
async fn sys_interval_zero_disables_sys() {
    let b = Broker::start_with("[sys]\ninterval = \"0s\"\n");
    let mut s = v5(&b, "s").await;
    s.subscribe("$SYS/#", QoS5::AtMostOnce).await;
    s.no_publish().await;
}

#[tokio::test]
async fn sys_connected_count_follows_disconnects() {
    let b = Broker::start_with("[sys]\ninterval = \"100ms\"\n");
    let mut a = v4(&b, "a").await;
    let _b2 = v4(&b, "b").await;
    crate::clients::wait_connected(&b, 2).await;
    a.disconnect().await;
    crate::clients::wait_connected(&b, 1).await;
}

#[tokio::test]
async fn clients_cannot_spoof_sys_topics() {
    // No periodic values: anything that arrives would be the spoof.
    let b = Broker::start_with("[sys]\ninterval = \"0s\"\n");
    let mut s = v5(&b, "watcher").await;
    s.subscribe("$SYS/broker/#", QoS5::AtMostOnce).await;
    let mut p = v5(&b, "spoofer").await;
    p.client
        .publish(
            "$SYS/broker/uptime",
            QoS5::AtLeastOnce,
            false,
            b"0 seconds".to_vec(),
        )
        .await
        .unwrap();
    let ack = p.puback().await;
    assert_eq!(
        ack.reason,
        rumqttc::v5::mqttbytes::v5::PubAckReason::NotAuthorized,
        "{ack:?}"
    );
    let mut p4 = v4(&b, "spoofer4").await;
    p4.client
        .publish(
            "$SYS/broker/version",
            QoS::AtLeastOnce,
            true,
            b"fake".to_vec(),
        )
        .await
        .unwrap();
    p4.puback().await;
    s.no_publish().await;
}
