//! The Raft engine behind [`crate::Cluster`]: openraft wired to the redb log store, the
//! application's state machine, and the peer links. Everything here works on encoded
//! commands and responses (`Vec<u8>`), so openraft's types are declared once, not per
//! application type. This is the only place (with `raft/`) that names openraft.

mod bootstrap;
mod log_store;
mod network;
mod rpc;
mod service;
mod sm_store;
pub(crate) mod storage_suite;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, RaftMetrics, ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ClusterConfig;
use crate::error::{ClusterError, LinkError};
use crate::peer::{LinkSettings, Peers};
use crate::state_machine::ErasedStateMachine;
use crate::status::{ClusterStatus, FollowerStatus, MemberStatus, Role};
use log_store::LogStore;
use rpc::{RemoteError, Rpc, RpcReply};
use sm_store::SmStore;

openraft::declare_raft_types!(
    /// openraft type configuration: commands and responses are postcard bytes.
    pub(crate) TypeConfig:
        D = Vec<u8>,
        R = Vec<u8>,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

pub(crate) type Entry = openraft::Entry<TypeConfig>;
type Raft = openraft::Raft<TypeConfig>;
type Metrics = RaftMetrics<u64, BasicNode>;

/// State shared by the engine, its request handler and its background tasks.
pub(crate) struct Shared {
    id: u64,
    config: ClusterConfig,
    raft: Raft,
    peers: Arc<Peers>,
    metrics: watch::Receiver<Metrics>,
    /// Last AppendEntries/InstallSnapshot from a leader: when, from whom, its commit index.
    leader_contact: Mutex<Option<(Instant, u64, Option<u64>)>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    stopped: AtomicBool,
}

/// A running Raft node (cheap to clone).
#[derive(Clone)]
pub(crate) struct RaftNode {
    shared: Arc<Shared>,
}

fn openraft_config(c: &ClusterConfig) -> Result<openraft::Config, ClusterError> {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let cfg = openraft::Config {
        cluster_name: "starling".into(),
        heartbeat_interval: ms(c.heartbeat),
        election_timeout_min: ms(c.election_timeout.0),
        election_timeout_max: ms(c.election_timeout.1),
        install_snapshot_timeout: ms(c.request_timeout).max(1000),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(c.snapshot_every),
        max_in_snapshot_log_to_keep: c.snapshot_every.min(1000),
        purge_batch_size: 1,
        snapshot_max_chunk_size: u64::try_from(c.max_frame / 2).unwrap_or(u64::MAX),
        ..Default::default()
    };
    cfg.validate()
        .map_err(|e| ClusterError::Config(e.to_string()))
}

impl RaftNode {
    /// Opens storage, binds the peer port, starts Raft and (for a pristine node) bootstrap.
    pub(crate) async fn start(
        config: ClusterConfig,
        app: Arc<dyn ErasedStateMachine>,
    ) -> Result<Self, ClusterError> {
        config.validate()?;
        let raft_config = Arc::new(openraft_config(&config)?);
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let log = LogStore::open(&config.data_dir)?;
        let sm = SmStore::open(&config.data_dir, app)?;
        let pristine = log.is_pristine()? && !sm.has_snapshot();

        let settings = LinkSettings {
            secret: config.secret.clone(),
            max_frame: config.max_frame,
            send_queue: config.send_queue,
            connect_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(5),
        };
        let peers = Peers::new(config.node_id, settings, config.incoming_queue);
        for p in &config.peers {
            if config.configured_addrs_win {
                peers.pin(p.id, &p.addr);
            } else {
                peers.upsert(p.id, &p.addr);
            }
        }
        let raft = Raft::new(
            config.node_id,
            raft_config,
            network::Network {
                peers: peers.clone(),
            },
            log,
            sm,
        )
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let shared = Arc::new(Shared {
            id: config.node_id,
            metrics: raft.metrics(),
            config,
            raft,
            peers: peers.clone(),
            leader_contact: Mutex::new(None),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            stopped: AtomicBool::new(false),
        });
        peers.serve(
            listener,
            Arc::new(service::Service {
                node: shared.clone(),
            }),
        );
        shared.tracker.spawn(membership_watcher(shared.clone()));
        if pristine {
            shared.tracker.spawn(bootstrap::run(shared.clone()));
        }
        tracing::info!(node = shared.id, pristine, "cluster node started");
        Ok(Self { shared })
    }

    pub(crate) fn peers(&self) -> &Arc<Peers> {
        &self.shared.peers
    }

    /// Replicates an encoded command; returns the encoded response once applied.
    pub(crate) async fn submit(&self, cmd: Vec<u8>) -> Result<Vec<u8>, ClusterError> {
        let s = &self.shared;
        // Room for the log entry and request framing around the command.
        if cmd.len() + 1024 > s.peers.max_body() {
            return Err(ClusterError::TooLarge(cmd.len()));
        }
        let deadline = Instant::now() + s.config.request_timeout;
        loop {
            s.check_running()?;
            match s.leader() {
                Some(l) if l == s.id => {
                    match tokio::time::timeout_at(deadline, s.raft.client_write(cmd.clone())).await
                    {
                        Err(_) => return Err(s.timeout_error()),
                        Ok(Ok(r)) => return Ok(r.data),
                        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {}
                        Ok(Err(RaftError::APIError(e))) => {
                            return Err(ClusterError::Raft(e.to_string()));
                        }
                        Ok(Err(RaftError::Fatal(_))) => return Err(ClusterError::Shutdown),
                    }
                }
                Some(l) => match s.call(l, &Rpc::Write(cmd.clone()), deadline).await {
                    Ok(RpcReply::Written { index, data }) => {
                        // The leader applied it; `submit` promises the *local* state machine
                        // reflects it too (read-your-writes on followers), so wait for that.
                        let t = Instant::now() + s.config.request_timeout;
                        s.wait_applied(Some(index), t).await?;
                        return Ok(data);
                    }
                    Ok(RpcReply::Err(RemoteError::NotLeader { .. } | RemoteError::Stopped))
                    | Err(LinkError::NotConnected(_)) => {}
                    Ok(RpcReply::Err(RemoteError::Timeout)) | Err(LinkError::Timeout(_)) => {
                        return Err(ClusterError::Timeout);
                    }
                    Ok(RpcReply::Err(e)) => return Err(ClusterError::Raft(format!("{e:?}"))),
                    Ok(other) => {
                        return Err(ClusterError::Raft(format!("unexpected reply {other:?}")));
                    }
                    // Sent, then lost: the write may have been applied; do not retry blindly.
                    Err(e) => return Err(e.into()),
                },
                None => {}
            }
            s.wait_change(deadline).await?;
        }
    }

    /// Linearizable read barrier.
    pub(crate) async fn read_barrier(&self) -> Result<(), ClusterError> {
        let s = &self.shared;
        let deadline = Instant::now() + s.config.request_timeout;
        loop {
            s.check_running()?;
            let index = match s.leader() {
                Some(l) if l == s.id => {
                    match tokio::time::timeout_at(deadline, s.leader_read_index()).await {
                        Err(_) => return Err(s.timeout_error()),
                        Ok(Err(ClusterError::NotLeader { .. })) => None,
                        Ok(r) => Some(r?),
                    }
                }
                Some(l) => match s.call(l, &Rpc::ReadIndex, deadline).await {
                    Ok(RpcReply::ReadIndex(i)) => Some(i),
                    Ok(RpcReply::Err(RemoteError::NotLeader { .. } | RemoteError::Stopped))
                    | Err(LinkError::NotConnected(_)) => None,
                    Ok(RpcReply::Err(RemoteError::NoQuorum)) => return Err(ClusterError::NoQuorum),
                    Ok(RpcReply::Err(RemoteError::Timeout)) | Err(LinkError::Timeout(_)) => {
                        return Err(ClusterError::Timeout);
                    }
                    Ok(other) => {
                        return Err(ClusterError::Raft(format!("unexpected reply {other:?}")));
                    }
                    Err(e) => return Err(e.into()),
                },
                None => None,
            };
            if let Some(index) = index {
                return s.wait_applied(index, deadline).await;
            }
            s.wait_change(deadline).await?;
        }
    }

    /// Adds `id` as a learner, then promotes it to voter once it caught up.
    pub(crate) async fn add_node(&self, id: u64, addr: String) -> Result<(), ClusterError> {
        self.shared
            .on_leader(
                Rpc::AddNode {
                    id,
                    addr: addr.clone(),
                },
                || self.shared.add_node_local(id, addr.clone()),
            )
            .await
    }

    /// Removes `id` from the membership.
    pub(crate) async fn remove_node(&self, id: u64) -> Result<(), ClusterError> {
        self.shared
            .on_leader(Rpc::RemoveNode { id }, || self.shared.remove_node_local(id))
            .await
    }

    /// Current status.
    pub(crate) fn status(&self) -> ClusterStatus {
        let s = &self.shared;
        let m = s.metrics.borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, n)| MemberStatus {
                id: *id,
                addr: n.addr.clone(),
                voter: voters.contains(id),
                linked: *id == s.id || s.peers.is_connected(*id),
            })
            .collect();
        let replication = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(id, _)| **id != s.id)
                    .map(|(id, l)| FollowerStatus {
                        id: *id,
                        matched: l.map(|l| l.index),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let role = match m.state {
            _ if m.running_state.is_err() || s.stopped.load(Ordering::Acquire) => Role::Shutdown,
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        };
        ClusterStatus {
            node_id: s.id,
            role,
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            members,
            replication,
            ready: s.is_ready(&m),
        }
    }

    /// See [`crate::Cluster::is_leader`].
    pub(crate) fn is_leader(&self) -> bool {
        let m = self.shared.metrics.borrow();
        m.current_leader == Some(self.shared.id) && m.state == ServerState::Leader
    }

    /// See [`crate::Cluster::quorum_contact`].
    pub(crate) fn quorum_contact(&self) -> Option<Duration> {
        let s = &self.shared;
        let m = s.metrics.borrow().clone();
        if m.running_state.is_err() || s.stopped.load(Ordering::Acquire) {
            return None;
        }
        let leader = m.current_leader?;
        if leader == s.id {
            let membership = m.membership_config.membership();
            if membership.voter_ids().all(|v| v == s.id) {
                return Some(Duration::ZERO);
            }
            return m.millis_since_quorum_ack.map(Duration::from_millis);
        }
        match *s.leader_contact.lock() {
            Some((at, from, _)) if from == leader => Some(at.elapsed()),
            _ => None,
        }
    }

    /// See [`crate::Cluster::is_ready`].
    pub(crate) fn is_ready(&self) -> bool {
        let m = self.shared.metrics.borrow().clone();
        self.shared.is_ready(&m)
    }

    /// Stops Raft, closes links, waits for background tasks.
    pub(crate) async fn shutdown(&self) {
        let s = &self.shared;
        if s.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        // openraft 0.9 has no leadership transfer: followers elect a new leader after an
        // election timeout.
        s.cancel.cancel();
        if let Err(e) = s.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        s.peers.shutdown().await;
        s.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.tracker.wait()).await;
        tracing::info!(node = s.id, "cluster node stopped");
    }
}

