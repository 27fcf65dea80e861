//! Healthy-cluster behaviour: live traffic across nodes, shared
//! subscriptions, takeover across nodes (G3), and single-node crash safety (G6).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use rumqttc::v5::mqttbytes::QoS;

use crate::clients::{self, V4, V5};
use crate::harness::Cluster;
use crate::history;
use crate::raw::{ConnectError, PubOutcome, RawClient};

/// v5 options for a persistent session (clean start 0, expiry 1 h).
pub fn v5_persistent_opts(addr: SocketAddr, id: &str) -> rumqttc::v5::MqttOptions {
    let mut o = clients::v5_opts(addr, id);
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(3600));
    o
}

/// Connects a persistent v5 session; returns it with CONNACK's session present.
pub async fn v5_persistent(addr: SocketAddr, id: &str) -> (V5, bool) {
    let (c, ack) = clients::v5_with(v5_persistent_opts(addr, id)).await;
    assert_eq!(
        ack.code,
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success,
        "{ack:?}"
    );
    (c, ack.session_present)
}

/// Connects a persistent v5 session where the CONNECT may be refused while
/// the cluster elects: retries (bounded) until accepted.
pub async fn v5_persistent_retry(addr: SocketAddr, id: &str) -> (V5, bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = clients::v5_spawn(v5_persistent_opts(addr, id));
        let outcome = loop {
            match tokio::time::timeout(clients::WAIT, c.events.recv()).await {
                Ok(Some(Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::ConnAck(a))))) => {
                    break Ok(a);
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => break Err(e),
                Ok(None) => break Err("event loop ended".into()),
                Err(_) => break Err("timed out waiting for CONNACK".into()),
            }
        };
        match outcome {
            Ok(a) if a.code == rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success => {
                return (c, a.session_present);
            }
            other if Instant::now() > deadline => {
                panic!("{id} never accepted on {addr}: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Resumes persistent session `id` on `addr` and collects its deliveries
/// (payloads, duplicates included) until none arrive for the quiet period.
/// A connection the broker closes meanwhile (e.g. v5 0x9C while the node
/// re-establishes quorum contact) is reconnected, as a real client would;
/// every reconnect must find the session present. A resend flagged DUP of a
/// payload already received is folded (MQTT redelivery after a lost ack);
/// any other repeat stays in the list. Returns the first CONNACK's
/// session-present flag and the deliveries.
pub async fn session_collect(addr: SocketAddr, id: &str) -> (bool, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(40);
    let (mut c, first_present) = v5_persistent_retry(addr, id).await;
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(clients::QUIET, c.events.recv()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::Publish(p))))) => {
                let payload = String::from_utf8_lossy(&p.payload).into_owned();
                // A DUP resend of something this collector already got (the
                // acknowledgement did not make it before a reconnect) is the
                // protocol's redelivery, not a second delivery: fold it.
                if !(p.dup && got.contains(&payload)) {
                    got.push(payload);
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => {
                eprintln!("{id}: connection closed while collecting ({e}); reconnecting");
                assert!(
                    Instant::now() < deadline,
                    "{id}: kept losing its connection"
                );
                let (c2, present) = v5_persistent_retry(addr, id).await;
                assert!(present, "{id}: session gone after a reconnect");
                c = c2;
            }
        }
    }
    c.disconnect().await;
    (first_present, got)
}

/// Publishes QoS 0 probes on `topic` from `addr` until every receiver got
/// one (interest crossed the peer links), then drains them.
async fn await_interest_v5(addr: SocketAddr, topic: &str, subs: &mut [&mut V5]) {
    let mut p = clients::v5(addr, &format!("probe-{}", rand::random::<u32>())).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = vec![false; subs.len()];
    while got.iter().any(|g| !g) {
        assert!(
            Instant::now() < deadline,
            "interest never propagated: {got:?}"
        );
        p.client
            .publish(topic, QoS::AtMostOnce, false, "probe")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        for (i, s) in subs.iter_mut().enumerate() {
            while let Ok(Some(ev)) =
                tokio::time::timeout(Duration::from_millis(20), s.events.recv()).await
            {
                if let Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::Publish(_))) = ev {
                    got[i] = true;
                }
            }
        }
    }
    p.disconnect().await;
}

