//! Test harness: a toy counter state machine and helpers to run nodes on 127.0.0.1.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use starling_cluster::{Cluster, ClusterConfig, PeerConfig, Role, StateMachine, StateMachineError};

pub const SECRET: &[u8] = b"test-cluster-secret-0123456789";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    Add(u64),
    /// Adds the blob's length (for large-entry tests).
    Blob(Vec<u8>),
}

/// Sums what it is given and remembers the order (to compare nodes).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    pub total: u64,
    pub seen: Vec<u64>,
}

impl StateMachine for Counter {
    type Command = Command;
    type Response = u64;

    fn apply(&mut self, cmd: Command) -> u64 {
        let n = match cmd {
            Command::Add(n) => n,
            Command::Blob(b) => b.len() as u64,
        };
        self.total += n;
        self.seen.push(n);
        self.total
    }

    fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
        postcard::to_allocvec(self).map_err(StateMachineError::new)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError> {
        *self = postcard::from_bytes(snapshot).map_err(StateMachineError::new)?;
        Ok(())
    }
}

pub type Node = Cluster<Counter>;

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A free loopback port (bind :0, read, release).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Specs of a group of nodes with ids 1..=n on free ports.
pub struct Spec {
    pub id: u64,
    pub port: u16,
    pub dir: PathBuf,
}

impl Spec {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

pub fn specs(root: &Path, ids: &[u64]) -> Vec<Spec> {
    ids.iter()
        .map(|&id| Spec {
            id,
            port: free_port(),
            dir: root.join(format!("node{id}")),
        })
        .collect()
}

/// Config of `me` with every other spec in `all` as a peer.
pub fn config(me: &Spec, all: &[Spec]) -> ClusterConfig {
    let mut c = ClusterConfig::new(
        me.id,
        format!("127.0.0.1:{}", me.port).parse().unwrap(),
        me.dir.clone(),
        SECRET.to_vec(),
    );
    c.peers = all
        .iter()
        .filter(|s| s.id != me.id)
        .map(|s| PeerConfig {
            id: s.id,
            addr: s.addr(),
        })
        .collect();
    c.heartbeat = Duration::from_millis(50);
    c.election_timeout = (Duration::from_millis(300), Duration::from_millis(600));
    c.request_timeout = Duration::from_secs(5);
    c.snapshot_every = 1000;
    c
}

pub async fn start(c: ClusterConfig) -> Node {
    Cluster::start(c, Counter::default()).await.unwrap()
}

/// Polls `f` every 50 ms until it is true, panicking after `secs`.
pub async fn eventually<F: FnMut() -> bool>(secs: u64, what: &str, mut f: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The leader as agreed by all given nodes that see one.
pub async fn wait_leader(nodes: &[&Node], secs: u64) -> u64 {
    let mut leader = 0;
    eventually(secs, "a leader known to all", || {
        let ls: Vec<_> = nodes.iter().map(|n| n.status().leader).collect();
        match ls.first().copied().flatten() {
            Some(l)
                if ls.iter().all(|x| *x == Some(l))
                    && nodes
                        .iter()
                        .any(|n| n.status().node_id == l && n.status().role == Role::Leader) =>
            {
                leader = l;
                true
            }
            _ => false,
        }
    })
    .await;
    leader
}

/// Submits with retries on transient errors (elections in progress).
pub async fn submit_retry(n: &Node, v: u64) -> u64 {
    let mut last = None;
    for _ in 0..20 {
        match n.submit(Command::Add(v)).await {
            Ok(r) => return r,
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("submit failed: {last:?}");
}

/// Runs a test body under a hard time bound.
pub async fn bounded<F: Future<Output = ()>>(secs: u64, f: F) {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test exceeded its time bound");
}
