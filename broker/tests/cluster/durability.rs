//! Node loss and restarts: persistent sessions resume anywhere (G2/G4),
//! acknowledged retained values survive leader loss (G1), followers and
//! wiped nodes catch up, a full restart keeps state, 5 nodes lose 2.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rand::Rng;
use rand::seq::SliceRandom;
use rumqttc::v5::mqttbytes::QoS;

use crate::basic::{session_collect, v5_persistent};
use crate::clients;
use crate::harness::{Cluster, Opts};
use crate::history::{self, PubLog, PubSpec, assert_none, publish_stream};
use crate::raw::{ConnectError, PubOutcome, RawClient};

fn payloads(ps: &[rumqttc::v5::mqttbytes::v5::Publish]) -> Vec<String> {
    ps.iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

fn spec(
    id: &str,
    v5: bool,
    qos: u8,
    retain: bool,
    count: u64,
    topic: impl Fn(u64) -> String + Send + Sync + 'static,
) -> PubSpec {
    PubSpec {
        id: id.to_owned(),
        v5,
        qos,
        retain,
        topic: Arc::new(topic),
        count,
        pause: Duration::ZERO,
    }
}

/// Publishes `count` messages on one node (no faults expected): all acked.
async fn publish_all(addr: SocketAddr, spec: PubSpec) -> PubLog {
    let log = publish_stream(vec![addr], spec, Arc::new(AtomicBool::new(false))).await;
    assert_eq!(
        log.count(|o| *o == PubOutcome::Acked),
        log.attempts.len(),
        "healthy cluster did not ack everything: {}",
        log.summary()
    );
    log
}

fn addrs_of(c: &Cluster, ids: &[u64]) -> Vec<(u64, SocketAddr)> {
    ids.iter().map(|&i| (i, c.mqtt(i))).collect()
}

/// (c) G2/G4: persistent sessions (one offline, one online) subscribed on
/// node S; QoS 1 and QoS 2 published on node P; node S is killed with
/// SIGKILL; both sessions resume on the third node R and get every
/// acknowledged message (QoS 2 exactly once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_persistent_session_survives_node_loss() {
    let (_, mut rng) = crate::harness::seeded("c_persistent_session_survives_node_loss");
    let mut c = Cluster::start("c", 3).await;
    let mut ids = c.ids();
    ids.shuffle(&mut rng);
    let (s, p, r) = (ids[0], ids[1], ids[2]);
    eprintln!("sessions on node {s}, publisher on node {p}, resume on node {r}");

    let (mut off, _) = v5_persistent(c.mqtt(s), "c-offline").await;
    off.subscribe("c/q1/#", QoS::AtLeastOnce).await;
    off.subscribe("c/q2/#", QoS::ExactlyOnce).await;
    off.disconnect().await;
    let (mut on, _) = v5_persistent(c.mqtt(s), "c-online").await;
    on.subscribe("c/q1/#", QoS::AtLeastOnce).await;
    on.subscribe("c/q2/#", QoS::ExactlyOnce).await;

    let n1 = rng.random_range(10..40);
    let n2 = rng.random_range(5..20);
    let l1 = publish_all(
        c.mqtt(p),
        spec("c-p1", true, 1, false, n1, |i| format!("c/q1/{}", i % 3)),
    )
    .await;
    let l2 = publish_all(
        c.mqtt(p),
        spec("c-p2", false, 2, false, n2, |_| "c/q2/x".into()),
    )
    .await;

    // Some deliveries reached the online session before its node dies.
    let before = payloads(&on.collect().await);
    c.kill9(s);
    on.kill();

    for (id, early) in [("c-offline", Vec::new()), ("c-online", before)] {
        let (present, later) = session_collect(c.mqtt(r), id).await;
        assert!(present, "{id}: session not present on node {r}");
        let q1: Vec<String> = early
            .iter()
            .chain(&later)
            .filter(|x| x.starts_with("c-p1:"))
            .cloned()
            .collect();
        let q2: Vec<String> = later
            .iter()
            .filter(|x| x.starts_with("c-p2:"))
            .cloned()
            .collect();
        let q2_early: Vec<&String> = early.iter().filter(|x| x.starts_with("c-p2:")).collect();
        assert_none(
            &format!("{id} QoS 1"),
            &history::check_delivered(&[&l1], &q1, false),
        );
        if early.is_empty() {
            // Never connected since the publishes: QoS 2 exactly once.
            assert_none(
                &format!("{id} QoS 2"),
                &history::check_delivered(&[&l2], &q2, true),
            );
        } else {
            // A QoS 2 delivery in flight at the kill may be resent (the
            // client then holds its packet id); at least once each.
            let mut q2_all: Vec<String> = q2_early.into_iter().cloned().collect();
            q2_all.extend(q2);
            assert_none(
                &format!("{id} QoS 2"),
                &history::check_delivered(&[&l2], &q2_all, false),
            );
        }
    }
}

