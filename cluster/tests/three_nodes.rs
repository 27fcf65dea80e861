//! Three (and four) nodes in one process on 127.0.0.1: automatic bootstrap, forwarding,
//! fail-over, catch-up, wiped-disk rejoin, authentication, messaging, membership.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/harness.rs"]
mod harness;

use std::time::Duration;

use bytes::Bytes;
use harness::*;
use starling_cluster::{ClusterError, PeerConfig};

async fn start_three(root: &std::path::Path) -> (Vec<Spec>, Vec<Node>) {
    let s = specs(root, &[1, 2, 3]);
    let (a, b, c) = tokio::join!(
        start(config(&s[0], &s)),
        start(config(&s[1], &s)),
        start(config(&s[2], &s))
    );
    (s, vec![a, b, c])
}

fn seen(n: &Node) -> Vec<u64> {
    n.with_state(|c| c.seen.clone())
}

async fn all_converge(nodes: &[&Node], len: usize) {
    converge_at_least(nodes, len).await;
    assert_eq!(seen(nodes[0]).len(), len);
}

/// Waits until all nodes applied the same sequence of at least `len` commands; returns its length.
async fn converge_at_least(nodes: &[&Node], len: usize) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let first = seen(nodes[0]);
        if first.len() >= len && nodes.iter().all(|n| seen(n) == first) {
            return first.len();
        }
        if tokio::time::Instant::now() > deadline {
            let st: Vec<_> = nodes.iter().map(|n| (seen(n), n.status())).collect();
            panic!("nodes did not converge on {len} entries: {st:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_bootstrap_forward_failover_catch_up() {
    init_tracing();
    bounded(120, async {
        let root = tempfile::tempdir().unwrap();
        let (s, nodes) = start_three(root.path()).await;
        let refs: Vec<&Node> = nodes.iter().collect();
        let leader = wait_leader(&refs, 20).await;
        // Exactly one cluster: every node has the same three voters.
        for n in &nodes {
            let st = n.status();
            assert_eq!(st.members.iter().filter(|m| m.voter).count(), 3, "{st:?}");
        }
        let li = usize::try_from(leader - 1).unwrap();
        let fi = (li + 1) % 3;
        // On the leader and forwarded from a follower.
        for i in 0..10u64 {
            nodes[li].submit(Command::Add(i)).await.unwrap();
            nodes[fi].submit(Command::Add(100 + i)).await.unwrap();
        }
        all_converge(&refs, 20).await;
        nodes[fi].read_barrier().await.unwrap();
        eventually(10, "all ready", || nodes.iter().all(|n| n.is_ready())).await;
        let st = nodes[li].status();
        assert_eq!(st.replication.len(), 2, "{st:?}");

        // Kill the leader: a new one is elected among the other two.
        nodes[li].shutdown().await;
        let rest: Vec<&Node> = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != li)
            .map(|(_, n)| n)
            .collect();
        let new_leader = wait_leader(&rest, 20).await;
        assert_ne!(new_leader, leader);
        for i in 0..5u64 {
            submit_retry(rest[0], 1000 + i).await;
            submit_retry(rest[1], 2000 + i).await;
        }
        let len = converge_at_least(&rest, 30).await;

        // Restart the old leader from its data dir: it catches up.
        let old = start(config(&s[li], &s)).await;
        let mut all: Vec<&Node> = rest.clone();
        all.push(&old);
        all_converge(&all, len).await;
        submit_retry(&old, 7).await;
        all_converge(&all, len + 1).await;
        for n in all {
            n.shutdown().await;
        }
    })
    .await;
}

