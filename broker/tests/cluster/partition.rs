//! Partitions and paused leaders (G8): a node cut off from the quorum
//! refuses CONNECT, acknowledges nothing durable and reports not ready; the
//! majority goes on; after healing the old leader rejoins and all agree.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use rumqttc::v5::mqttbytes::QoS;

use crate::basic::{session_collect, v5_persistent};
use crate::harness::Cluster;
use crate::history::{self, PubLog, PubSpec, assert_none, publish_stream};
use crate::proxy::Mode;
use crate::raw::{ConnectError, PubOutcome, RawClient, connect_retry};

fn spec(
    id: &str,
    v5: bool,
    retain: bool,
    count: u64,
    pause_ms: u64,
    topic: impl Fn(u64) -> String + Send + Sync + 'static,
) -> PubSpec {
    PubSpec {
        id: id.to_owned(),
        v5,
        qos: 1,
        retain,
        topic: Arc::new(topic),
        count,
        pause: Duration::from_millis(pause_ms),
    }
}

fn payloads(ps: &[rumqttc::v5::mqttbytes::v5::Publish]) -> Vec<String> {
    ps.iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

/// (f) The leader is cut off from both others (both directions of every
/// peer link blackholed) while publishers load the cluster. The old leader
/// refuses new CONNECTs (v5 0x88, 3.1.1 code 3), acknowledges no durable
/// publish of clients already connected to it, and turns not ready; the
/// majority elects a new leader and keeps acknowledging. After healing the
/// old leader follows the new one and every node serves the same,
/// acknowledged, retained values; the persistent session got every
/// acknowledged message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_partitioned_leader() {
    let (_, mut rng) = crate::harness::seeded("f_partitioned_leader");
    let mut c = Cluster::start("f", 3).await;
    let old = c.leader().await;
    let majority: Vec<u64> = c.ids().into_iter().filter(|&i| i != old).collect();
    let (mut sess, _) = v5_persistent(c.mqtt(majority[0]), "f-sess").await;
    sess.subscribe("f/#", QoS::AtLeastOnce).await;
    sess.disconnect().await;

    // Clients connected to the old leader before the partition (v5 and 3.1.1).
    let (mut on_old5, _) = RawClient::connect(c.mqtt(old), true, "f-old5", false)
        .await
        .unwrap();
    let (mut on_old4, _) = RawClient::connect(c.mqtt(old), false, "f-old4", false)
        .await
        .unwrap();
    assert_eq!(
        on_old5.publish("f/old5", b"f-old5:0", 1, true).await,
        PubOutcome::Acked
    );

    // Load on the majority throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let addrs = vec![c.mqtt(majority[0]), c.mqtt(majority[1])];
    let load = tokio::spawn(publish_stream(
        addrs,
        spec("f-load", true, true, 400, 5, |i| {
            format!("f/load/{}", i % 5)
        }),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(rng.random_range(100..500))).await;

    c.isolate(old);
    let cut = Instant::now();
    // Durable publishes of clients already on the old leader are not acknowledged.
    let o5 = on_old5.publish("f/old5", b"f-old5:1", 1, true).await;
    assert!(
        !matches!(o5, PubOutcome::Acked),
        "minority acknowledged a retained publish: {o5:?}"
    );
    let o4 = on_old4.publish("f/sess", b"f-old4:1", 1, false).await;
    assert!(
        !matches!(o4, PubOutcome::Acked),
        "minority acknowledged a queued publish: {o4:?}"
    );
    // New CONNECTs are refused.
    for (v5, want) in [(true, 0x88), (false, 3)] {
        let r = RawClient::connect(c.mqtt(old), v5, &format!("f-new-{v5}"), v5).await;
        assert_eq!(
            r.as_ref().err(),
            Some(&ConnectError::Refused(want)),
            "CONNECT on the minority (v5={v5})"
        );
    }
    // It reports not ready.
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.ready(old).await {
        assert!(Instant::now() < deadline, "isolated old leader stays ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new = c.leader_among(&majority).await;
    eprintln!(
        "old leader {old} cut off; new leader {new} after {:?}",
        cut.elapsed()
    );
    // The majority accepts persistent CONNECTs and durable publishes.
    let (mut p, _) = connect_retry(c.mqtt(new), false, "f-maj", true).await;
    assert_eq!(
        p.publish("f/sess", b"f-maj:1", 1, false).await,
        PubOutcome::Acked
    );
    let maj_log = PubLog {
        attempts: vec![history::Attempt {
            topic: "f/sess".into(),
            payload: "f-maj:1".into(),
            seq: 1,
            outcome: PubOutcome::Acked,
            node: 0,
        }],
        connect_errors: Vec::new(),
    };
    tokio::time::sleep(Duration::from_millis(rng.random_range(200..1000))).await;

    let old5 = PubLog {
        attempts: vec![
            history::Attempt {
                topic: "f/old5".into(),
                payload: "f-old5:0".into(),
                seq: 0,
                outcome: PubOutcome::Acked,
                node: 0,
            },
            history::Attempt {
                topic: "f/old5".into(),
                payload: "f-old5:1".into(),
                seq: 1,
                outcome: o5,
                node: 0,
            },
        ],
        connect_errors: Vec::new(),
    };
    let old4 = PubLog {
        attempts: vec![history::Attempt {
            topic: "f/sess".into(),
            payload: "f-old4:1".into(),
            seq: 1,
            outcome: o4,
            node: 0,
        }],
        connect_errors: Vec::new(),
    };

    c.heal();
    c.await_ready(&c.ids()).await;
    let l = c.leader().await;
    assert_ne!(l, old, "the old leader cannot win with a stale log");
    stop.store(true, Ordering::SeqCst);
    let load = tokio::time::timeout(Duration::from_secs(30), load)
        .await
        .expect("load hung")
        .unwrap();
    eprintln!("load: {}", load.summary());
    assert!(load.count(|o| *o == PubOutcome::Acked) > 0);

    c.await_caught_up(&c.ids()).await;
    let all: Vec<(u64, std::net::SocketAddr)> = c.ids().iter().map(|&i| (i, c.mqtt(i))).collect();
    let served = history::agreed_retained(&all, "f/#").await;
    assert_none(
        "retained after heal",
        &history::check_retained(&[&load, &old5], &served),
    );
    // The persistent session got every acknowledged message.
    let (present, got) = session_collect(c.mqtt(old), "f-sess").await;
    assert!(present);
    assert_none(
        "persistent session",
        &history::check_delivered(&[&load, &maj_log, &old5, &old4], &got, false),
    );
}

/// (g) The leader is SIGSTOPped for longer than the election timeout with
/// a client's retained publish (and a queued one) waiting in its socket; the
/// others elect a new leader and write newer values to the same topic. On
/// SIGCONT the old leader must not acknowledge anything under its old term
/// that is not durable: if it acknowledges the delayed publish, that value is
/// what every node serves in the end (it was the last write); the session
/// gets it. The old leader rejoins as a follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g_paused_leader() {
    let (_, mut rng) = crate::harness::seeded("g_paused_leader");
    let mut c = Cluster::start("g", 3).await;
    let old = c.leader().await;
    let others: Vec<u64> = c.ids().into_iter().filter(|&i| i != old).collect();
    let old_term = c.term(old).await.unwrap();
    let (mut sess, _) = v5_persistent(c.mqtt(others[0]), "g-sess").await;
    sess.subscribe("g/q", QoS::AtLeastOnce).await;
    sess.disconnect().await;

    let (mut on_old, _) = RawClient::connect(c.mqtt(old), true, "g-old", false)
        .await
        .unwrap();
    assert_eq!(
        on_old.publish("g/t", b"g-old:1", 1, true).await,
        PubOutcome::Acked
    );

    c.stop(old);
    // Written into the stopped leader's socket; answered after SIGCONT.
    let delayed = tokio::spawn(async move {
        let a = on_old.publish("g/t", b"g-old:2", 1, true).await;
        let b = on_old.publish("g/q", b"g-old:3", 1, false).await;
        (a, b)
    });
    let new = c.leader_among(&others).await;
    let new_term = c.term(new).await.unwrap();
    assert!(new_term > old_term);
    let n = rng.random_range(3..10);
    let (mut p, _) = connect_retry(c.mqtt(others[1]), true, "g-new", false).await;
    let mut maj = PubLog::default();
    for i in 1..=n {
        let payload = format!("g-new:{i}");
        let o = p.publish("g/t", payload.as_bytes(), 1, true).await;
        assert_eq!(o, PubOutcome::Acked);
        maj.attempts.push(history::Attempt {
            topic: "g/t".into(),
            payload: payload.clone(),
            seq: i,
            outcome: o,
            node: 0,
        });
        let payload = format!("g-newq:{i}");
        let o = p.publish("g/q", payload.as_bytes(), 1, false).await;
        assert_eq!(o, PubOutcome::Acked);
        maj.attempts.push(history::Attempt {
            topic: "g/q".into(),
            payload,
            seq: i,
            outcome: o,
            node: 0,
        });
    }
    let pause = Duration::from_millis(rng.random_range(1000..2500));
    tokio::time::sleep(pause).await;
    c.cont(old);
    let (a, b) = tokio::time::timeout(Duration::from_secs(30), delayed)
        .await
        .expect("delayed publishes hung")
        .unwrap();
    eprintln!(
        "old leader {old} (term {old_term}) paused; new leader {new} (term {new_term}); delayed outcomes: retained {a:?}, queued {b:?}"
    );

    c.await_ready(&c.ids()).await;
    let l = c.leader().await;
    assert_ne!(l, old, "the old leader cannot win with a stale log");
    c.await_caught_up(&c.ids()).await;
    let all: Vec<(u64, std::net::SocketAddr)> = c.ids().iter().map(|&i| (i, c.mqtt(i))).collect();
    let served = history::agreed_retained(&all, "g/t").await;
    let last_new = format!("g-new:{n}");
    match a {
        PubOutcome::Acked => assert_eq!(
            served.get("g/t").map(String::as_str),
            Some("g-old:2"),
            "the old leader acknowledged g-old:2 after the new writes, so it must be the value"
        ),
        _ => assert!(
            matches!(served.get("g/t").map(String::as_str), Some(v) if v == last_new || v == "g-old:2"),
            "served {served:?}"
        ),
    }
    let mut delayed_log = PubLog::default();
    delayed_log.attempts.push(history::Attempt {
        topic: "g/q".into(),
        payload: "g-old:3".into(),
        seq: 3,
        outcome: b,
        node: 0,
    });
    let (present, got) = session_collect(c.mqtt(old), "g-sess").await;
    assert!(present);
    let q_maj = PubLog {
        attempts: maj
            .attempts
            .iter()
            .filter(|a| a.topic == "g/q")
            .cloned()
            .collect(),
        connect_errors: Vec::new(),
    };
    assert_none(
        "persistent session",
        &history::check_delivered(&[&q_maj, &delayed_log], &got, false),
    );
    let _ = Mode::Pass;
}