/// (d) G1: the leader is killed with SIGKILL during streams of QoS 1
/// retained publishes (one publisher on the leader, one on a follower; v5
/// and 3.1.1); every acknowledged value is served by every survivor, and by
/// the killed node after it restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_leader_kill_under_retained_load() {
    let (_, mut rng) = crate::harness::seeded("d_leader_kill_under_retained_load");
    let mut c = Cluster::start("d", 3).await;
    let leader = c.leader().await;
    let follower = *c.ids().iter().find(|&&i| i != leader).unwrap();
    let others: Vec<u64> = c.ids().into_iter().filter(|&i| i != leader).collect();
    let count = rng.random_range(80..160);
    let kill_after = Duration::from_millis(rng.random_range(200..800));
    eprintln!("leader {leader}; {count} publishes each; kill after {kill_after:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (k, (start, v5)) in [(leader, true), (follower, false)].into_iter().enumerate() {
        let mut addrs = vec![c.mqtt(start)];
        addrs.extend(others.iter().filter(|&&i| i != start).map(|&i| c.mqtt(i)));
        let id = format!("d-p{k}");
        let topic_id = id.clone();
        let s = spec(&id, v5, 1, true, count, move |i| {
            format!("d/{topic_id}/{}", i % 5)
        });
        tasks.push(tokio::spawn(publish_stream(addrs, s, stop.clone())));
    }
    tokio::time::sleep(kill_after).await;
    c.kill9(leader);
    let mut logs = Vec::new();
    for t in tasks {
        logs.push(
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("publisher hung")
                .unwrap(),
        );
    }
    for l in &logs {
        eprintln!("publisher: {}", l.summary());
    }
    let acked: usize = logs
        .iter()
        .map(|l| l.count(|o| *o == PubOutcome::Acked))
        .sum();
    assert!(acked > 0, "nothing acknowledged at all");
    let new_leader = c.leader_among(&others).await;
    assert_ne!(new_leader, leader);
    let refs: Vec<&PubLog> = logs.iter().collect();
    let served = history::agreed_retained(&addrs_of(&c, &others), "d/#").await;
    assert_none(
        "retained on survivors",
        &history::check_retained(&refs, &served),
    );

    c.restart(leader).await;
    c.await_caught_up(&c.ids()).await;
    let all = history::agreed_retained(&addrs_of(&c, &c.ids()), "d/#").await;
    assert_eq!(all, served, "restarted node disagrees");
}

/// (e) A follower killed with SIGKILL misses retained values and queued
/// messages; after a restart it serves them (retained, and a persistent
/// session resumed on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_follower_restart_catches_up() {
    let (_, mut rng) = crate::harness::seeded("e_follower_restart_catches_up");
    let mut c = Cluster::start("e", 3).await;
    let leader = c.leader().await;
    let mut followers: Vec<u64> = c.ids().into_iter().filter(|&i| i != leader).collect();
    followers.shuffle(&mut rng);
    let (f, other) = (followers[0], followers[1]);
    let (mut s, _) = v5_persistent(c.mqtt(other), "e-sess").await;
    s.subscribe("e/q/#", QoS::AtLeastOnce).await;
    s.disconnect().await;

    c.kill9(f);
    let n = rng.random_range(20..60);
    let r = publish_all(
        c.mqtt(leader),
        spec("e-r", true, 1, true, n, |i| format!("e/r/{}", i % 7)),
    )
    .await;
    let q = publish_all(
        c.mqtt(other),
        spec("e-q", false, 1, false, n, |_| "e/q/x".into()),
    )
    .await;
    c.restart(f).await;

    let served = history::read_retained(c.mqtt(f), "e/#").await;
    assert_none(
        "retained on the restarted follower",
        &history::check_retained(&[&r], &served),
    );
    assert_eq!(served.len(), 7.min(n as usize));
    let (present, got) = session_collect(c.mqtt(f), "e-sess").await;
    assert!(present);
    assert_none(
        "queue resumed on the restarted follower",
        &history::check_delivered(&[&q], &got, false),
    );
}

