//! Typed configuration of one cluster node (the binary builds it; this crate reads no files).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::ClusterError;

/// A peer this node knows at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's stable node id (unique, non-zero is not required).
    pub id: u64,
    /// `host:port` to dial; resolved again on every (re)connect, never cached as an IP.
    pub addr: String,
}

/// Configuration of one cluster node.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's stable id.
    pub node_id: u64,
    /// Address the peer listener binds.
    pub listen: SocketAddr,
    /// `host:port` other nodes dial to reach this node (stored in the membership).
    pub advertise: String,
    /// The other nodes of the initial cluster (may be empty: a one-node cluster).
    pub peers: Vec<PeerConfig>,
    /// Directory for the redb log and snapshot files (created if missing).
    pub data_dir: PathBuf,
    /// Shared secret all nodes prove knowledge of at connect (at least 16 bytes).
    pub secret: Vec<u8>,
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Election timeout range (min, max).
    pub election_timeout: (Duration, Duration),
    /// Build a snapshot (and purge the log) every this many applied entries.
    pub snapshot_every: u64,
    /// Bounded wait for `submit`, `read_barrier` and membership calls.
    pub request_timeout: Duration,
    /// Capacity of each peer's outbound queue (messages and requests).
    pub send_queue: usize,
    /// Capacity of the incoming application-message queue.
    pub incoming_queue: usize,
    /// Largest peer-link frame accepted or sent, in bytes.
    pub max_frame: usize,
    /// A pristine node that finds an existing cluster asks its leader to add it.
    pub auto_join: bool,
    /// Largest lag (entries) between the leader's commit and the local applied index for
    /// [`crate::Cluster::is_ready`].
    pub ready_lag: u64,
    /// The address configured in `peers` for a peer id wins over the address stored for it
    /// in the Raft membership (or sent by a joining node) whenever this node dials that
    /// peer. The membership records what the *initializing* node (or the joiner) was told,
    /// which need not be how *this* node reaches the peer (split-horizon DNS, NAT, a
    /// fault-injecting proxy in tests). Peers not listed in `peers` always use the
    /// membership address. Default: true.
    pub configured_addrs_win: bool,
}

impl ClusterConfig {
    /// A configuration with defaults for everything but identity, addresses and secret.
    pub fn new(
        node_id: u64,
        listen: SocketAddr,
        data_dir: impl Into<PathBuf>,
        secret: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            node_id,
            listen,
            advertise: listen.to_string(),
            peers: Vec::new(),
            data_dir: data_dir.into(),
            secret: secret.into(),
            heartbeat: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(500), Duration::from_millis(1000)),
            snapshot_every: 10_000,
            request_timeout: Duration::from_secs(5),
            send_queue: 4096,
            incoming_queue: 4096,
            max_frame: 16 * 1024 * 1024,
            ready_lag: 100,
            auto_join: true,
            configured_addrs_win: true,
        }
    }

    /// Checks the configuration; called by [`crate::Cluster::start`] before binding anything.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let bad = |m: &str| Err(ClusterError::Config(m.to_string()));
        if self.secret.len() < 16 {
            return bad("secret must be at least 16 bytes");
        }
        if self.advertise.is_empty() {
            return bad("advertise address is empty");
        }
        let (lo, hi) = self.election_timeout;
        if self.heartbeat.is_zero() || lo <= self.heartbeat || hi <= lo {
            return bad("need 0 < heartbeat < election_timeout.0 < election_timeout.1");
        }
        if self.snapshot_every == 0 {
            return bad("snapshot_every must be > 0");
        }
        if self.send_queue == 0 || self.incoming_queue == 0 {
            return bad("queue capacities must be > 0");
        }
        if self.max_frame < 64 * 1024 {
            return bad("max_frame must be at least 64 KiB");
        }
        let mut ids: Vec<u64> = self.peers.iter().map(|p| p.id).collect();
        ids.push(self.node_id);
        ids.sort_unstable();
        if ids.windows(2).any(|w| w.first() == w.get(1)) {
            return bad("node ids of self and peers must be unique");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> ClusterConfig {
        let mut c = ClusterConfig::new(
            1,
            "127.0.0.1:7000".parse().unwrap(),
            "/tmp/x",
            b"0123456789abcdef".to_vec(),
        );
        c.peers = vec![PeerConfig {
            id: 2,
            addr: "n2:7000".into(),
        }];
        c
    }

    #[test]
    fn defaults_validate() {
        ok().validate().unwrap();
    }

    #[test]
    fn rejects_bad_values() {
        let mut c = ok();
        c.secret = b"short".to_vec();
        assert!(c.validate().is_err());
        let mut c = ok();
        c.peers.push(PeerConfig {
            id: 1,
            addr: "dup:1".into(),
        });
        assert!(c.validate().is_err());
        let mut c = ok();
        c.election_timeout = (Duration::from_millis(50), Duration::from_millis(40));
        assert!(c.validate().is_err());
        let mut c = ok();
        c.snapshot_every = 0;
        assert!(c.validate().is_err());
    }
}
