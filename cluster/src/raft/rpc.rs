//! Requests the Raft layer sends over peer links, and their replies (postcard-encoded).

use bytes::Bytes;
use openraft::error::SnapshotMismatch;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::TypeConfig;

/// A request to a peer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Rpc {
    /// Raft AppendEntries (also heartbeats).
    Append(AppendEntriesRequest<TypeConfig>),
    /// Raft RequestVote.
    Vote(VoteRequest<u64>),
    /// One chunk of a Raft InstallSnapshot.
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A client write forwarded to the leader (postcard-encoded application command).
    Write(Vec<u8>),
    /// ReadIndex: the leader confirms leadership and returns the index to wait for.
    ReadIndex,
    /// Bootstrap probe: does the peer have cluster state, and whom does it follow?
    Probe,
    /// Add (or re-add) a node: learner, then voter once caught up. Sent to the leader.
    AddNode { id: u64, addr: String },
    /// Remove a node from the membership. Sent to the leader.
    RemoveNode { id: u64 },
}

/// Failure reported by the peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum RemoteError {
    /// The peer is not the leader.
    NotLeader { leader: Option<u64> },
    /// InstallSnapshot chunk out of order.
    SnapshotMismatch(SnapshotMismatch),
    /// The leader could not confirm a quorum.
    NoQuorum,
    /// The peer's bounded wait expired.
    Timeout,
    /// Raft on the peer is stopped.
    Stopped,
    /// The request was rejected (bad sender, membership error, …).
    Rejected(String),
}

/// The reply to an [`Rpc`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RpcReply {
    Append(AppendEntriesResponse<u64>),
    Vote(VoteResponse<u64>),
    Snapshot(InstallSnapshotResponse<u64>),
    /// A forwarded write was applied on the leader: its log index (the forwarding node
    /// waits until it applied that index itself) and the encoded application response.
    Written {
        index: u64,
        data: Vec<u8>,
    },
    /// Read index (`None`: empty log).
    ReadIndex(Option<u64>),
    Probe {
        initialized: bool,
        leader: Option<u64>,
    },
    Done,
    Err(RemoteError),
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Bytes {
    // Encoding into a Vec cannot fail for these types; an empty body decodes as an error.
    postcard::to_allocvec(v)
        .map(Bytes::from)
        .unwrap_or_default()
}

pub(crate) fn decode<T: for<'a> Deserialize<'a>>(b: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(b)
}