/// (h) Every node killed with SIGKILL and restarted: retained values and
/// persistent sessions survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h_full_cluster_restart() {
    let (_, mut rng) = crate::harness::seeded("h_full_cluster_restart");
    let mut c = Cluster::start("h", 3).await;
    let sess_node = rng.random_range(1..=3u64);
    let (mut s, _) = v5_persistent(c.mqtt(sess_node), "h-sess").await;
    s.subscribe("h/q/#", QoS::AtLeastOnce).await;
    s.disconnect().await;
    let n = rng.random_range(10..40);
    let pub_node = rng.random_range(1..=3u64);
    let r = publish_all(
        c.mqtt(pub_node),
        spec("h-r", true, 1, true, n, |i| format!("h/r/{}", i % 6)),
    )
    .await;
    let q = publish_all(
        c.mqtt(pub_node),
        spec("h-q", true, 1, false, n, |_| "h/q/x".into()),
    )
    .await;

    for id in c.ids() {
        c.kill9(id);
    }
    for id in c.ids() {
        c.spawn_only(id);
    }
    for id in c.ids() {
        c.await_serving(id).await;
    }
    c.leader().await;
    let served = history::agreed_retained(&addrs_of(&c, &c.ids()), "h/#").await;
    assert_none(
        "retained after full restart",
        &history::check_retained(&[&r], &served),
    );
    let resume = rng.random_range(1..=3u64);
    let (present, got) = session_collect(c.mqtt(resume), "h-sess").await;
    assert!(present, "session lost in the full restart");
    assert_none(
        "queue after full restart",
        &history::check_delivered(&[&q], &got, false),
    );
}

/// (i) A node restarted with a wiped data directory (after the log was
/// compacted into snapshots) catches up and rejoins the same cluster: one
/// leader, one term, one membership; later writes reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i_wiped_node_rejoins() {
    let (_, mut rng) = crate::harness::seeded("i_wiped_node_rejoins");
    let opts = Opts {
        snapshot_every: 40,
        ..Opts::default()
    };
    let mut c = Cluster::start_with("i", 3, opts).await;
    let leader = c.leader().await;
    let victim =
        *c.ids().iter().filter(|&&i| i != leader).collect::<Vec<_>>()[rng.random_range(0..2)];
    let n = rng.random_range(120..200);
    let r = publish_all(
        c.mqtt(leader),
        spec("i-r", true, 1, true, n, |i| format!("i/r/{}", i % 9)),
    )
    .await;

    c.wipe_and_restart(victim).await;
    c.await_caught_up(&c.ids()).await;
    let l = c.leader().await;
    let mut terms = Vec::new();
    let mut members = Vec::new();
    for id in c.ids() {
        let st = c.status(id).await.expect("status");
        terms.push(st["term"].as_u64());
        let mut m: Vec<u64> = st["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_u64().unwrap())
            .collect();
        m.sort_unstable();
        members.push(m);
        assert_eq!(st["leader"].as_u64(), Some(l), "node {id}: {st}");
    }
    assert!(
        terms.windows(2).all(|w| w[0] == w[1]),
        "terms differ: {terms:?}"
    );
    assert!(
        members.iter().all(|m| *m == vec![1, 2, 3]),
        "memberships: {members:?}"
    );
    let served = history::agreed_retained(&addrs_of(&c, &c.ids()), "i/#").await;
    assert_none(
        "retained on the wiped node",
        &history::check_retained(&[&r], &served),
    );
    // New writes reach it too.
    let r2 = publish_all(
        c.mqtt(victim),
        spec("i-r2", false, 1, true, 5, |_| "i/after".into()),
    )
    .await;
    let served = history::agreed_retained(&addrs_of(&c, &c.ids()), "i/after").await;
    assert_none(
        "retained after the rejoin",
        &history::check_retained(&[&r2], &served),
    );
}

