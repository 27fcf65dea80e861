//! The public, typed handle: encodes commands and responses and delegates to the engine.

use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::config::ClusterConfig;
use crate::error::{ClusterError, StateMachineError};
use crate::raft::RaftNode;
use crate::state_machine::{SharedStateMachine, StateMachine};
use crate::status::ClusterStatus;

/// A running cluster node. Cheap to clone; all clones drive the same node.
///
/// Call [`Cluster::shutdown`] before dropping the last clone: Raft and the peer links run
/// as background tasks until then.
pub struct Cluster<SM: StateMachine> {
    node: RaftNode,
    state: Arc<Mutex<SM>>,
    _sm: PhantomData<fn() -> SM>,
}

impl<SM: StateMachine> Clone for Cluster<SM> {
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
            state: self.state.clone(),
            _sm: PhantomData,
        }
    }
}

impl<SM: StateMachine> Cluster<SM> {
    /// Validates the configuration, opens the data dir (restoring the last snapshot into
    /// `sm`), binds the peer port and starts Raft. A node without state bootstraps or joins
    /// by itself (see the crate docs); this call does not wait for that.
    pub async fn start(config: ClusterConfig, sm: SM) -> Result<Self, ClusterError> {
        let state = Arc::new(Mutex::new(sm));
        let node = RaftNode::start(config, Arc::new(SharedStateMachine(state.clone()))).await?;
        Ok(Self {
            node,
            state,
            _sm: PhantomData,
        })
    }

    /// Replicates `cmd` and resolves with its response once it is committed and applied
    /// locally. Works on any node (a follower forwards to the leader). Bounded by
    /// `request_timeout`; on `Timeout` or `Link` errors the command may have been applied.
    pub async fn submit(&self, cmd: SM::Command) -> Result<SM::Response, ClusterError> {
        let bytes = postcard::to_allocvec(&cmd)
            .map_err(|e| StateMachineError::new(format!("command does not encode: {e}")))?;
        let resp = self.node.submit(bytes).await?;
        Ok(postcard::from_bytes(&resp)
            .map_err(|e| StateMachineError::new(format!("response does not decode: {e}")))?)
    }

    /// Linearizable read barrier: once it returns, the local state machine reflects every
    /// write committed before the call (ReadIndex through the leader).
    pub async fn read_barrier(&self) -> Result<(), ClusterError> {
        self.node.read_barrier().await
    }

    /// Runs `f` on the local state machine (no barrier; call [`Cluster::read_barrier`] first
    /// for a linearizable read). Do not block inside `f`: it holds the state lock.
    pub fn with_state<R>(&self, f: impl FnOnce(&SM) -> R) -> R {
        f(&self.state.lock())
    }

    /// Adds node `id` (reachable at `addr`, `host:port`) as a learner, then promotes it to
    /// voter once it caught up. Forwarded to the leader if needed; idempotent.
    pub async fn add_node(&self, id: u64, addr: String) -> Result<(), ClusterError> {
        self.node.add_node(id, addr).await
    }

    /// Removes node `id` from the membership (voter or learner). Idempotent.
    pub async fn remove_node(&self, id: u64) -> Result<(), ClusterError> {
        self.node.remove_node(id).await
    }

    /// Point-in-time status of this node.
    pub fn status(&self) -> ClusterStatus {
        self.node.status()
    }

    /// Ready = member, leader known, quorum reachable (leader: recent quorum ack; follower:
    /// recent contact from the leader), and applied within `ready_lag` of the leader's commit.
    pub fn is_ready(&self) -> bool {
        self.node.is_ready()
    }

    /// True while this node believes it is the leader (cheap; no quorum check).
    pub fn is_leader(&self) -> bool {
        self.node.is_leader()
    }

    /// How long ago this node last had proof that a quorum follows the current leader:
    /// on the leader, the last quorum acknowledgement (zero for a one-voter group); on a
    /// follower, the last AppendEntries from the leader. `None` without a leader. An
    /// application fences its clients when this grows past the shortest election
    /// timeout: by then the majority may have elected a leader without this node.
    pub fn quorum_contact(&self) -> Option<std::time::Duration> {
        self.node.quorum_contact()
    }

    /// Best-effort message to a peer over its link (not through the log). Never blocks:
    /// fails with `QueueFull` when the bounded queue is full, `UnknownPeer` if no address is
    /// known. Messages to an unreachable peer are dropped.
    pub fn send_to(&self, node: u64, msg: Bytes) -> Result<(), ClusterError> {
        self.node.peers().send_message(node, msg)
    }

    /// Takes the receiver of messages from peers, `(from, bytes)` (once per node).
    /// Messages arriving while the queue is full are dropped and counted.
    pub fn incoming(&self) -> Result<mpsc::Receiver<(u64, Bytes)>, ClusterError> {
        self.node
            .peers()
            .take_incoming()
            .ok_or(ClusterError::IncomingTaken)
    }

    /// Peer messages dropped because the incoming queue was full.
    pub fn dropped_incoming(&self) -> u64 {
        self.node.peers().dropped_incoming()
    }

    /// Graceful stop: stop Raft (openraft 0.9 cannot transfer leadership; the others elect
    /// a new leader after an election timeout), close links, wait for tasks. Idempotent.
    pub async fn shutdown(&self) {
        self.node.shutdown().await;
    }
}