impl Shared {
    fn check_running(&self) -> Result<(), ClusterError> {
        if self.stopped.load(Ordering::Acquire) || self.metrics.borrow().running_state.is_err() {
            return Err(ClusterError::Shutdown);
        }
        Ok(())
    }

    fn leader(&self) -> Option<u64> {
        self.metrics.borrow().current_leader
    }

    fn stale_after(&self) -> Duration {
        self.config.election_timeout.1 * 2
    }

    /// Called by the service for every AppendEntries/InstallSnapshot from a leader.
    fn note_leader_contact(&self, leader: u64, commit: Option<u64>) {
        let mut c = self.leader_contact.lock();
        let commit = commit.or(c.as_ref().and_then(|(_, _, ci)| *ci));
        *c = Some((Instant::now(), leader, commit));
    }

    /// Timeout or, if the leader has not heard from a quorum lately, NoQuorum.
    fn timeout_error(&self) -> ClusterError {
        let m = self.metrics.borrow();
        let stale = u64::try_from(self.stale_after().as_millis()).unwrap_or(u64::MAX);
        match (m.state, m.millis_since_quorum_ack) {
            (ServerState::Leader, Some(ms)) if ms > stale => ClusterError::NoQuorum,
            (ServerState::Leader, None) => ClusterError::NoQuorum,
            (ServerState::Leader, _) => ClusterError::Timeout,
            _ if m.current_leader.is_none() => ClusterError::NoQuorum,
            _ => ClusterError::Timeout,
        }
    }

