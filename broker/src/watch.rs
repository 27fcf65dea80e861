//! Watching configuration directories (TLS files, the policy file) for
//! changes. Directories, not files: Kubernetes replaces mounted secrets and
//! ConfigMaps by swapping a `..data` symlink, which a watch on the file
//! itself would miss.

use std::path::PathBuf;

use notify::Watcher;
use tokio::sync::mpsc;

/// Watches `dirs` and sends on `tx` when an event passes `relevant` (a
/// watcher error counts as relevant: better a needless reload than a
/// missed one). `tx` should have capacity 1: a full channel means a reload
/// is already pending. Failures are logged under `what`; `None` if no
/// watcher could start. The watcher stops when the returned value drops.
pub(crate) fn watch_dirs(
    dirs: &[PathBuf],
    what: &str,
    relevant: impl Fn(&notify::Event) -> bool + Send + 'static,
    tx: mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let hit = match event {
            Ok(e) => !matches!(e.kind, notify::EventKind::Access(_)) && relevant(&e),
            Err(_) => true,
        };
        if hit {
            let _ = tx.try_send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(what, error = %e, "cannot watch for changes; reload on change disabled");
            return None;
        }
    };
    for dir in dirs {
        if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            tracing::error!(
                what,
                dir = %dir.display(),
                error = %e,
                "cannot watch directory; changes there are not reloaded"
            );
        }
    }
    Some(watcher)
}
