//! Where the policy comes from: the node's policy file, read at start-up
//! and on every reload trigger (the file changed, SIGHUP, the admin API),
//! validated, and submitted to the replicated log.
//!
//! A file that fails validation is refused here, before it reaches the log:
//! the policy in force stays (logged as a security event and counted). A
//! valid file whose hash equals the policy in force is not submitted again,
//! so nodes that share one ConfigMap and all see the same change add one
//! policy version, not one per node.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use starling_auth::Policy;
use tokio::sync::{mpsc, oneshot};

use crate::broker::Broker;
use crate::state::{Command, Response};

/// Largest policy file accepted (a typo'd path to a huge file must not be
/// read into memory).
const MAX_POLICY_BYTES: u64 = 16 * 1024 * 1024;

/// Quiet time after a file event before the file is read (an editor or a
/// Kubernetes secret swap touches it several times).
const DEBOUNCE: Duration = Duration::from_millis(300);

/// The outcome of a reload.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ReloadOutcome {
    /// `applied`, `unchanged` or `rejected`.
    pub result: &'static str,
    /// Policy sequence number in force afterwards.
    pub seq: u64,
    /// Hash of the policy in force afterwards.
    pub hash: String,
    /// Why the file was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Stored subscriptions the change removed.
    pub revoked: usize,
}

/// A request to reload, answered when it is done.
pub(crate) type ReloadRequest = oneshot::Sender<ReloadOutcome>;

/// Reads and validates a policy file: its text if it compiles.
pub(crate) fn read(path: &Path) -> Result<(Arc<str>, Policy), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_POLICY_BYTES {
        return Err(format!(
            "{}: larger than {MAX_POLICY_BYTES} bytes",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    match Policy::parse(&text) {
        Ok((policy, warnings)) => {
            for w in warnings {
                tracing::warn!(file = %path.display(), warning = %w, "policy warning");
            }
            Ok((Arc::from(text), policy))
        }
        Err(e) => {
            let (line, col) = e.line_col();
            Err(format!("{}:{line}:{col}: {e}", path.display()))
        }
    }
}

/// Submits `text` as the cluster's policy unless it is already in force;
/// retries while the log is unavailable. `None` if the broker stops first.
pub(crate) async fn submit(
    broker: &Broker,
    text: Arc<str>,
    policy: &Policy,
) -> Option<ReloadOutcome> {
    loop {
        if let Some(cur) = broker.state.lock().policy()
            && cur.policy.hash() == policy.hash()
        {
            return Some(outcome(broker, "unchanged", None, 0));
        }
        let cmd = Command::SetPolicy { text: text.clone() };
        let attempt = tokio::select! {
            r = broker.submit(cmd) => r,
            _ = broker.shutdown.cancelled() => return None,
        };
        match attempt {
            Ok(Response::PolicySet { revoked, .. }) => {
                return Some(outcome(broker, "applied", None, revoked));
            }
            Ok(Response::PolicyRejected(e)) => {
                return Some(rejected(broker, "log", e));
            }
            Ok(other) => {
                tracing::error!(?other, "unexpected answer to a policy change");
                return Some(outcome(broker, "unchanged", None, 0));
            }
            Err(e) => {
                tracing::warn!(error = %e, "policy not committed yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = broker.shutdown.cancelled() => return None,
                }
            }
        }
    }
}

fn outcome(
    broker: &Broker,
    result: &'static str,
    error: Option<String>,
    revoked: usize,
) -> ReloadOutcome {
    // The apply path installs the new policy before `submit` returns.
    let policy = broker.access.policy();
    ReloadOutcome {
        result,
        seq: broker.access.seq(),
        hash: policy.hash().to_owned(),
        error,
        revoked,
    }
}

fn rejected(broker: &Broker, source: &str, error: String) -> ReloadOutcome {
    broker
        .access
        .stats
        .reload_rejected
        .fetch_add(1, Ordering::Relaxed);
    broker.access.events.policy_rejected(source, &error);
    outcome(broker, "rejected", Some(error), 0)
}

/// Reads, validates and submits the file.
async fn reload(broker: &Broker, path: &Path, source: &str) -> Option<ReloadOutcome> {
    let read = {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || read(&path))
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    };
    match read {
        Ok((text, policy)) => submit(broker, text, &policy).await,
        Err(e) => Some(rejected(broker, source, e)),
    }
}

/// Serves reload triggers until shutdown: file changes (when
/// `auth.watch`), SIGHUP and admin requests.
pub(crate) async fn run(
    broker: Arc<Broker>,
    path: PathBuf,
    mut requests: mpsc::Receiver<ReloadRequest>,
) {
    use tokio::signal::unix::{SignalKind, signal};

    let (file_tx, mut file_rx) = mpsc::channel::<()>(1);
    let _watcher = if broker.config.auth.watch {
        watch(&path, file_tx)
    } else {
        None
    };
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP; policy reload by signal disabled");
            None
        }
    };
    loop {
        let (source, reply) = tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            Some(()) = file_rx.recv() => {
                // Debounce: wait until the file has been quiet for a while.
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(DEBOUNCE) => break,
                        r = file_rx.recv() => if r.is_none() { break },
                    }
                }
                ("file", None)
            }
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => ("sighup", None),
            Some(reply) = requests.recv() => ("admin", Some(reply)),
        };
        tracing::info!(file = %path.display(), trigger = source, "reloading the policy");
        let Some(result) = reload(&broker, &path, source).await else {
            return;
        };
        match result.result {
            "rejected" => tracing::error!(
                error = result.error.as_deref().unwrap_or(""),
                "policy refused; the policy in force stays"
            ),
            r => tracing::info!(result = r, seq = result.seq, hash = %result.hash, "policy reload"),
        }
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }
}

/// Watches the directory holding `path` (Kubernetes replaces mounted files
/// through a symlink swap in that directory, which a watch on the file
/// itself would miss).
fn watch(path: &Path, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_owned());
    // The file itself, or Kubernetes' `..data` symlink swap.
    let relevant = move |e: &notify::Event| {
        e.paths.iter().any(|p| {
            let f = p.file_name();
            f == name.as_deref() || f.is_some_and(|f| f.to_string_lossy().starts_with(".."))
        })
    };
    crate::watch::watch_dirs(&[dir], "policy file", relevant, tx)
}
