//! Serves the requests peers send to this node (the listener side of [`super::rpc`]).

use std::sync::Arc;

use bytes::Bytes;
use openraft::error::{ClientWriteError, InstallSnapshotError, RaftError};

use super::Shared;
use super::rpc::{self, RemoteError, Rpc, RpcReply};
use crate::error::ClusterError;
use crate::peer::{HandlerFuture, RequestHandler};

/// The [`RequestHandler`] of a Raft node.
pub(crate) struct Service {
    pub(crate) node: Arc<Shared>,
}

impl RequestHandler for Service {
    fn handle(&self, from: u64, body: Bytes) -> HandlerFuture {
        let node = self.node.clone();
        Box::pin(async move {
            let reply = match rpc::decode::<Rpc>(&body) {
                Ok(req) => serve(&node, from, req).await,
                Err(e) => RpcReply::Err(RemoteError::Rejected(format!("undecodable request: {e}"))),
            };
            rpc::encode(&reply)
        })
    }
}

fn cluster_err(e: ClusterError) -> RemoteError {
    match e {
        ClusterError::NotLeader { leader } => RemoteError::NotLeader { leader },
        ClusterError::NoQuorum => RemoteError::NoQuorum,
        ClusterError::Timeout => RemoteError::Timeout,
        ClusterError::Shutdown => RemoteError::Stopped,
        other => RemoteError::Rejected(other.to_string()),
    }
}

async fn serve(node: &Arc<Shared>, from: u64, req: Rpc) -> RpcReply {
    let raft = &node.raft;
    match req {
        Rpc::Append(req) => {
            // The authenticated sender must be the leader the request claims to come from.
            if req.vote.leader_id().voted_for() != Some(from) {
                return RpcReply::Err(RemoteError::Rejected(
                    "append from a node that is not the claimed leader".into(),
                ));
            }
            node.note_leader_contact(from, req.leader_commit.map(|l| l.index));
            match raft.append_entries(req).await {
                Ok(r) => RpcReply::Append(r),
                Err(_) => RpcReply::Err(RemoteError::Stopped),
            }
        }
        Rpc::Vote(req) => {
            if req.vote.leader_id().voted_for() != Some(from) {
                return RpcReply::Err(RemoteError::Rejected(
                    "vote request from a node that is not the candidate".into(),
                ));
            }
            match raft.vote(req).await {
                Ok(r) => RpcReply::Vote(r),
                Err(_) => RpcReply::Err(RemoteError::Stopped),
            }
        }
        Rpc::Snapshot(req) => {
            if req.vote.leader_id().voted_for() != Some(from) {
                return RpcReply::Err(RemoteError::Rejected(
                    "snapshot from a node that is not the claimed leader".into(),
                ));
            }
            node.note_leader_contact(from, None);
            match raft.install_snapshot(req).await {
                Ok(r) => RpcReply::Snapshot(r),
                Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m))) => {
                    RpcReply::Err(RemoteError::SnapshotMismatch(m))
                }
                Err(_) => RpcReply::Err(RemoteError::Stopped),
            }
        }
        Rpc::Write(cmd) => {
            let fut = raft.client_write(cmd);
            match tokio::time::timeout(node.config.request_timeout, fut).await {
                Err(_) => RpcReply::Err(RemoteError::Timeout),
                Ok(Ok(r)) => RpcReply::Written {
                    index: r.log_id.index,
                    data: r.data,
                },
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                    RpcReply::Err(RemoteError::NotLeader {
                        leader: f.leader_id,
                    })
                }
                Ok(Err(RaftError::APIError(e))) => {
                    RpcReply::Err(RemoteError::Rejected(e.to_string()))
                }
                Ok(Err(RaftError::Fatal(_))) => RpcReply::Err(RemoteError::Stopped),
            }
        }
        Rpc::ReadIndex => match node.leader_read_index().await {
            Ok(idx) => RpcReply::ReadIndex(idx),
            Err(e) => RpcReply::Err(cluster_err(e)),
        },
        Rpc::Probe => match raft.is_initialized().await {
            Ok(initialized) => RpcReply::Probe {
                initialized,
                leader: node.metrics.borrow().current_leader,
            },
            Err(_) => RpcReply::Err(RemoteError::Stopped),
        },
        Rpc::AddNode { id, addr } => match node.add_node_local(id, addr).await {
            Ok(()) => RpcReply::Done,
            Err(e) => RpcReply::Err(cluster_err(e)),
        },
        Rpc::RemoveNode { id } => match node.remove_node_local(id).await {
            Ok(()) => RpcReply::Done,
            Err(e) => RpcReply::Err(cluster_err(e)),
        },
    }
}
