//! How commands reach the state machine.
//!
//! The broker submits [`Command`]s to a [`Replicator`] and awaits the
//! [`Response`]. [`LocalReplicator`] applies in process (a single node); the
//! cluster's replicator appends to the Raft log and answers once the entry is
//! committed and applied. Either way the state lives behind one lock that the
//! broker reads directly, and the [`Effects`] of each apply are handed to the
//! node's effect sink.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::state::{Command, Effects, Response, State};

/// Why a command was not applied.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ReplicationError {
    /// No quorum / not ready: the command was not committed.
    #[expect(
        dead_code,
        reason = "only the cluster's replicator can fail; the local one cannot"
    )]
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
}

/// Applies commands in process: a single node's state machine.
pub struct LocalReplicator {
    state: Arc<Mutex<State>>,
    sink: Arc<dyn EffectSink>,
}

impl LocalReplicator {
    /// A replicator over `state` that reports effects to `sink`.
    pub fn new(state: Arc<Mutex<State>>, sink: Arc<dyn EffectSink>) -> LocalReplicator {
        LocalReplicator { state, sink }
    }
}

impl Replicator for LocalReplicator {
    fn submit(&self, cmd: Command) -> SubmitFuture {
        let mut fx = Effects::default();
        let resp = self.state.lock().apply(cmd, &mut fx);
        if fx != Effects::default() {
            self.sink.on_effects(fx);
        }
        Box::pin(std::future::ready(Ok(resp)))
    }
}
