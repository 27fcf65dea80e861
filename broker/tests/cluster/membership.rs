//! Membership changes under load: a node joins by itself (auto-join through
//! the leader, learner → voter), an original follower is removed through
//! the admin API and stopped, and acknowledged state survives (G1, G2).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::seq::SliceRandom;

use crate::basic::session_collect;
use crate::harness::Cluster;
use crate::history::{self, PubLog, PubSpec, assert_none, publish_stream, subscribe_stream};
use crate::raw::{ConnectError, PubOutcome, RawClient};

fn spec(
    id: &str,
    v5: bool,
    retain: bool,
    pause_ms: u64,
    topic: impl Fn(u64) -> String + Send + Sync + 'static,
) -> PubSpec {
    PubSpec {
        id: id.to_owned(),
        v5,
        qos: 1,
        retain,
        topic: Arc::new(topic),
        count: u64::MAX,
        pause: Duration::from_millis(pause_ms),
    }
}

fn addrs_of(c: &Cluster, ids: &[u64]) -> Vec<(u64, SocketAddr)> {
    ids.iter().map(|&i| (i, c.mqtt(i))).collect()
}

/// Polls until every node of `ids` reports exactly `voters` as voters and
/// no learner (bounded).
async fn await_voters(c: &mut Cluster, ids: &[u64], voters: &[u64], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let mut all = true;
        for &id in ids {
            let m = c.members(id).await;
            all &= m.as_ref().is_some_and(|(v, l)| v == voters && l.is_empty());
        }
        if all {
            return;
        }
        if Instant::now() > deadline {
            let mut s = String::new();
            for &id in ids {
                s.push_str(&format!("\n  node {id}: {:?}", c.members(id).await));
            }
            c.fail(&format!("membership never became voters {voters:?}:{s}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (m) Membership change under load. Three nodes; QoS 1 retained
/// publishers (v5 and 3.1.1; one starts on the follower that will be
/// removed) and a QoS 1 stream into a persistent session that is online on
/// that follower. While they run, a 4th node started with the others as
/// peers joins by itself (learner, then voter); once all report 4 voters,
/// it answers `/readyz` 200 and has caught up, one original follower is
/// removed through `DELETE /api/v1/cluster/nodes/{id}` (sent to a random
/// remaining node); before it is stopped it must turn not ready and refuse
/// CONNECT (v5 0x88) by itself, then its process is stopped (SIGTERM). The
/// streams go on throughout.
/// Finally: the 3 remaining nodes agree on one membership and serve every
/// acknowledged retained value (G1), and the persistent session, resumed on
/// the new node, got every acknowledged message at least once (G2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m_membership_change_under_load() {
    let (_, mut rng) = crate::harness::seeded("m_membership_change_under_load");
    let t0 = Instant::now();
    let mut c = Cluster::start("m", 3).await;
    let leader = c.leader().await;
    let mut followers: Vec<u64> = c.ids().into_iter().filter(|&i| i != leader).collect();
    followers.shuffle(&mut rng);
    let (gone, stay) = (followers[0], followers[1]);
    eprintln!("leader {leader}; follower {gone} will be removed, {stay} stays");

    // The persistent session: online on the node that will be removed.
    let stop = Arc::new(AtomicBool::new(false));
    let stop_sub = Arc::new(AtomicBool::new(false));
    let sess = tokio::spawn(subscribe_stream(
        vec![c.mqtt(gone)],
        "m-sess".into(),
        true,
        "m/q/#".into(),
        stop_sub.clone(),
    ));
    // Let the SUBACK happen before anything is published.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pubs = vec![
        (
            vec![c.mqtt(gone), c.mqtt(leader), c.mqtt(stay)],
            spec("m-r1", true, true, 10, |i| format!("m/r/a/{}", i % 7)),
        ),
        (
            vec![c.mqtt(leader), c.mqtt(stay)],
            spec("m-r2", false, true, 10, |i| format!("m/r/b/{}", i % 5)),
        ),
        (
            vec![c.mqtt(stay), c.mqtt(leader)],
            spec("m-q", true, false, 10, |i| format!("m/q/{}", i % 3)),
        ),
    ];
    let tasks: Vec<_> = pubs
        .into_iter()
        .map(|(addrs, s)| tokio::spawn(publish_stream(addrs, s, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(rng.random_range(300..1000))).await;

    // A 4th node joins by itself.
    let t_join = Instant::now();
    let new = c.add_node(&[1, 2, 3]).await;
    let serving = t_join.elapsed();
    await_voters(
        &mut c,
        &[1, 2, 3, new],
        &[1, 2, 3, new],
        Duration::from_secs(60),
    )
    .await;
    let voter = t_join.elapsed();
    c.await_ready(&[new]).await;
    c.await_caught_up(&[1, 2, 3, new]).await;
    eprintln!(
        "node {new} joined: serving MQTT after {serving:?}, voter after {voter:?}, ready and caught up after {:?}",
        t_join.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(rng.random_range(300..1000))).await;

    // Remove an original follower through the admin API, then stop it.
    let remaining: Vec<u64> = {
        let mut r: Vec<u64> = c.ids().into_iter().filter(|&i| i != gone).collect();
        r.sort_unstable();
        r
    };
    let via = [leader, stay, new][rng.random_range(0..3)];
    let t_remove = Instant::now();
    let resp = c.admin_remove_node(via, gone).await;
    eprintln!(
        "DELETE node {gone} via node {via}: {:?} after {:?}",
        resp.as_ref().map(|r| r.0),
        t_remove.elapsed()
    );
    match &resp {
        Some((200, _)) => {}
        other => c.fail(&format!("removing node {gone} via {via}: {other:?}")),
    }
    await_voters(&mut c, &remaining, &remaining, Duration::from_secs(30)).await;
    // Until it is stopped, the removed node must notice that it lost the
    // cluster: not ready, and it refuses new clients (it can no longer
    // commit anything, so it must not look like a working node).
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.ready(gone).await {
        if Instant::now() > deadline {
            c.fail(&format!("removed node {gone} still reports ready"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "removed node {gone} not ready {:?} after the DELETE",
        t_remove.elapsed()
    );
    let r = RawClient::connect(c.mqtt(gone), true, "m-late", false).await;
    assert_eq!(
        r.as_ref().err(),
        Some(&ConnectError::Refused(0x88)),
        "CONNECT on the removed node {gone}"
    );
    tokio::time::sleep(Duration::from_millis(rng.random_range(0..500))).await;
    c.terminate(gone).await;
    eprintln!("node {gone} removed and stopped");
    tokio::time::sleep(Duration::from_millis(rng.random_range(500..1500))).await;

    stop.store(true, Ordering::SeqCst);
    let mut logs: Vec<PubLog> = Vec::new();
    for t in tasks {
        logs.push(
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("publisher hung")
                .unwrap(),
        );
    }
    stop_sub.store(true, Ordering::SeqCst);
    let online = tokio::time::timeout(Duration::from_secs(30), sess)
        .await
        .expect("subscriber hung")
        .unwrap();
    for l in &logs {
        eprintln!("publisher: {}", l.summary());
    }
    eprintln!("subscriber online on node {gone}: {}", online.summary());
    for l in &logs {
        assert!(
            l.count(|o| *o == PubOutcome::Acked) > 0,
            "a publisher got nothing acknowledged: {}",
            l.summary()
        );
    }

    // The remaining three: one leader, one membership, caught up.
    let l = c.leader_among(&remaining).await;
    assert_ne!(l, gone);
    c.await_caught_up(&remaining).await;
    await_voters(&mut c, &remaining, &remaining, Duration::from_secs(10)).await;

    // G1 on the remaining nodes.
    let (r_logs, q_logs) = logs.split_at(2);
    let r_refs: Vec<&PubLog> = r_logs.iter().collect();
    let served = history::agreed_retained(&addrs_of(&c, &remaining), "m/r/#").await;
    assert_none(
        "retained on the remaining nodes",
        &history::check_retained(&r_refs, &served),
    );

    // G2: the session resumed on the new node.
    let (present, later) = session_collect(c.mqtt(new), "m-sess").await;
    assert!(present, "m-sess: session not present on the new node {new}");
    let mut all = online.delivered.clone();
    all.extend(later.iter().cloned());
    let q_refs: Vec<&PubLog> = q_logs.iter().collect();
    assert_none("persistent session", &online.violations);
    assert_none(
        "persistent session resumed on the new node",
        &history::check_delivered(&q_refs, &all, false),
    );
    eprintln!(
        "m: {} retained topics agreed; session got {} deliveries online + {} on resume; total {:?}",
        served.len(),
        online.delivered.len(),
        later.len(),
        t0.elapsed()
    );
}