fn payloads5(ps: &[rumqttc::v5::mqttbytes::v5::Publish]) -> Vec<String> {
    ps.iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

fn payloads4(ps: &[rumqttc::Publish]) -> Vec<String> {
    ps.iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

/// (a) Live QoS 0/1 traffic crosses nodes for 3.1.1 and 5.0 clients, each
/// message once per subscriber; a shared subscription with members on
/// every node gets each message exactly once in total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_node_pubsub_and_shared() {
    let (_, mut rng) = crate::harness::seeded("a_cross_node_pubsub_and_shared");
    let c = Cluster::start("a", 3).await;
    let n = rng.random_range(10..30u32);

    // v5 subscriber on node 2, 3.1.1 subscriber on node 3, publishers on node 1.
    let mut s5 = clients::v5(c.mqtt(2), "sub5").await;
    s5.subscribe("a/#", QoS::AtLeastOnce).await;
    let mut s4: V4 = clients::v4(c.mqtt(3), "sub4").await;
    s4.subscribe("a/#", rumqttc::QoS::AtLeastOnce).await;
    // Interest probe through a v5 watcher co-located with s4 (same node):
    let mut w3 = clients::v5(c.mqtt(3), "watch3").await;
    w3.subscribe("a/#", QoS::AtMostOnce).await;
    await_interest_v5(c.mqtt(1), "a/probe", &mut [&mut s5, &mut w3]).await;
    // Let the probes reach s4 too, then forget them.
    let _ = s4.collect().await;

    let mut p5 = clients::v5(c.mqtt(1), "pub5").await;
    let mut p4 = clients::v4(c.mqtt(1), "pub4").await;
    let mut sent = Vec::new();
    for i in 0..n {
        let m = format!("v5q0:{i}");
        p5.client
            .publish("a/x", QoS::AtMostOnce, false, m.clone())
            .await
            .unwrap();
        sent.push(m);
        let m = format!("v5q1:{i}");
        p5.client
            .publish("a/y", QoS::AtLeastOnce, false, m.clone())
            .await
            .unwrap();
        p5.puback().await;
        sent.push(m);
        let m = format!("v4q1:{i}");
        p4.client
            .publish("a/z", rumqttc::QoS::AtLeastOnce, false, m.clone())
            .await
            .unwrap();
        p4.puback().await;
        sent.push(m);
    }
    let mut got5 = payloads5(&s5.collect().await);
    let mut got4 = payloads4(&s4.collect().await);
    got5.retain(|p| p != "probe");
    got4.retain(|p| p != "probe");
    let mut want = sent.clone();
    want.sort();
    got5.sort();
    got4.sort();
    assert_eq!(got5, want, "v5 subscriber on node 2");
    assert_eq!(got4, want, "3.1.1 subscriber on node 3");

    // Shared subscription with one member per node.
    let mut members = Vec::new();
    for id in c.ids() {
        let mut m = clients::v5(c.mqtt(id), &format!("member{id}")).await;
        m.subscribe("$share/g/s/#", QoS::AtLeastOnce).await;
        members.push(m);
    }
    // Warm up until each member has been picked at least once.
    let p = clients::v5(c.mqtt(1), "share-pub").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = vec![false; members.len()];
    while seen.iter().any(|s| !s) {
        assert!(
            Instant::now() < deadline,
            "shared members never all served: {seen:?}"
        );
        p.client
            .publish("s/warm", QoS::AtMostOnce, false, "warm")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        for (i, m) in members.iter_mut().enumerate() {
            while let Ok(Some(ev)) =
                tokio::time::timeout(Duration::from_millis(10), m.events.recv()).await
            {
                if let Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::Publish(_))) = ev {
                    seen[i] = true;
                }
            }
        }
    }
    for m in &mut members {
        let _ = m.collect().await;
    }
    let k = rng.random_range(20..60u32);
    let from = rng.random_range(1..=3u64);
    let mut p = clients::v5(c.mqtt(from), "share-pub2").await;
    for i in 0..k {
        p.client
            .publish("s/t", QoS::AtLeastOnce, false, format!("sh:{i}"))
            .await
            .unwrap();
        p.puback().await;
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_member = Vec::new();
    for m in &mut members {
        let got = payloads5(&m.collect().await);
        per_member.push(got.len());
        for g in got {
            *counts.entry(g).or_default() += 1;
        }
    }
    for i in 0..k {
        let key = format!("sh:{i}");
        assert_eq!(
            counts.get(&key).copied().unwrap_or(0),
            1,
            "{key} delivered to the group {:?} times (per member {per_member:?})",
            counts.get(&key)
        );
    }
    assert_eq!(counts.len(), k as usize, "unexpected messages {counts:?}");
    eprintln!("shared subscription: {k} messages from node {from}, per member {per_member:?}");
}

