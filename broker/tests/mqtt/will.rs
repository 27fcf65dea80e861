//! Will messages: when they are (and are not) published, v5 will delay and
//! will properties.

use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{LastWill as LastWill5, LastWillProperties};

use crate::clients::{V4, V5, v4, v4_opts, v4_with, v5, v5_opts, v5_with};
use crate::harness::{Broker, Raw, connect_raw, disconnect_reason, will_payload};

async fn v4_with_will(b: &Broker, id: &str, topic: &str) -> V4 {
    let mut o = v4_opts(b, id);
    o.set_last_will(rumqttc::LastWill::new(
        topic,
        "gone",
        QoS::AtLeastOnce,
        false,
    ));
    v4_with(o).await
}

async fn v5_with_will(b: &Broker, id: &str, topic: &str, props: Option<LastWillProperties>) -> V5 {
    let mut o = v5_opts(b, id);
    o.set_last_will(LastWill5::new(
        topic,
        "gone",
        QoS5::AtLeastOnce,
        false,
        props,
    ));
    let (c, _) = v5_with(o).await;
    c
}

#[tokio::test]
async fn v4_will_published_on_abrupt_close() {
    let b = Broker::start();
    let mut sub = v4(&b, "sub").await;
    sub.subscribe("will/+", QoS::AtLeastOnce).await;
    let c = v4_with_will(&b, "dying", "will/dying").await;
    c.kill();
    let p = sub.publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("will/dying", &b"gone"[..])
    );
    assert_eq!(p.qos, QoS::AtLeastOnce);
}

#[tokio::test]
async fn v5_will_published_on_abrupt_close_with_properties() {
    let b = Broker::start();
    let mut sub = v5(&b, "sub").await;
    sub.subscribe("will/+", QoS5::AtLeastOnce).await;
    let props = LastWillProperties {
        delay_interval: None,
        payload_format_indicator: Some(1),
        message_expiry_interval: None,
        content_type: Some("text/plain".into()),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(b"corr-1".to_vec().into()),
        user_properties: vec![("who".into(), "dying".into()), ("k".into(), "v".into())],
    };
    let c = v5_with_will(&b, "dying", "will/dying", Some(props)).await;
    c.kill();
    let p = sub.publish().await;
    assert_eq!(
        (&p.topic[..], &p.payload[..]),
        (&b"will/dying"[..], &b"gone"[..])
    );
    let props = p.properties.expect("will properties");
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(props.response_topic.as_deref(), Some("reply/here"));
    assert_eq!(props.correlation_data.as_deref(), Some(&b"corr-1"[..]));
    assert_eq!(props.payload_format_indicator, Some(1));
    assert_eq!(
        props.user_properties,
        vec![
            ("who".to_string(), "dying".to_string()),
            ("k".into(), "v".into())
        ]
    );
}

#[tokio::test]
async fn v4_will_published_on_keep_alive_timeout() {
    let b = Broker::start();
    let mut sub = v4(&b, "sub").await;
    sub.subscribe("will/ka", QoS::AtLeastOnce).await;
    // Keep alive 1 s, will QoS 1, then silence.
    let connect = connect_raw(
        4,
        0x02 | 0x04 | 0x08,
        1,
        &[],
        b"silent",
        &will_payload(false, &[], "will/ka", b"timeout"),
    );
    let mut raw = Raw::connected(&b, &connect);
    let p = sub.publish().await;
    assert_eq!(&p.payload[..], b"timeout");
    raw.expect_silent_close();
}

#[tokio::test]
async fn v5_will_published_on_keep_alive_timeout() {
    let b = Broker::start();
    let mut sub = v5(&b, "sub").await;
    sub.subscribe("will/ka", QoS5::AtLeastOnce).await;
    let connect = connect_raw(
        5,
        0x02 | 0x04 | 0x08,
        1,
        &[],
        b"silent",
        &will_payload(true, &[], "will/ka", b"timeout"),
    );
    let mut raw = Raw::connected(&b, &connect);
    let p = sub.publish().await;
    assert_eq!(&p.payload[..], b"timeout");
    let got = raw.read_to_close();
    assert_eq!(
        disconnect_reason(&got),
        Some(0x8D),
        "keep alive timeout: {got:02x?}"
    );
}

#[tokio::test]
async fn v4_no_will_on_normal_disconnect() {
    let b = Broker::start();
    let mut sub = v4(&b, "sub").await;
    sub.subscribe("will/+", QoS::AtLeastOnce).await;
    let mut c = v4_with_will(&b, "polite", "will/polite").await;
    c.disconnect().await;
    sub.no_publish().await;
}

