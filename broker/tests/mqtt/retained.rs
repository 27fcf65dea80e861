//! Retained messages: set, replace, clear, wildcard delivery, v5 retain
//! handling and retain-as-published, `$SYS` isolation.

use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{Filter, RetainForwardRule};

use crate::clients::{V5, v4, v5, v5_opts, v5_with};
use crate::harness::Broker;

fn filter(path: &str, rule: RetainForwardRule, rap: bool) -> Filter {
    Filter {
        path: path.into(),
        qos: QoS5::AtLeastOnce,
        nolocal: false,
        preserve_retain: rap,
        retain_forward_rule: rule,
    }
}

async fn subscribe_with(c: &mut V5, f: Filter) {
    c.client.subscribe_many([f]).await.unwrap();
    c.suback().await;
}

#[tokio::test]
async fn v4_retained_set_replace_clear() {
    let b = Broker::start();
    let mut publ = v4(&b, "pub").await;
    publ.client
        .publish("r/a", QoS::AtLeastOnce, true, "one")
        .await
        .unwrap();
    publ.puback().await;

    let mut s1 = v4(&b, "s1").await;
    s1.subscribe("r/a", QoS::AtLeastOnce).await;
    let p = s1.publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.retain),
        ("r/a", &b"one"[..], true)
    );
    s1.no_publish().await;

    // Replace: a new subscriber gets only the latest value.
    publ.client
        .publish("r/a", QoS::AtLeastOnce, true, "two")
        .await
        .unwrap();
    publ.puback().await;
    // The established subscription gets it live, retain flag cleared [MQTT-3.3.1-9].
    let p = s1.publish().await;
    assert_eq!((&p.payload[..], p.retain), (&b"two"[..], false));
    let mut s2 = v4(&b, "s2").await;
    s2.subscribe("r/a", QoS::AtLeastOnce).await;
    let p = s2.publish().await;
    assert_eq!((&p.payload[..], p.retain), (&b"two"[..], true));
    s2.no_publish().await;

    // Clear with an empty payload: delivered as a normal message, then gone.
    publ.client
        .publish("r/a", QoS::AtLeastOnce, true, "")
        .await
        .unwrap();
    publ.puback().await;
    let p = s1.publish().await;
    assert_eq!((&p.payload[..], p.retain), (&b""[..], false));
    let mut s3 = v4(&b, "s3").await;
    s3.subscribe("r/a", QoS::AtLeastOnce).await;
    s3.no_publish().await;
}

#[tokio::test]
async fn v5_retained_set_replace_clear() {
    let b = Broker::start();
    let mut publ = v5(&b, "pub").await;
    for payload in ["one", "two"] {
        publ.client
            .publish("r5/a", QoS5::AtLeastOnce, true, payload)
            .await
            .unwrap();
        publ.puback().await;
    }
    let mut s1 = v5(&b, "s1").await;
    s1.subscribe("r5/a", QoS5::AtLeastOnce).await;
    let p = s1.publish().await;
    assert_eq!(
        (&p.topic[..], &p.payload[..], p.retain),
        (&b"r5/a"[..], &b"two"[..], true)
    );
    assert_eq!(p.qos, QoS5::AtLeastOnce);
    s1.no_publish().await;

    publ.client
        .publish("r5/a", QoS5::AtLeastOnce, true, "")
        .await
        .unwrap();
    publ.puback().await;
    let mut s2 = v5(&b, "s2").await;
    s2.subscribe("r5/a", QoS5::AtLeastOnce).await;
    s2.no_publish().await;
}

