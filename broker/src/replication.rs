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

    /// Called after the whole state was replaced by a snapshot (no per-command
    /// effects exist for what it skipped), with the state lock held.
    fn on_restored(&self, state: &crate::state::State);
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

/// Most commands one log entry carries.
const MAX_BATCH: usize = 256;
/// Rough bytes one log entry may carry (well under the peer links' frame
/// limit, so a batch of large publishes is split, never refused).
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Batches in flight at once (each waits for its own commit).
const MAX_IN_FLIGHT: usize = 4;

type Pending = (
    Command,
    tokio::sync::oneshot::Sender<Result<Response, ReplicationError>>,
);

/// Groups commands submitted at the same time into one log entry
/// (`Command::Batch`), so a burst of persistent publishes, acks or connects
/// costs one commit (one fsync per node) instead of one each.
///
/// A command submitted alone goes out alone, without waiting: batching only
/// happens when commands queue up behind commits already in flight.
pub struct Batcher {
    tx: tokio::sync::mpsc::UnboundedSender<Pending>,
    inner: std::sync::Arc<dyn Replicator>,
}

impl Batcher {
    /// Wraps `inner`; spawns the batching task on the current runtime.
    pub fn new(inner: std::sync::Arc<dyn Replicator>) -> Batcher {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(run_batches(inner.clone(), rx));
        Batcher { tx, inner }
    }
}

impl Replicator for Batcher {
    fn submit(&self, cmd: Command) -> SubmitFuture {
        let (done, wait) = tokio::sync::oneshot::channel();
        let queued = self.tx.send((cmd, done));
        Box::pin(async move {
            if queued.is_err() {
                return Err(ReplicationError::Unavailable("shutting down".into()));
            }
            wait.await
                .unwrap_or_else(|_| Err(ReplicationError::Unavailable("shutting down".into())))
        })
    }

    fn is_leader(&self) -> bool {
        self.inner.is_leader()
    }
}

/// Rough encoded size of a command (an upper estimate of what postcard writes).
fn approx_size(cmd: &Command) -> usize {
    match cmd {
        Command::Publish { msg, .. } => {
            let p = &msg.props;
            128 + msg.topic.as_str().len()
                + msg.payload.len()
                + p.content_type.as_ref().map_or(0, String::len)
                + p.response_topic.as_ref().map_or(0, String::len)
                + p.correlation_data.as_ref().map_or(0, |c| c.len())
                + p.user_properties
                    .iter()
                    .map(|(k, v)| 8 + k.len() + v.len())
                    .sum::<usize>()
                + msg.publisher.as_ref().map_or(0, |c| c.as_str().len())
        }
        Command::Subscribe { subscriptions, .. } => {
            128 + subscriptions
                .iter()
                .map(|(s, _)| 32 + s.filter.as_str().len())
                .sum::<usize>()
        }
        Command::Unsubscribe { filters, .. } => {
            128 + filters
                .iter()
                .map(|s| 32 + s.filter.as_str().len())
                .sum::<usize>()
        }
        Command::Ack { seqs, .. } | Command::Release { seqs, .. } => 128 + 10 * seqs.len(),
        Command::Batch(cmds) => cmds.iter().map(approx_size).sum(),
        _ => 160,
    }
}

async fn run_batches(
    inner: std::sync::Arc<dyn Replicator>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Pending>,
) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        // Wait for a free slot first: while all slots are busy, more
        // commands queue up and the next batch gets bigger.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = approx_size(&first.0);
        let mut batch = vec![first];
        let mut carry = None;
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    let size = approx_size(&p.0);
                    if bytes + size > MAX_BATCH_BYTES {
                        carry = Some(p);
                        break;
                    }
                    bytes += size;
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let inner = inner.clone();
        if let Some(p) = carry {
            // Too big to join this batch: it goes out on its own next.
            let inner = inner.clone();
            tokio::spawn(async move {
                let (cmd, done) = p;
                let _ = done.send(inner.submit(cmd).await);
            });
        }
        tokio::spawn(async move {
            let _permit = permit;
            if batch.len() == 1 {
                if let Some((cmd, done)) = batch.pop() {
                    let _ = done.send(inner.submit(cmd).await);
                }
                return;
            }
            let (cmds, waiters): (Vec<Command>, Vec<_>) = batch.into_iter().unzip();
            match inner.submit(Command::Batch(cmds)).await {
                Ok(Response::Batch(responses)) if responses.len() == waiters.len() => {
                    for (done, r) in waiters.into_iter().zip(responses) {
                        let _ = done.send(Ok(r));
                    }
                }
                Ok(other) => {
                    let e = ReplicationError::Unavailable(format!(
                        "unexpected batch response {other:?}"
                    ));
                    for done in waiters {
                        let _ = done.send(Err(e.clone()));
                    }
                }
                Err(e) => {
                    for done in waiters {
                        let _ = done.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Applies nothing; answers each command with Done after a delay and
    /// counts the entries it was given.
    struct Slow {
        entries: AtomicUsize,
    }

    impl Replicator for Slow {
        fn submit(&self, cmd: Command) -> SubmitFuture {
            self.entries.fetch_add(1, Ordering::Relaxed);
            Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok(match cmd {
                    Command::Batch(c) => {
                        Response::Batch(c.iter().map(|_| Response::Done).collect())
                    }
                    _ => Response::Done,
                })
            })
        }
        fn is_leader(&self) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn a_burst_becomes_few_entries_and_every_caller_gets_its_answer() {
        let slow = Arc::new(Slow {
            entries: AtomicUsize::new(0),
        });
        let b = Arc::new(Batcher::new(slow.clone()));
        let mut tasks = Vec::new();
        for i in 0..200 {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                b.submit(Command::ExpireSessions { now_ms: i }).await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(Response::Done));
        }
        let entries = slow.entries.load(Ordering::Relaxed);
        assert!(entries < 50, "200 commands took {entries} entries");
    }

    #[tokio::test]
    async fn a_lone_command_is_not_wrapped() {
        let slow = Arc::new(Slow {
            entries: AtomicUsize::new(0),
        });
        let b = Batcher::new(slow.clone());
        assert_eq!(
            b.submit(Command::ExpireSessions { now_ms: 1 }).await,
            Ok(Response::Done)
        );
        assert_eq!(slow.entries.load(Ordering::Relaxed), 1);
    }
}