/// (b) G3: a CONNECT for a client id on another node closes the old
/// connection (v5 DISCONNECT 0x8E; 3.1.1 connection closed), around all
/// nodes, for clean and persistent sessions; a persistent session is present
/// on every new node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_takeover_across_nodes() {
    let (_, mut rng) = crate::harness::seeded("b_takeover_across_nodes");
    let c = Cluster::start("b", 3).await;
    let start = rng.random_range(1..=3u64);
    let order: Vec<u64> = (0..4).map(|k| (start - 1 + k) % 3 + 1).collect();

    // v5, clean session.
    let mut old = clients::v5(c.mqtt(order[0]), "dev-clean").await;
    for &node in &order[1..] {
        let new = clients::v5(c.mqtt(node), "dev-clean").await;
        let why = old.closed().await;
        assert!(
            why.contains("SessionTakenOver"),
            "old connection closed with {why} (new one on node {node})"
        );
        old = new;
    }

    // v5, persistent session: present on every new node.
    let (mut old, present) = v5_persistent(c.mqtt(order[0]), "dev-persist").await;
    assert!(!present);
    old.subscribe("dev/persist/#", QoS::AtLeastOnce).await;
    for &node in &order[1..] {
        let (new, present) = v5_persistent(c.mqtt(node), "dev-persist").await;
        assert!(present, "session not present on node {node}");
        let why = old.closed().await;
        assert!(why.contains("SessionTakenOver"), "closed with {why}");
        old = new;
    }
    // The subscription followed the session: a QoS 1 publish on another node reaches it.
    let last = *order.last().unwrap();
    let other = last % 3 + 1;
    let mut p = RawClient::connect(c.mqtt(other), true, "dev-pub", false)
        .await
        .unwrap()
        .0;
    assert_eq!(
        p.publish("dev/persist/x", b"hello", 1, false).await,
        PubOutcome::Acked
    );
    let got = old.publish().await;
    assert_eq!(&got.payload[..], b"hello");

    // 3.1.1: the old connection is closed.
    let mut old4 = clients::v4(c.mqtt(order[0]), "dev-v4").await;
    let _new4 = clients::v4(c.mqtt(order[1]), "dev-v4").await;
    old4.closed().await;
}

/// (k) G6: a single node killed with SIGKILL restarts with its acknowledged
/// retained messages and persistent sessions (subscriptions and queue).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k_single_node_crash_safety() {
    let (_, mut rng) = crate::harness::seeded("k_single_node_crash_safety");
    let mut c = Cluster::start("k", 1).await;
    let n = rng.random_range(5..25u64);

    let (mut s, _) = v5_persistent(c.mqtt(1), "k-sess").await;
    s.subscribe("k/q/#", QoS::AtLeastOnce).await;
    s.disconnect().await;
    let mut s4 = clients::v4_with({
        let mut o = clients::v4_opts(c.mqtt(1), "k-sess4");
        o.set_clean_session(false);
        o
    })
    .await;
    s4.subscribe("k/q/#", rumqttc::QoS::AtLeastOnce).await;
    s4.disconnect().await;

    let (mut p, _) = RawClient::connect(c.mqtt(1), true, "k-pub", false)
        .await
        .unwrap();
    let mut retained = BTreeMap::new();
    for i in 1..=n {
        let topic = format!("k/r/{}", i % 4);
        let v = format!("k-pub:{i}");
        assert_eq!(
            p.publish(&topic, v.as_bytes(), 1, true).await,
            PubOutcome::Acked
        );
        retained.insert(topic, v);
        let q = format!("q:{i}");
        let qos = if i % 2 == 0 { 2 } else { 1 };
        assert_eq!(
            p.publish("k/q/x", q.as_bytes(), qos, false).await,
            PubOutcome::Acked
        );
    }
    c.kill9(1);
    c.restart(1).await;

    let got = history::read_retained(c.mqtt(1), "k/r/#").await;
    assert_eq!(got, retained, "retained values after kill -9");
    let (mut s, present) = v5_persistent(c.mqtt(1), "k-sess").await;
    assert!(present, "v5 session lost");
    let got = payloads5(&s.collect().await);
    let want: Vec<String> = (1..=n).map(|i| format!("q:{i}")).collect();
    let mut g = got.clone();
    g.dedup();
    assert_eq!(g, want, "v5 queue after kill -9 (raw deliveries {got:?})");
    let (mut s4, ack) = clients::v4_with_ack({
        let mut o = clients::v4_opts(c.mqtt(1), "k-sess4");
        o.set_clean_session(false);
        o
    })
    .await;
    assert!(ack.session_present, "3.1.1 session lost");
    let got4 = payloads4(&s4.collect().await);
    let mut g4 = got4.clone();
    g4.dedup();
    assert_eq!(
        g4, want,
        "3.1.1 queue after kill -9 (raw deliveries {got4:?})"
    );
    let _ = ConnectError::Refused(0);
}
