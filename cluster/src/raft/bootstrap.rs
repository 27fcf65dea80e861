//! Bootstrap and auto-join of a node that starts with no Raft state.
//!
//! ```text
//! pristine node ──probe every configured peer──► any peer has state?
//!     yes ─► auto-join: ask the leader to add me (learner → voter); never initialize
//!     no, every peer answered, and my id is the lowest ─► initialize(self + peers as voters)
//!     otherwise ─► wait and probe again (entries from a leader end the loop)
//! ```
//! Only the lowest id ever initializes, and only after every configured peer answered that it
//! has no state, so two clusters cannot form; a node whose disk was wiped sees its peers'
//! state and rejoins instead.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use openraft::BasicNode;
use tokio::time::Instant;

use super::Shared;
use super::rpc::{Rpc, RpcReply};

const PROBE_EVERY: Duration = Duration::from_millis(300);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs until this node is initialized (by itself or by a leader) or the node stops.
pub(crate) async fn run(s: Arc<Shared>) {
    let me = s.id;
    let lowest = s.config.peers.iter().all(|p| p.id > me);
    let mut joined_via: Option<u64> = None;
    loop {
        match s.raft.is_initialized().await {
            Ok(true) if joined_via.is_some() || s.membership_has_me() => {
                tracing::info!(node = me, "bootstrap done: node is part of a cluster");
                return;
            }
            Ok(_) => {}
            Err(_) => return,
        }
        let probes = s.config.peers.iter().map(|p| {
            let s = s.clone();
            async move {
                let reply = s
                    .call(p.id, &Rpc::Probe, Instant::now() + PROBE_TIMEOUT)
                    .await;
                (p.id, reply)
            }
        });
        let mut answered = 0usize;
        let mut with_state = Vec::new();
        for (id, reply) in join_all(probes).await {
            if let Ok(RpcReply::Probe {
                initialized,
                leader,
            }) = reply
            {
                answered += 1;
                if initialized {
                    with_state.push((id, leader));
                }
            }
        }
        if !with_state.is_empty() {
            if s.config.auto_join && joined_via.is_none() {
                let leader = with_state.iter().find_map(|(_, l)| *l);
                if let Some(leader) = leader {
                    let req = Rpc::AddNode {
                        id: me,
                        addr: s.config.advertise.clone(),
                    };
                    match s
                        .call(leader, &req, Instant::now() + s.config.request_timeout * 4)
                        .await
                    {
                        Ok(RpcReply::Done) => {
                            tracing::info!(node = me, leader, "joined existing cluster");
                            joined_via = Some(leader);
                        }
                        other => {
                            tracing::debug!(node = me, leader, reply = ?other, "join attempt failed")
                        }
                    }
                }
            }
        } else if lowest && answered == s.config.peers.len() {
            let mut members: BTreeMap<u64, BasicNode> = s
                .config
                .peers
                .iter()
                .map(|p| (p.id, BasicNode::new(p.addr.clone())))
                .collect();
            members.insert(me, BasicNode::new(s.config.advertise.clone()));
            match s.raft.initialize(members).await {
                Ok(()) => tracing::info!(
                    node = me,
                    voters = s.config.peers.len() + 1,
                    "initialized a new cluster"
                ),
                Err(e) => tracing::info!(node = me, error = %e, "initialize skipped"),
            }
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(PROBE_EVERY) => {}
            () = s.cancel.cancelled() => return,
        }
    }
}

impl Shared {
    fn membership_has_me(&self) -> bool {
        self.metrics
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .any(|(n, _)| *n == self.id)
    }
}
