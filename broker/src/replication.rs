//! How commands reach the state machine.
//!
//! The broker submits [`Command`]s to a [`Replicator`] and awaits the
//! [`Response`]. The cluster's replicator (`clustering.rs`) appends to the
//! Raft log and answers once the entry is committed and applied — on one node
//! as on many. The state lives behind one lock that the broker reads
//! directly, and the [`Effects`] of each apply are handed to the node's
//! effect sink.

use std::future::Future;
use std::pin::Pin;

use crate::state::{Command, Effects, Response};

/// Why a command was not applied.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ReplicationError {
    /// No quorum, not ready or timed out: the command was not acknowledged
    /// (after a timeout it may still commit later).
    #[error("replicated state unavailable: {0}")]
    Unavailable(String),
}

/// Node-local reaction to applied commands.
pub trait EffectSink: Send + Sync + 'static {
    /// Called after each apply, outside the state lock.
    fn on_effects(&self, fx: Effects);
}

/// A boxed future returned by [`Replicator::submit`].
pub type SubmitFuture = Pin<Box<dyn Future<Output = Result<Response, ReplicationError>> + Send>>;

/// Commits commands to the shared state.
pub trait Replicator: Send + Sync + 'static {
    /// Submits a command; resolves once it is applied (committed, in a cluster).
    fn submit(&self, cmd: Command) -> SubmitFuture;

    /// True on the node that should propose housekeeping (session expiry).
    fn is_leader(&self) -> bool;
}