#[tokio::test]
async fn v4_wildcard_subscribe_receives_every_retained() {
    let b = Broker::start();
    let mut publ = v4(&b, "pub").await;
    for t in ["w/1", "w/2", "w/3/x", "other/1"] {
        publ.client
            .publish(t, QoS::AtLeastOnce, true, t)
            .await
            .unwrap();
        publ.puback().await;
    }
    let mut s = v4(&b, "s").await;
    s.subscribe("w/#", QoS::AtMostOnce).await;
    let got = s.collect().await;
    let mut topics: Vec<&str> = got.iter().map(|p| p.topic.as_str()).collect();
    topics.sort_unstable();
    assert_eq!(topics, ["w/1", "w/2", "w/3/x"]);
    assert!(
        got.iter()
            .all(|p| p.retain && p.payload[..] == *p.topic.as_bytes())
    );
}

#[tokio::test]
async fn v5_wildcard_subscribe_receives_every_retained() {
    let b = Broker::start();
    let mut publ = v5(&b, "pub").await;
    for t in ["w/a/x", "w/b/x", "w/c/y"] {
        publ.client
            .publish(t, QoS5::AtLeastOnce, true, t)
            .await
            .unwrap();
        publ.puback().await;
    }
    let mut s = v5(&b, "s").await;
    s.subscribe("w/+/x", QoS5::AtLeastOnce).await;
    let got = s.collect().await;
    let mut topics: Vec<&[u8]> = got.iter().map(|p| &p.topic[..]).collect();
    topics.sort_unstable();
    assert_eq!(topics, [&b"w/a/x"[..], b"w/b/x"]);
    assert!(got.iter().all(|p| p.retain));
}

#[tokio::test]
async fn v5_retain_handling_0_1_2() {
    let b = Broker::start();
    let mut publ = v5(&b, "pub").await;
    publ.client
        .publish("rh/t", QoS5::AtLeastOnce, true, "kept")
        .await
        .unwrap();
    publ.puback().await;

    // 0: sent at every subscribe, re-subscribe included.
    let mut c0 = v5(&b, "c0").await;
    for _ in 0..2 {
        subscribe_with(
            &mut c0,
            filter("rh/t", RetainForwardRule::OnEverySubscribe, false),
        )
        .await;
        let p = c0.publish().await;
        assert_eq!((&p.payload[..], p.retain), (&b"kept"[..], true));
        c0.no_publish().await;
    }

    // 1: only when the subscription is new; a re-subscribe gets nothing.
    let mut c1 = v5(&b, "c1").await;
    subscribe_with(
        &mut c1,
        filter("rh/t", RetainForwardRule::OnNewSubscribe, false),
    )
    .await;
    let p = c1.publish().await;
    assert_eq!((&p.payload[..], p.retain), (&b"kept"[..], true));
    subscribe_with(
        &mut c1,
        filter("rh/t", RetainForwardRule::OnNewSubscribe, false),
    )
    .await;
    c1.no_publish().await;

    // 2: never, but the subscription itself works.
    let mut c2 = v5(&b, "c2").await;
    subscribe_with(&mut c2, filter("rh/t", RetainForwardRule::Never, false)).await;
    c2.no_publish().await;
    publ.client
        .publish("rh/t", QoS5::AtLeastOnce, false, "live")
        .await
        .unwrap();
    let p = c2.publish().await;
    assert_eq!((&p.payload[..], p.retain), (&b"live"[..], false));
}