    /// Waits for any metrics change, bounded by `deadline` and a short poll interval.
    async fn wait_change(&self, deadline: Instant) -> Result<(), ClusterError> {
        if Instant::now() >= deadline {
            return Err(self.timeout_error());
        }
        let mut rx = self.metrics.clone();
        let poll = (Instant::now() + Duration::from_millis(50)).min(deadline);
        let _ = tokio::time::timeout_at(poll, rx.changed()).await;
        Ok(())
    }

    async fn call(&self, peer: u64, req: &Rpc, deadline: Instant) -> Result<RpcReply, LinkError> {
        let ttl = deadline.saturating_duration_since(Instant::now());
        let body = self.peers.request(peer, rpc::encode(req), ttl).await?;
        rpc::decode(&body).map_err(|e| LinkError::Protocol(format!("bad reply: {e}")))
    }

    /// On the leader: confirm leadership with a quorum and return the index to wait for.
    async fn leader_read_index(&self) -> Result<Option<u64>, ClusterError> {
        let fut = self.raft.get_read_log_id();
        match tokio::time::timeout(self.config.request_timeout, fut).await {
            Err(_) => Err(self.timeout_error()),
            Ok(Ok((read, _applied))) => Ok(read.map(|l| l.index)),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(ClusterError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => {
                Err(ClusterError::NoQuorum)
            }
            Ok(Err(RaftError::Fatal(_))) => Err(ClusterError::Shutdown),
        }
    }

    async fn wait_applied(
        &self,
        index: Option<u64>,
        deadline: Instant,
    ) -> Result<(), ClusterError> {
        let Some(index) = index else { return Ok(()) };
        let ttl = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(ttl))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map(|_| ())
            .map_err(|e| match e {
                openraft::metrics::WaitError::Timeout(..) => ClusterError::Timeout,
                openraft::metrics::WaitError::ShuttingDown => ClusterError::Shutdown,
            })
    }