/// (j) 5 nodes tolerate the loss of 2 (CONNECT, durable publish, session
/// resume on a survivor); with 3 lost the survivors refuse CONNECT (G8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn j_five_nodes_lose_two() {
    let (_, mut rng) = crate::harness::seeded("j_five_nodes_lose_two");
    let mut c = Cluster::start("j", 5).await;
    let mut ids = c.ids();
    ids.shuffle(&mut rng);
    let (dead, alive) = ids.split_at(2);
    let (mut s, _) = v5_persistent(c.mqtt(dead[0]), "j-sess").await;
    s.subscribe("j/q/#", QoS::AtLeastOnce).await;
    s.disconnect().await;
    eprintln!("killing {dead:?}");
    for &d in dead {
        c.kill9(d);
    }
    c.leader_among(alive).await;
    let n = rng.random_range(10..30);
    let r = publish_all(
        c.mqtt(alive[0]),
        spec("j-r", true, 1, true, n, |i| format!("j/r/{}", i % 4)),
    )
    .await;
    let q = publish_all(
        c.mqtt(alive[1]),
        spec("j-q", false, 1, false, n, |_| "j/q/x".into()),
    )
    .await;
    let served = history::agreed_retained(&addrs_of(&c, alive), "j/r/#").await;
    assert_none(
        "retained with 2 of 5 down",
        &history::check_retained(&[&r], &served),
    );
    let (present, got) = session_collect(c.mqtt(alive[2]), "j-sess").await;
    assert!(present);
    assert_none(
        "queue with 2 of 5 down",
        &history::check_delivered(&[&q], &got, false),
    );

    // A third loss: no quorum, CONNECT refused everywhere left.
    c.kill9(alive[0]);
    for &id in &alive[1..] {
        for v5 in [true, false] {
            let r = RawClient::connect(c.mqtt(id), v5, &format!("j-late-{id}-{v5}"), false).await;
            let want = if v5 { 0x88 } else { 3 };
            assert_eq!(
                r.as_ref().err(),
                Some(&ConnectError::Refused(want)),
                "node {id} without quorum (v5={v5})"
            );
        }
    }
    let _ = clients::QUIET;
}

/// (l) G2 causality across nodes: a persistent session subscribes on node A
/// (SUBACK) and goes offline; right after, a publisher already connected to
/// node B publishes QoS 1 on the topic and is acknowledged. The session must
/// get the message when it resumes. Repeated for many topics to hit the
/// window in which B has not applied the subscription yet.
///
/// Regression test: node B decides whether a publish needs the log from its
/// own replica, which may lag; a read barrier on followers makes it catch up
/// first, so an acknowledged QoS 1 publish always reaches the session (G2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l_subscribe_then_publish_on_another_node() {
    let (_, mut rng) = crate::harness::seeded("l_subscribe_then_publish_on_another_node");
    let c = Cluster::start("l", 3).await;
    let mut ids = c.ids();
    ids.shuffle(&mut rng);
    let (a, b) = (ids[0], ids[1]);
    let (mut publisher, _) = RawClient::connect(c.mqtt(b), true, "l-pub", false)
        .await
        .unwrap();
    let rounds = 25;
    let mut misses = Vec::new();
    for i in 0..rounds {
        let id = format!("l-sess-{i}");
        let topic = format!("l/{i}");
        let (mut s, _) = RawClient::connect(c.mqtt(a), true, &id, true)
            .await
            .unwrap();
        assert_eq!(s.subscribe(&topic, 1).await, Ok(1));
        s.disconnect().await;
        let payload = format!("l-pub:{i}");
        assert_eq!(
            publisher
                .publish(&topic, payload.as_bytes(), 1, false)
                .await,
            PubOutcome::Acked
        );
        let (mut s, present) = RawClient::connect(c.mqtt(a), true, &id, true)
            .await
            .unwrap();
        assert!(present);
        let got = s.drain(Duration::from_millis(300)).await;
        if !got.contains(&payload) {
            misses.push(format!(
                "{payload} (published on node {b} after SUBACK on node {a}) never delivered"
            ));
        }
        s.disconnect().await;
    }
    assert_none(&format!("{rounds} rounds"), &misses);
}
