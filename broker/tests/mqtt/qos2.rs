//! Inbound QoS 2: a PUBLISH resent before PUBREL is delivered once.

use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;

use crate::clients::{v4, v5};
use crate::harness::{Broker, Raw, publish_raw};

fn pubrec_pkid(raw: &mut Raw) -> u16 {
    let (b1, body) = raw.packet();
    assert_eq!(b1, 0x50, "expected PUBREC, got {b1:#x} {body:02x?}");
    if let Some(&reason) = body.get(2) {
        assert_eq!(reason, 0, "PUBREC reason");
    }
    u16::from_be_bytes([body[0], body[1]])
}

fn exactly_once_flow(raw: &mut Raw, v5: bool) {
    raw.send(&publish_raw(v5, 0x04, b"q2/t", 7, &[], b"once"));
    assert_eq!(pubrec_pkid(raw), 7);
    // The same packet again, DUP set, before PUBREL.
    raw.send(&publish_raw(v5, 0x0C, b"q2/t", 7, &[], b"once"));
    assert_eq!(pubrec_pkid(raw), 7);
    raw.send(&[0x62, 0x02, 0x00, 0x07]);
    let (b1, body) = raw.packet();
    assert_eq!((b1, &body[..2]), (0x70, &[0u8, 7][..]), "PUBCOMP");
    if let Some(&reason) = body.get(2) {
        assert_eq!(reason, 0, "PUBCOMP reason");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_qos2_resend_before_pubrel_delivered_once() {
    let b = Broker::start();
    let mut sub = v4(&b, "sub").await;
    sub.subscribe("q2/t", QoS::ExactlyOnce).await;
    let mut raw = Raw::v4(&b, "pub");
    tokio::task::block_in_place(|| exactly_once_flow(&mut raw, false));
    let got = sub.collect().await;
    assert_eq!(got.len(), 1, "delivered exactly once");
    assert_eq!(
        (&got[0].payload[..], got[0].qos),
        (&b"once"[..], QoS::ExactlyOnce)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_qos2_resend_before_pubrel_delivered_once() {
    let b = Broker::start();
    let mut sub = v5(&b, "sub").await;
    sub.subscribe("q2/t", QoS5::ExactlyOnce).await;
    let mut raw = Raw::v5(&b, "pub");
    tokio::task::block_in_place(|| exactly_once_flow(&mut raw, true));
    let got = sub.collect().await;
    assert_eq!(got.len(), 1, "delivered exactly once");
    assert_eq!(&got[0].payload[..], b"once");
    // After PUBCOMP the id is free: the same id is a new message.
    tokio::task::block_in_place(|| {
        raw.send(&publish_raw(true, 0x04, b"q2/t", 7, &[], b"twice"));
        assert_eq!(pubrec_pkid(&mut raw), 7);
    });
    assert_eq!(&sub.publish().await.payload[..], b"twice");
}

#[test]
fn v5_pubrel_for_unknown_packet_id_gets_0x92() {
    let b = Broker::start();
    let mut raw = Raw::v5(&b, "stray");
    raw.send(&[0x62, 0x02, 0x00, 0x2A]);
    let (b1, body) = raw.packet();
    assert_eq!(
        (b1, &body[..]),
        (0x70, &[0x00, 0x2A, 0x92][..]),
        "PUBCOMP 0x92"
    );
    raw.ping();
}

/// A raw v5 CONNECT resuming (or starting) session `id` with expiry 60 s.
fn persistent_v5(id: &[u8], clean: bool) -> Vec<u8> {
    let mut p = vec![0x11];
    p.extend_from_slice(&60u32.to_be_bytes());
    crate::harness::connect_raw(5, if clean { 0x02 } else { 0x00 }, 60, &p, id, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_qos2_flow_survives_reconnect() {
    let b = Broker::start();
    let mut sub = v5(&b, "sub").await;
    sub.subscribe("q2/t", QoS5::ExactlyOnce).await;
    tokio::task::block_in_place(|| {
        let mut raw = Raw::connected(&b, &persistent_v5(b"q2p", true));
        raw.send(&publish_raw(true, 0x04, b"q2/t", 5, &[], b"once"));
        assert_eq!(pubrec_pkid(&mut raw), 5);
    });
    // Connection lost before PUBREL. Resume the session.
    tokio::task::block_in_place(|| {
        let mut raw = Raw::connect(&b);
        raw.send(&persistent_v5(b"q2p", false));
        let (b1, body) = raw.packet();
        assert_eq!((b1, body[0], body[1]), (0x20, 1, 0), "session present");
        // The client did not see PUBREC, so it resends the PUBLISH (DUP)...
        raw.send(&publish_raw(true, 0x0C, b"q2/t", 5, &[], b"once"));
        assert_eq!(pubrec_pkid(&mut raw), 5);
        // ...then releases it.
        raw.send(&[0x62, 0x02, 0x00, 0x05]);
        let (b1, body) = raw.packet();
        assert_eq!((b1, &body[..2]), (0x70, &[0u8, 5][..]));
        assert_eq!(
            body.get(2).copied().unwrap_or(0),
            0,
            "the session remembered packet id 5"
        );
    });
    let got = sub.collect().await;
    assert_eq!(got.len(), 1, "delivered exactly once across the reconnect");
}