#[tokio::test]
async fn v5_no_will_on_normal_disconnect() {
    let b = Broker::start();
    let mut sub = v5(&b, "sub").await;
    sub.subscribe("will/+", QoS5::AtLeastOnce).await;
    let mut c = v5_with_will(&b, "polite", "will/polite", None).await;
    c.disconnect().await;
    sub.no_publish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_disconnect_with_will_message_publishes_it() {
    let b = Broker::start();
    let mut sub = v5(&b, "sub").await;
    sub.subscribe("will/+", QoS5::AtLeastOnce).await;
    let connect = connect_raw(
        5,
        0x02 | 0x04 | 0x08,
        60,
        &[],
        b"w04",
        &will_payload(true, &[], "will/w04", b"asked"),
    );
    let mut raw = Raw::connected(&b, &connect);
    // DISCONNECT, reason 0x04 Disconnect with Will Message.
    raw.send(&[0xE0, 0x02, 0x04, 0x00]);
    let p = sub.publish().await;
    assert_eq!(&p.payload[..], b"asked");
    let rest = raw.read_to_close();
    assert!(
        rest.is_empty(),
        "nothing after a client DISCONNECT: {rest:02x?}"
    );
}

/// A raw v5 CONNECT with session expiry 60 s and a will delayed by `delay` s.
fn delayed_will_connect(id: &[u8], delay: u32) -> Vec<u8> {
    let mut connect_props = vec![0x11];
    connect_props.extend_from_slice(&60u32.to_be_bytes());
    let mut will_props = vec![0x18];
    will_props.extend_from_slice(&delay.to_be_bytes());
    connect_raw(
        5,
        0x02 | 0x04 | 0x08,
        60,
        &connect_props,
        id,
        &will_payload(true, &will_props, "will/delayed", b"late"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_will_delay_cancelled_by_reconnect() {
    let b = Broker::start();
    let mut sub = v5(&b, "sub").await;
    sub.subscribe("will/delayed", QoS5::AtLeastOnce).await;
    let raw = Raw::connected(&b, &delayed_will_connect(b"wd", 2));
    drop(raw);
    // Back well within the 2 s delay, resuming the session.
    let mut o = v5_opts(&b, "wd");
    o.set_clean_start(false)
        .set_session_expiry_interval(Some(60));
    let (_back, ack) = v5_with(o).await;
    assert!(ack.session_present);
    // Past the delay: the will must never come.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    sub.no_publish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_will_delay_publishes_after_the_delay() {
    let b = Broker::start();
    let mut sub = v5(&b, "sub").await;
    sub.subscribe("will/delayed", QoS5::AtLeastOnce).await;
    let raw = Raw::connected(&b, &delayed_will_connect(b"wd", 2));
    drop(raw);
    // Not before the delay...
    sub.no_publish().await;
    // ...but after it.
    let p = sub.publish().await;
    assert_eq!(&p.payload[..], b"late");
}

#[tokio::test]
async fn v5_will_published_when_session_taken_over() {
    let b = Broker::start();
    let mut sub = v5(&b, "sub").await;
    sub.subscribe("will/+", QoS5::AtLeastOnce).await;
    let mut old = v5_with_will(&b, "same", "will/same", None).await;
    let _new = v5(&b, "same").await;
    assert!(old.closed().await.contains("SessionTakenOver"));
    // [MQTT-3.1.4-3]: the existing client's will is published.
    let p = sub.publish().await;
    assert_eq!(&p.topic[..], b"will/same");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_will_delay_longer_than_session_expiry_fires_at_session_end() {
    let b = Broker::start_with("[session]\nexpiry_check_interval = \"100ms\"\n");
    let mut sub = v5(&b, "sub").await;
    sub.subscribe("will/delayed", QoS5::AtLeastOnce).await;
    // Session expiry 1 s, will delay 1 h: the will goes when the session ends.
    let mut connect_props = vec![0x11];
    connect_props.extend_from_slice(&1u32.to_be_bytes());
    let mut will_props = vec![0x18];
    will_props.extend_from_slice(&3600u32.to_be_bytes());
    let connect = connect_raw(
        5,
        0x02 | 0x04 | 0x08,
        60,
        &connect_props,
        b"short-session",
        &will_payload(true, &will_props, "will/delayed", b"session over"),
    );
    drop(Raw::connected(&b, &connect));
    let p = sub.publish().await;
    assert_eq!(&p.payload[..], b"session over");
}

#[tokio::test]
async fn retained_will_is_stored() {
    let b = Broker::start();
    let mut o = v4_opts(&b, "dying");
    o.set_last_will(rumqttc::LastWill::new(
        "will/kept",
        "bye",
        QoS::AtLeastOnce,
        true,
    ));
    let c = v4_with(o).await;
    let mut watcher = v4(&b, "watcher").await;
    watcher.subscribe("will/kept", QoS::AtLeastOnce).await;
    c.kill();
    watcher.publish().await;
    // A later subscriber gets it as a retained message.
    let mut late = v4(&b, "late").await;
    late.subscribe("will/kept", QoS::AtLeastOnce).await;
    let p = late.publish().await;
    assert_eq!((&p.payload[..], p.retain), (&b"bye"[..], true));
}

#[tokio::test]
async fn will_queued_for_offline_persistent_subscriber() {
    let b = Broker::start();
    let mut o = v4_opts(&b, "away");
    o.set_clean_session(false);
    let (mut s, _) = crate::clients::v4_with_ack(o.clone()).await;
    s.subscribe("will/q", QoS::AtLeastOnce).await;
    s.disconnect().await;
    let c = v4_with_will(&b, "dying", "will/q").await;
    c.kill();
    let (mut s, ack) = crate::clients::v4_with_ack(o).await;
    assert!(ack.session_present);
    // The will may be published just after the kill: wait for it.
    let p = s.publish().await;
    assert_eq!(&p.payload[..], b"gone");
}