    /// Runs `local` on the leader, or forwards `req` to it.
    async fn on_leader<F, Fut>(&self, req: Rpc, local: F) -> Result<(), ClusterError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), ClusterError>>,
    {
        let deadline = Instant::now() + self.config.request_timeout * 6;
        loop {
            self.check_running()?;
            match self.leader() {
                Some(l) if l == self.id => match local().await {
                    Err(ClusterError::NotLeader { .. }) => {}
                    r => return r,
                },
                Some(l) => match self.call(l, &req, deadline).await {
                    Ok(RpcReply::Done) => return Ok(()),
                    Ok(RpcReply::Err(RemoteError::NotLeader { .. } | RemoteError::Stopped))
                    | Err(LinkError::NotConnected(_)) => {}
                    Ok(RpcReply::Err(RemoteError::Rejected(m))) => {
                        return Err(ClusterError::Membership(m));
                    }
                    Ok(RpcReply::Err(RemoteError::NoQuorum)) => return Err(ClusterError::NoQuorum),
                    Ok(other) => {
                        return Err(ClusterError::Raft(format!("unexpected reply {other:?}")));
                    }
                    Err(e) => return Err(e.into()),
                },
                None => {}
            }
            self.wait_change(deadline).await?;
        }
    }

    fn write_err(&self, e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> ClusterError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ClusterError::NotLeader {
                leader: f.leader_id,
            },
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                ClusterError::Membership(e.to_string())
            }
            RaftError::Fatal(_) => ClusterError::Shutdown,
        }
    }

    /// Leader only: learner first (waits until it caught up), then voter.
    async fn add_node_local(&self, id: u64, addr: String) -> Result<(), ClusterError> {
        let t = self.config.request_timeout * 4;
        let already_voter = self
            .metrics
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == id);
        if already_voter {
            // Typical for a restarted node with a wiped disk: it is replicated to as is.
            self.peers.upsert(id, &addr);
            return Ok(());
        }
        tokio::time::timeout(t, self.raft.add_learner(id, BasicNode::new(addr), true))
            .await
            .map_err(|_| ClusterError::Timeout)?
            .map_err(|e| self.write_err(e))?;
        tokio::time::timeout(
            t,
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false),
        )
        .await
        .map_err(|_| ClusterError::Timeout)?
        .map_err(|e| self.write_err(e))?;
        tracing::info!(node = id, "node added as voter");
        Ok(())
    }

    /// Leader only.
    async fn remove_node_local(&self, id: u64) -> Result<(), ClusterError> {
        let t = self.config.request_timeout * 2;
        let (voter, member) = {
            let m = self.metrics.borrow();
            let ms = m.membership_config.membership();
            (
                ms.voter_ids().any(|v| v == id),
                ms.nodes().any(|(n, _)| *n == id),
            )
        };
        let change = match (voter, member) {
            (true, _) => ChangeMembers::RemoveVoters(BTreeSet::from([id])),
            (false, true) => ChangeMembers::RemoveNodes(BTreeSet::from([id])),
            (false, false) => return Ok(()),
        };
        tokio::time::timeout(t, self.raft.change_membership(change, false))
            .await
            .map_err(|_| ClusterError::Timeout)?
            .map_err(|e| self.write_err(e))?;
        tracing::info!(node = id, "node removed");
        Ok(())
    }

    fn is_ready(&self, m: &Metrics) -> bool {
        if m.running_state.is_err() || self.stopped.load(Ordering::Acquire) {
            return false;
        }
        let membership = m.membership_config.membership();
        if !membership.nodes().any(|(n, _)| *n == self.id) {
            return false;
        }
        let Some(leader) = m.current_leader else {
            return false;
        };
        let applied = m.last_applied.map_or(0, |l| l.index);
        let lag = self.config.ready_lag;
        let stale = self.stale_after();
        if leader == self.id {
            let single = membership.voter_ids().all(|v| v == self.id);
            let stale_ms = u64::try_from(stale.as_millis()).unwrap_or(u64::MAX);
            let quorum = single || m.millis_since_quorum_ack.is_some_and(|ms| ms <= stale_ms);
            quorum && m.last_log_index.unwrap_or(0).saturating_sub(applied) <= lag
        } else {
            let contact = *self.leader_contact.lock();
            match contact {
                Some((at, from, commit)) if from == leader && at.elapsed() <= stale => {
                    commit.unwrap_or(0).saturating_sub(applied) <= lag
                }
                _ => false,
            }
        }
    }
}

/// Keeps peer links in step with the membership: new members get a link (for messaging),
/// removed ones lose it (unless configured as a static peer).
async fn membership_watcher(s: Arc<Shared>) {
    let mut rx = s.metrics.clone();
    let mut seen: Option<BTreeMap<u64, String>> = None;
    loop {
        let nodes: BTreeMap<u64, String> = rx
            .borrow_and_update()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        if seen.as_ref() != Some(&nodes) {
            for (id, addr) in &nodes {
                s.peers.upsert(*id, addr);
            }
            for id in s.peers.known() {
                let configured = s.config.peers.iter().any(|p| p.id == id);
                if !configured && !nodes.contains_key(&id) && !nodes.is_empty() {
                    s.peers.remove(id);
                }
            }
            seen = Some(nodes);
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            () = s.cancel.cancelled() => return,
        }
    }
}