/// `submit` on a follower resolves only once the follower's own state machine applied
/// the command (read-your-writes): the forwarded write's response carries its log index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_submit_is_applied_locally_when_it_returns() {
    init_tracing();
    bounded(60, async {
        let root = tempfile::tempdir().unwrap();
        let (_s, nodes) = start_three(root.path()).await;
        let refs: Vec<&Node> = nodes.iter().collect();
        let leader = wait_leader(&refs, 20).await;
        let fi = usize::try_from(leader % 3).unwrap();
        for i in 0..30u64 {
            let total = nodes[fi].submit(Command::Add(1000 + i)).await.unwrap();
            let (local_total, last) = nodes[fi].with_state(|c| (c.total, c.seen.last().copied()));
            assert!(
                local_total >= total,
                "follower state behind its own write: {local_total} < {total}"
            );
            assert!(
                seen(&nodes[fi]).contains(&(1000 + i)),
                "write {i} not applied locally (last {last:?})"
            );
        }
        for n in &nodes {
            n.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_node_rejoins_without_forming_a_second_cluster() {
    init_tracing();
    bounded(120, async {
        let root = tempfile::tempdir().unwrap();
        let s = specs(root.path(), &[1, 2, 3]);
        // Small snapshot interval: the log is compacted, so the wiped node needs a snapshot.
        let cfg = |i: usize| {
            let mut c = config(&s[i], &s);
            c.snapshot_every = 5;
            c
        };
        let (a, b, c) = tokio::join!(start(cfg(0)), start(cfg(1)), start(cfg(2)));
        let nodes = [a, b, c];
        let refs: Vec<&Node> = nodes.iter().collect();
        wait_leader(&refs, 20).await;
        for i in 0..20u64 {
            submit_retry(&nodes[1], i).await;
        }
        all_converge(&refs, 20).await;
        // Node 1 is the lowest id: the one that would initialize. Wipe it.
        nodes[0].shutdown().await;
        std::fs::remove_dir_all(&s[0].dir).unwrap();
        let rest: Vec<&Node> = nodes[1..].iter().collect();
        let leader = wait_leader(&rest, 20).await;
        eventually(10, "leader log compacted", || {
            nodes[1].status().purged_index.is_some_and(|i| i >= 5)
        })
        .await;
        let n1 = start(cfg(0)).await;
        let all = [&nodes[1], &nodes[2], &n1];
        all_converge(&all, 20).await;
        let st = n1.status();
        assert_eq!(st.members.len(), 3, "{st:?}");
        assert!(
            st.snapshot_index.is_some(),
            "caught up through a snapshot: {st:?}"
        );
        assert!(st.term >= 1);
        // Same cluster: same leader, and writes through the rejoined node reach everyone.
        eventually(20, "n1 follows the existing leader", || {
            n1.status()
                .leader
                .is_some_and(|l| l == leader || l == nodes[1].status().leader.unwrap_or(0))
        })
        .await;
        submit_retry(&n1, 99).await;
        all_converge(&all, 21).await;
        for n in all {
            n.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_never_joins() {
    init_tracing();
    bounded(90, async {
        let root = tempfile::tempdir().unwrap();
        let (s, nodes) = start_three(root.path()).await;
        let refs: Vec<&Node> = nodes.iter().collect();
        wait_leader(&refs, 20).await;

        let bad_spec = &specs(root.path(), &[4])[0];
        let mut bad_cfg = config(bad_spec, &s);
        bad_cfg.peers = s
            .iter()
            .map(|p| PeerConfig {
                id: p.id,
                addr: p.addr(),
            })
            .collect();
        bad_cfg.secret = b"not-the-cluster-secret-at-all".to_vec();
        bad_cfg.request_timeout = Duration::from_secs(2);
        let bad = start(bad_cfg).await;

        // It probes the cluster and would auto-join, but its links never authenticate.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let r = bad.submit(Command::Add(1)).await;
        assert!(
            matches!(
                r,
                Err(ClusterError::NoQuorum
                    | ClusterError::Timeout
                    | ClusterError::NotLeader { .. })
            ),
            "{r:?}"
        );
        let st = bad.status();
        assert_eq!(st.leader, None, "{st:?}");
        assert!(st.members.is_empty(), "{st:?}");
        assert!(!bad.is_ready());
        // The cluster keeps working and never heard of node 4.
        for i in 0..5u64 {
            submit_retry(&nodes[1], i).await;
        }
        for n in &nodes {
            let voters: Vec<u64> = n
                .status()
                .members
                .iter()
                .filter(|m| m.voter)
                .map(|m| m.id)
                .collect();
            assert_eq!(voters, vec![1, 2, 3]);
            assert_eq!(n.status().members.len(), 3);
        }
        bad.shutdown().await;
        for n in &nodes {
            n.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_messages_are_delivered() {
    init_tracing();
    bounded(60, async {
        let root = tempfile::tempdir().unwrap();
        let (_s, nodes) = start_three(root.path()).await;
        let mut rx2 = nodes[1].incoming().unwrap();
        assert!(matches!(
            nodes[1].incoming(),
            Err(ClusterError::IncomingTaken)
        ));
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut i = 0u32;
        // The link may still be connecting: messages sent while down are dropped (best effort).
        while got.len() < 3 && tokio::time::Instant::now() < deadline {
            i += 1;
            nodes[0]
                .send_to(2, Bytes::from(format!("hello {i}")))
                .unwrap();
            if let Ok(Some((from, msg))) =
                tokio::time::timeout(Duration::from_millis(100), rx2.recv()).await
            {
                assert_eq!(from, 1);
                got.push(msg);
            }
        }
        assert!(got.len() >= 3, "got {got:?}");
        assert!(got.iter().all(|m| m.starts_with(b"hello ")));
        assert!(matches!(
            nodes[0].send_to(42, Bytes::from_static(b"x")),
            Err(ClusterError::UnknownPeer(42))
        ));
        for n in &nodes {
            n.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fourth_node_added_as_learner_promoted_then_removed() {
    init_tracing();
    bounded(120, async {
        let root = tempfile::tempdir().unwrap();
        let (s, nodes) = start_three(root.path()).await;
        let refs: Vec<&Node> = nodes.iter().collect();
        wait_leader(&refs, 20).await;
        for i in 0..10u64 {
            submit_retry(&nodes[0], i).await;
        }
        let s4 = &specs(root.path(), &[4])[0];
        let mut c4 = config(s4, &s);
        c4.auto_join = false;
        let n4 = start(c4).await;
        // Not a member until added: it must not bootstrap on its own.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(n4.status().members.is_empty());

        // Added through a follower (forwarded to the leader).
        let leader = nodes[0].status().leader.unwrap();
        let via = nodes.iter().find(|n| n.status().node_id != leader).unwrap();
        via.add_node(4, s4.addr()).await.unwrap();
        for n in &nodes {
            eventually(10, "4 is a voter everywhere", || {
                n.status().members.iter().any(|m| m.id == 4 && m.voter)
            })
            .await;
        }
        let mut all: Vec<&Node> = nodes.iter().collect();
        all.push(&n4);
        all_converge(&all, 10).await;
        submit_retry(&n4, 5).await;
        all_converge(&all, 11).await;
        eventually(10, "4 ready", || n4.is_ready()).await;

        nodes[0].remove_node(4).await.unwrap();
        for n in &nodes {
            eventually(10, "4 removed everywhere", || {
                n.status().members.iter().all(|m| m.id != 4)
            })
            .await;
        }
        submit_retry(&nodes[2], 6).await;
        all_converge(&refs, 12).await;
        // Idempotent.
        nodes[1].remove_node(4).await.unwrap();
        n4.shutdown().await;
        for n in &nodes {
            n.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lowest_id_bootstraps_and_only_when_all_peers_answer() {
    init_tracing();
    bounded(60, async {
        let root = tempfile::tempdir().unwrap();
        let s = specs(root.path(), &[1, 2, 3]);
        let (n2, n3) = tokio::join!(start(config(&s[1], &s)), start(config(&s[2], &s)));
        tokio::time::sleep(Duration::from_secs(2)).await;
        for n in [&n2, &n3] {
            let st = n.status();
            assert!(st.leader.is_none() && st.members.is_empty(), "{st:?}");
        }
        let n1 = start(config(&s[0], &s)).await;
        let all = [&n1, &n2, &n3];
        wait_leader(&all, 20).await;
        submit_retry(&n3, 1).await;
        all_converge(&all, 1).await;
        for n in all {
            n.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_without_quorum_refuses_writes_and_is_not_ready() {
    init_tracing();
    bounded(60, async {
        let root = tempfile::tempdir().unwrap();
        let s = specs(root.path(), &[1, 2, 3]);
        let cfg = |i: usize| {
            let mut c = config(&s[i], &s);
            c.request_timeout = Duration::from_secs(2);
            c
        };
        let (a, b, c) = tokio::join!(start(cfg(0)), start(cfg(1)), start(cfg(2)));
        let nodes = [a, b, c];
        let refs: Vec<&Node> = nodes.iter().collect();
        let leader = wait_leader(&refs, 20).await;
        submit_retry(&nodes[0], 1).await;
        let li = usize::try_from(leader - 1).unwrap();
        for (i, n) in nodes.iter().enumerate() {
            if i != li {
                n.shutdown().await;
            }
        }
        let l = &nodes[li];
        eventually(10, "leader reports not ready", || !l.is_ready()).await;
        let r = l.submit(Command::Add(2)).await;
        assert!(
            matches!(r, Err(ClusterError::NoQuorum | ClusterError::Timeout)),
            "{r:?}"
        );
        let r = l.read_barrier().await;
        assert!(
            matches!(r, Err(ClusterError::NoQuorum | ClusterError::Timeout)),
            "{r:?}"
        );
        l.shutdown().await;
        assert!(matches!(
            l.submit(Command::Add(3)).await,
            Err(ClusterError::Shutdown)
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_entries_are_split_across_frames_and_oversize_commands_refused() {
    init_tracing();
    bounded(90, async {
        let root = tempfile::tempdir().unwrap();
        let s = specs(root.path(), &[1, 2, 3]);
        let cfg = |i: usize| {
            let mut c = config(&s[i], &s);
            c.max_frame = 64 * 1024;
            c
        };
        let (a, b, c) = tokio::join!(start(cfg(0)), start(cfg(1)), start(cfg(2)));
        let mut nodes = vec![a, b, c];
        let refs: Vec<&Node> = nodes.iter().collect();
        let leader = wait_leader(&refs, 20).await;
        // Stop one follower; the others keep committing 20 KiB entries.
        let down = (0..3).find(|i| *i as u64 + 1 != leader).unwrap();
        nodes[down].shutdown().await;
        let up: Vec<usize> = (0..3).filter(|i| *i != down).collect();
        for _ in 0..20 {
            nodes[up[0]]
                .submit(Command::Blob(vec![7; 20 * 1024]))
                .await
                .unwrap();
        }
        // Catching up needs many entries: they must go in batches that fit one frame.
        nodes[down] = start(cfg(down)).await;
        let all: Vec<&Node> = nodes.iter().collect();
        converge_at_least(&all, 20).await;
        let r = nodes[up[1]].submit(Command::Blob(vec![1; 70 * 1024])).await;
        assert!(matches!(r, Err(ClusterError::TooLarge(_))), "{r:?}");
        for n in &nodes {
            n.shutdown().await;
        }
    })
    .await;
}
