//! Errors of the cluster crate.

/// Errors returned by [`crate::Cluster`].
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The configuration is invalid; nothing was started.
    #[error("invalid cluster configuration: {0}")]
    Config(String),
    /// This node cannot serve the request because it is not the leader and the leader is
    /// unknown or refused the forwarded request.
    #[error("not the leader (known leader: {leader:?})")]
    NotLeader {
        /// The leader this node currently believes in, if any.
        leader: Option<u64>,
    },
    /// The leader cannot reach a quorum of voters.
    #[error("no quorum reachable")]
    NoQuorum,
    /// The bounded wait for the operation expired; a write may or may not have been applied.
    #[error("timed out")]
    Timeout,
    /// The cluster has been shut down (or Raft stopped after a fatal error).
    #[error("cluster is shut down")]
    Shutdown,
    /// No address is known for this peer.
    #[error("unknown peer {0}")]
    UnknownPeer(u64),
    /// The bounded send queue to this peer is full; the message was dropped.
    #[error("send queue to peer {0} is full")]
    QueueFull(u64),
    /// A message or command is larger than one peer-link frame (`max_frame`).
    #[error("{0} bytes do not fit in one peer-link frame")]
    TooLarge(usize),
    /// The per-process incoming receiver was already taken.
    #[error("incoming receiver already taken")]
    IncomingTaken,
    /// A membership change was rejected.
    #[error("membership change failed: {0}")]
    Membership(String),
    /// Durable storage (log, vote, snapshot) failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The application state machine failed (snapshot/restore, or a command or response
    /// that does not encode/decode).
    #[error("state machine: {0}")]
    StateMachine(#[from] StateMachineError),
    /// A peer link failed.
    #[error("peer link: {0}")]
    Link(#[from] LinkError),
    /// Any other Raft error, reported as text.
    #[error("raft: {0}")]
    Raft(String),
    /// Binding the cluster port or another I/O step failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Error reported by an application [`crate::StateMachine`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StateMachineError(pub String);

impl StateMachineError {
    /// Builds an error from any displayable cause.
    pub fn new(cause: impl std::fmt::Display) -> Self {
        Self(cause.to_string())
    }
}

/// Errors of the durable store (redb log + vote, snapshot files).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// redb failed.
    #[error("redb: {0}")]
    Redb(#[from] redb::Error),
    /// A stored record does not decode.
    #[error("corrupt record: {0}")]
    Codec(#[from] postcard::Error),
    /// File I/O failed (snapshots, data dir).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A blocking storage task panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(String),
}

macro_rules! redb_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                Self::Redb(e.into())
            }
        }
    )*};
}
redb_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Errors of a peer link.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    /// The link to this peer is not connected; the request was not sent (safe to retry).
    #[error("peer {0} not connected")]
    NotConnected(u64),
    /// The connection dropped after the request was sent (outcome unknown).
    #[error("connection to peer {0} lost")]
    Disconnected(u64),
    /// No response within the deadline (outcome unknown).
    #[error("request to peer {0} timed out")]
    Timeout(u64),
    /// The peer failed authentication or identified as another node.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// A frame violated the peer protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The body does not fit in one frame; it was not sent.
    #[error("{0} bytes do not fit in one frame")]
    TooLarge(usize),
    /// The link is shutting down.
    #[error("link closed")]
    Closed,
}
