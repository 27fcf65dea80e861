//! The application's state machine and its type-erased adapter used by the Raft layer.

use std::fmt::Debug;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StateMachineError;

/// Implemented by the application (the broker). Must be deterministic: every node applies
/// the same commands in the same order and must reach the same state.
///
/// Commands and responses travel as postcard (a non-self-describing format): do not use
/// `#[serde(untagged)]`, `#[serde(flatten)]` or `skip_serializing_if` in them.
pub trait StateMachine: Send + Sync + 'static {
    /// A change to the replicated state.
    type Command: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static;
    /// What applying a command returns to its submitter.
    type Response: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static;

    /// Applies one committed command. Called on every node, in log order, from the Raft
    /// state-machine task with the state lock held: keep it fast and never block on I/O.
    fn apply(&mut self, cmd: Self::Command) -> Self::Response;

    /// Serializes the full state for a snapshot.
    fn snapshot(&self) -> Result<Vec<u8>, StateMachineError>;

    /// Replaces the whole state with a snapshot produced by [`StateMachine::snapshot`].
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError>;
}

/// The state machine as the Raft layer sees it: bytes in, bytes out.
pub(crate) trait ErasedStateMachine: Send + Sync + 'static {
    fn apply(&self, cmd: &[u8]) -> Result<Vec<u8>, StateMachineError>;
    fn snapshot(&self) -> Result<Vec<u8>, StateMachineError>;
    fn restore(&self, data: &[u8]) -> Result<(), StateMachineError>;
}

/// Shared handle to the application's state machine.
pub(crate) struct SharedStateMachine<SM>(pub(crate) Arc<Mutex<SM>>);

impl<SM: StateMachine> ErasedStateMachine for SharedStateMachine<SM> {
    fn apply(&self, cmd: &[u8]) -> Result<Vec<u8>, StateMachineError> {
        let cmd: SM::Command = postcard::from_bytes(cmd)
            .map_err(|e| StateMachineError::new(format!("command does not decode: {e}")))?;
        let resp = self.0.lock().apply(cmd);
        postcard::to_allocvec(&resp)
            .map_err(|e| StateMachineError::new(format!("response does not encode: {e}")))
    }

    fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
        self.0.lock().snapshot()
    }

    fn restore(&self, data: &[u8]) -> Result<(), StateMachineError> {
        self.0.lock().restore(data)
    }
}
