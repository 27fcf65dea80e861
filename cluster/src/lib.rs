//! Starling's cluster layer: a replicated state machine over an application-supplied
//! command type (Raft via openraft), linearizable reads, membership, and authenticated
//! peer links for live traffic that does not go through the log.
//!
//! This crate knows nothing of MQTT and must never depend on `starling-broker` (or on
//! `auth`/`plugins`). The broker plugs in its deterministic [`StateMachine`]; tests use a
//! toy counter. Only `raft.rs` and `raft/` name openraft types, so Raft stays replaceable.
//!
//! ```text
//!  Cluster::submit(cmd) ──► leader? ──yes──► openraft client_write ──► redb log (fsync)
//!        │                    │                    │ replicate (AppendEntries over peer links)
//!        │                    no ──► forward over peer link to the leader ──┘
//!        ▼                                         ▼ committed by a quorum
//!  Response ◄── StateMachine::apply(cmd) ◄── openraft applies in log order on every node
//!
//!  peer link (one TCP connection per direction, length-delimited frames):
//!    connect ─► HMAC challenge/response (shared secret, both sides) ─► Request/Response/Message
//!  snapshots: StateMachine::snapshot() ─► <data_dir>/snapshot.bin (tmp + fsync + rename)
//! ```
//!
//! A single node is a Raft group of one: there is no standalone mode.

mod cluster;
mod config;
mod error;
mod peer;
mod raft;
mod state_machine;
mod status;

pub use cluster::Cluster;
pub use config::{ClusterConfig, PeerConfig};
pub use error::{ClusterError, LinkError, StateMachineError, StorageError};
pub use state_machine::StateMachine;
pub use status::{ClusterStatus, FollowerStatus, MemberStatus, Role};

#[doc(hidden)]
pub mod testing {
    //! Hooks for this crate's own conformance tests (openraft's storage suite).
    pub use crate::raft::storage_suite::run_storage_suite;
}
