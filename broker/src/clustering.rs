//! The broker as a member of a `starling-cluster` Raft group.
//!
//! Three adapters tie the MQTT broker to the generic cluster crate:
//! - [`BrokerMachine`]: the broker's [`State`] as the replicated state machine;
//!   apply effects go to the node's effect sink (non-blocking).
//! - [`RaftReplicator`]: `Replicator::submit` → `Cluster::submit`.
//! - [`ClusterTransport`]: the peer links as the live-traffic transport of `peers`.
//!
//! A single node is a Raft group of one on the same code path (G6 comes from
//! the on-disk log).

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use starling_cluster::{Cluster, ClusterConfig, PeerConfig, StateMachine, StateMachineError};

use crate::config::Config;
use crate::error::StartError;
use crate::peers::PeerTransport;
use crate::replication::{EffectSink, ReplicationError, Replicator, SubmitFuture};
use crate::state::{Command, Effects, NodeId, Response, State};

/// The broker's state machine as the cluster replicates it.
pub(crate) struct BrokerMachine {
    state: Arc<Mutex<State>>,
    sink: Arc<dyn EffectSink>,
}

impl BrokerMachine {
    pub fn new(state: Arc<Mutex<State>>, sink: Arc<dyn EffectSink>) -> BrokerMachine {
        BrokerMachine { state, sink }
    }
}

impl StateMachine for BrokerMachine {
    type Command = Command;
    type Response = Response;

    fn apply(&mut self, cmd: Command) -> Response {
        let mut fx = Effects::default();
        let resp = self.state.lock().apply(cmd, &mut fx);
        if fx != Effects::default() {
            self.sink.on_effects(fx);
        }
        resp
    }

    fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
        self.state
            .lock()
            .snapshot()
            .map_err(|e| StateMachineError::new(e.to_string()))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError> {
        let mut state = self.state.lock();
        state
            .restore(snapshot)
            .map_err(|e| StateMachineError::new(e.to_string()))?;
        self.sink.on_restored(&state);
        Ok(())
    }
}

/// Commits commands through the Raft log.
pub(crate) struct RaftReplicator {
    cluster: Cluster<BrokerMachine>,
}

impl Replicator for RaftReplicator {
    fn submit(&self, cmd: Command) -> SubmitFuture {
        let cluster = self.cluster.clone();
        Box::pin(async move {
            cluster
                .submit(cmd)
                .await
                .map_err(|e| ReplicationError::Unavailable(e.to_string()))
        })
    }

    fn is_leader(&self) -> bool {
        self.cluster.is_leader()
    }
}

/// The cluster's peer links carry `peers` traffic.
pub(crate) struct ClusterTransport {
    cluster: Cluster<BrokerMachine>,
}

impl PeerTransport for ClusterTransport {
    fn send(&self, node: NodeId, msg: Bytes) -> bool {
        self.cluster.send_to(node, msg).is_ok()
    }

    fn peers(&self) -> Vec<NodeId> {
        let s = self.cluster.status();
        s.members
            .iter()
            .map(|m| m.id)
            .filter(|&id| id != s.node_id)
            .collect()
    }
}

/// The running cluster membership of this node.
pub(crate) struct Membership {
    pub cluster: Cluster<BrokerMachine>,
    pub replicator: Arc<RaftReplicator>,
    pub transport: Arc<ClusterTransport>,
}

/// Builds the cluster configuration from the broker's and starts Raft.
pub(crate) async fn join(
    config: &Config,
    machine: BrokerMachine,
) -> Result<Membership, StartError> {
    let c = &config.cluster;
    let peers = c.peer_specs()?;
    let secret = match &c.secret_file {
        Some(path) => std::fs::read(path).map_err(|e| {
            StartError::Cluster(format!(
                "cannot read cluster.secret_file {}: {e}",
                path.display()
            ))
        })?,
        // A lone node: nobody else can ever prove this.
        None => rand::random::<[u8; 32]>().to_vec(),
    };
    let listen = c
        .listen
        .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut cc = ClusterConfig::new(config.node.id, listen, config.node.data_dir.clone(), secret);
    cc.advertise = c.advertise.clone().unwrap_or_else(|| listen.to_string());
    cc.peers = peers
        .into_iter()
        .map(|p| PeerConfig {
            id: p.id,
            addr: p.addr,
        })
        .collect();
    cc.heartbeat = c.heartbeat;
    cc.election_timeout = (c.election_timeout_min, c.election_timeout_max);
    cc.snapshot_every = c.snapshot_every;
    cc.request_timeout = c.request_timeout;
    let cluster = Cluster::start(cc, machine)
        .await
        .map_err(|e| StartError::Cluster(e.to_string()))?;
    Ok(Membership {
        replicator: Arc::new(RaftReplicator {
            cluster: cluster.clone(),
        }),
        transport: Arc::new(ClusterTransport {
            cluster: cluster.clone(),
        }),
        cluster,
    })
}
