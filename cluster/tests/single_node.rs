//! A one-node cluster: bootstrap without peers, submit, restart from the log and from
//! snapshots (with log compaction).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/harness.rs"]
mod harness;

use harness::*;
use starling_cluster::{Role, StateMachine};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_submits_and_restarts_from_log() {
    init_tracing();
    bounded(60, async {
        let root = tempfile::tempdir().unwrap();
        let s = specs(root.path(), &[1]);
        let node = start(config(&s[0], &s)).await;
        eventually(10, "leader", || node.status().role == Role::Leader).await;
        let mut expect = 0;
        for i in 1..=100u64 {
            expect += i;
            assert_eq!(node.submit(Command::Add(i)).await.unwrap(), expect);
        }
        node.read_barrier().await.unwrap();
        assert_eq!(node.with_state(|c| c.total), 5050);
        eventually(5, "ready", || node.is_ready()).await;
        let st = node.status();
        assert_eq!(st.members.len(), 1);
        assert!(st.members[0].voter);
        node.shutdown().await;
        drop(node);

        // Restart from the same dir: the log is re-applied.
        let node = start(config(&s[0], &s)).await;
        eventually(10, "state restored", || {
            node.with_state(|c| c.total) == 5050
        })
        .await;
        assert_eq!(
            node.with_state(|c| c.seen.clone()),
            (1..=100).collect::<Vec<_>>()
        );
        assert_eq!(node.submit(Command::Add(1)).await.unwrap(), 5051);
        node.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_compact_the_log_and_restore_on_restart() {
    init_tracing();
    bounded(60, async {
        let root = tempfile::tempdir().unwrap();
        let s = specs(root.path(), &[1]);
        let mut c = config(&s[0], &s);
        c.snapshot_every = 10;
        let node = start(c.clone()).await;
        for i in 1..=100u64 {
            node.submit(Command::Add(i)).await.unwrap();
        }
        eventually(10, "snapshot taken", || {
            node.status().snapshot_index.is_some_and(|i| i >= 90)
        })
        .await;
        assert!(root.path().join("node1/snapshot.bin").exists());
        eventually(10, "log purged", || {
            node.status().purged_index.is_some_and(|i| i >= 80)
        })
        .await;
        node.shutdown().await;
        drop(node);

        let node = start(c).await;
        // The snapshot alone restores most of the state before Raft even runs.
        eventually(10, "state restored", || {
            node.with_state(|c| c.total) == 5050
        })
        .await;
        assert_eq!(node.with_state(|c| c.seen.len()), 100);
        assert_eq!(node.submit(Command::Add(50)).await.unwrap(), 5100);
        node.shutdown().await;
    })
    .await;
}

#[test]
fn counter_snapshot_round_trips() {
    let mut a = Counter::default();
    a.apply(Command::Add(3));
    let mut b = Counter::default();
    b.restore(&a.snapshot().unwrap()).unwrap();
    assert_eq!(a, b);
}
