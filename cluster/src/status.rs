//! Point-in-time status of a node, for `/api` and `starling cluster status`.

use serde::Serialize;

/// This node's Raft role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Leads the group.
    Leader,
    /// Voter following a leader.
    Follower,
    /// Campaigning.
    Candidate,
    /// Not a voter (new, being added, or not (yet) a member).
    Learner,
    /// Raft stopped.
    Shutdown,
}

/// One member of the current membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    /// Node id.
    pub id: u64,
    /// Advertised `host:port`.
    pub addr: String,
    /// Voter (true) or learner (false).
    pub voter: bool,
    /// Whether this node's outbound link to it is up (always true for this node itself).
    pub linked: bool,
}

/// Replication progress of one follower, as seen by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FollowerStatus {
    /// Node id.
    pub id: u64,
    /// Highest log index known to be replicated there.
    pub matched: Option<u64>,
}

/// Status of this node.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// This node's id.
    pub node_id: u64,
    /// Current role.
    pub role: Role,
    /// Leader this node believes in.
    pub leader: Option<u64>,
    /// Current term.
    pub term: u64,
    /// Last log index stored here.
    pub last_log_index: Option<u64>,
    /// Last applied index.
    pub applied_index: Option<u64>,
    /// Index covered by the latest snapshot.
    pub snapshot_index: Option<u64>,
    /// Highest log index purged from the log (compacted into a snapshot).
    pub purged_index: Option<u64>,
    /// Members of the effective membership.
    pub members: Vec<MemberStatus>,
    /// Per-follower matched index (leader only, empty otherwise).
    pub replication: Vec<FollowerStatus>,
    /// Same as [`crate::Cluster::is_ready`].
    pub ready: bool,
}
