//! openraft's network, carried by the peer links.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError,
    RemoteError as OrRemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::TypeConfig;
use super::rpc::{self, RemoteError, Rpc, RpcReply};
use crate::error::LinkError;
use crate::peer::Peers;

/// Creates one [`PeerClient`] per replication target.
pub(crate) struct Network {
    pub(crate) peers: Arc<Peers>,
}

/// Sends Raft RPCs to one peer.
pub(crate) struct PeerClient {
    target: u64,
    peers: Arc<Peers>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        self.peers.upsert(target, &node.addr);
        PeerClient {
            target,
            peers: self.peers.clone(),
        }
    }
}

type Err<E = openraft::error::Infallible> = RPCError<u64, BasicNode, RaftError<u64, E>>;

fn link_err<E: std::error::Error>(e: &LinkError) -> Err<E> {
    match e {
        LinkError::NotConnected(_) | LinkError::Handshake(_) | LinkError::Closed => {
            RPCError::Unreachable(Unreachable::new(e))
        }
        _ => RPCError::Network(NetworkError::new(e)),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("peer replied: {0:?}")]
struct Unexpected(String);

fn unexpected<E: std::error::Error>(reply: &RpcReply) -> Err<E> {
    // Includes RemoteError::Stopped: the peer is going away, treat it as unreachable.
    RPCError::Unreachable(Unreachable::new(&Unexpected(format!("{reply:?}"))))
}

impl PeerClient {
    async fn call(&self, req: &Rpc, ttl: Duration) -> Result<RpcReply, LinkError> {
        self.call_encoded(rpc::encode(req), ttl).await
    }

    async fn call_encoded(&self, body: Bytes, ttl: Duration) -> Result<RpcReply, LinkError> {
        let body = self.peers.request(self.target, body, ttl).await?;
        rpc::decode(&body).map_err(|e| LinkError::Protocol(format!("bad reply: {e}")))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, Err> {
        let n = req.entries.len();
        let body = rpc::encode(&Rpc::Append(req));
        if n > 1 && body.len() > self.peers.max_body() {
            // Ask openraft to send fewer entries per request instead of breaking the link.
            let hint = u64::try_from(n / 2).unwrap_or(1).max(1);
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        match self.call_encoded(body, option.hard_ttl()).await {
            Ok(RpcReply::Append(r)) => Ok(r),
            Ok(other) => Err(unexpected(&other)),
            Err(e) => Err(link_err(&e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, Err<InstallSnapshotError>> {
        match self.call(&Rpc::Snapshot(req), option.hard_ttl()).await {
            Ok(RpcReply::Snapshot(r)) => Ok(r),
            Ok(RpcReply::Err(RemoteError::SnapshotMismatch(m))) => {
                Err(RPCError::RemoteError(OrRemoteError::new(
                    self.target,
                    RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m)),
                )))
            }
            Ok(other) => Err(unexpected(&other)),
            Err(e) => Err(link_err(&e)),
        }
    }

    async fn vote(
        &mut self,
        req: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, Err> {
        match self.call(&Rpc::Vote(req), option.hard_ttl()).await {
            Ok(RpcReply::Vote(r)) => Ok(r),
            Ok(other) => Err(unexpected(&other)),
            Err(e) => Err(link_err(&e)),
        }
    }

    fn backoff(&self) -> openraft::network::Backoff {
        // Unreachable peers are retried sooner than openraft's 500 ms default; the link
        // itself backs off its reconnects.
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}