#[tokio::test]
async fn v5_retain_as_published() {
    let b = Broker::start();
    // A clean session (live path) and a persistent one (queued path), each
    // with and without retain-as-published.
    let mut rap = v5(&b, "rap").await;
    subscribe_with(&mut rap, filter("rap/t", RetainForwardRule::Never, true)).await;
    let mut plain = v5(&b, "plain").await;
    subscribe_with(&mut plain, filter("rap/t", RetainForwardRule::Never, false)).await;
    let mut o = v5_opts(&b, "rap-persistent");
    o.set_clean_start(false)
        .set_session_expiry_interval(Some(60));
    let (mut rap_p, _) = v5_with(o).await;
    subscribe_with(&mut rap_p, filter("rap/t", RetainForwardRule::Never, true)).await;
    let mut o = v5_opts(&b, "plain-persistent");
    o.set_clean_start(false)
        .set_session_expiry_interval(Some(60));
    let (mut plain_p, _) = v5_with(o).await;
    subscribe_with(
        &mut plain_p,
        filter("rap/t", RetainForwardRule::Never, false),
    )
    .await;

    let mut publ = v5(&b, "pub").await;
    publ.client
        .publish("rap/t", QoS5::AtLeastOnce, true, "r")
        .await
        .unwrap();
    publ.puback().await;
    assert!(rap.publish().await.retain, "RAP, live: retain flag kept");
    assert!(
        rap_p.publish().await.retain,
        "RAP, persistent: retain flag kept"
    );
    assert!(
        !plain.publish().await.retain,
        "no RAP, live: retain flag cleared"
    );
    assert!(
        !plain_p.publish().await.retain,
        "no RAP, persistent: retain flag cleared"
    );

    publ.client
        .publish("rap/t", QoS5::AtLeastOnce, false, "n")
        .await
        .unwrap();
    assert!(
        !rap.publish().await.retain,
        "a non-retained message stays non-retained"
    );
}

#[tokio::test]
async fn v4_sys_not_matched_by_hash() {
    let b = Broker::start_with("[sys]\ninterval = \"100ms\"\n");
    let mut s = v4(&b, "s").await;
    s.subscribe("#", QoS::AtMostOnce).await;
    s.subscribe("+/broker/#", QoS::AtMostOnce).await;
    let publ = v4(&b, "pub").await;
    publ.client
        .publish("x/y", QoS::AtMostOnce, false, "p")
        .await
        .unwrap();
    let p = s.publish().await;
    assert_eq!(p.topic, "x/y");
    // Several $SYS intervals pass: none of them may reach `#` or `+/...`.
    s.no_publish().await;
}

#[tokio::test]
async fn v5_sys_not_matched_by_hash() {
    let b = Broker::start_with("[sys]\ninterval = \"100ms\"\n");
    let mut s = v5(&b, "s").await;
    s.subscribe("#", QoS5::AtMostOnce).await;
    s.no_publish().await;
    // ... while an explicit $SYS subscription does receive them.
    s.subscribe("$SYS/broker/version", QoS5::AtMostOnce).await;
    let p = s.publish().await;
    assert_eq!(&p.topic[..], b"$SYS/broker/version");
}

#[tokio::test]
async fn retained_message_delivered_at_subscription_qos() {
    let b = Broker::start();
    let mut publ = v5(&b, "pub").await;
    publ.client
        .publish("rq/t", QoS5::ExactlyOnce, true, "q2")
        .await
        .unwrap();
    // Wait for the QoS 2 flow to finish (PUBCOMP).
    loop {
        if let rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::PubComp(_)) = publ.next().await {
            break;
        }
    }
    let mut s0 = v5(&b, "s0").await;
    s0.subscribe("rq/t", QoS5::AtMostOnce).await;
    assert_eq!(s0.publish().await.qos, QoS5::AtMostOnce);
    let mut s1 = v4(&b, "s1").await;
    s1.subscribe("rq/t", QoS::AtLeastOnce).await;
    assert_eq!(s1.publish().await.qos, QoS::AtLeastOnce);
}

#[tokio::test]
async fn expired_retained_message_not_delivered() {
    let b = Broker::start();
    let mut publ = v5(&b, "pub").await;
    let props = rumqttc::v5::mqttbytes::v5::PublishProperties {
        message_expiry_interval: Some(1),
        ..crate::clients::props5()
    };
    publ.client
        .publish_with_properties("rx/t", QoS5::AtLeastOnce, true, "brief", props)
        .await
        .unwrap();
    publ.puback().await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let mut s = v5(&b, "s").await;
    s.subscribe("rx/t", QoS5::AtLeastOnce).await;
    s.no_publish().await;
}
