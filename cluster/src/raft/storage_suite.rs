//! Runs openraft's storage conformance suite over [`LogStore`] + [`SmStore`].

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use parking_lot::Mutex;

use super::TypeConfig;
use super::log_store::LogStore;
use super::sm_store::SmStore;
use crate::error::StateMachineError;
use crate::state_machine::ErasedStateMachine;

/// A byte-appending state machine for the suite (it applies arbitrary bytes).
#[derive(Default)]
struct Bytes(Mutex<Vec<u8>>);

impl ErasedStateMachine for Bytes {
    fn apply(&self, cmd: &[u8]) -> Result<Vec<u8>, StateMachineError> {
        self.0.lock().extend_from_slice(cmd);
        Ok(cmd.to_vec())
    }
    fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
        Ok(self.0.lock().clone())
    }
    fn restore(&self, data: &[u8]) -> Result<(), StateMachineError> {
        *self.0.lock() = data.to_vec();
        Ok(())
    }
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, SmStore, tempfile_guard::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile_guard::TempDir, LogStore, SmStore), openraft::StorageError<u64>> {
        let io = |e: String| {
            openraft::StorageError::from(openraft::StorageIOError::write(
                openraft::AnyError::error(e),
            ))
        };
        let dir = tempfile_guard::TempDir::new().map_err(|e| io(e.to_string()))?;
        let log = LogStore::open(dir.path()).map_err(|e| io(e.to_string()))?;
        let sm =
            SmStore::open(dir.path(), Arc::new(Bytes::default())).map_err(|e| io(e.to_string()))?;
        Ok((dir, log, sm))
    }
}

/// Runs `openraft::testing::Suite::test_all` (each case in a fresh temporary directory).
pub fn run_storage_suite() -> Result<(), String> {
    Suite::test_all(Builder).map_err(|e| e.to_string())
}

/// A minimal temporary directory (the library must not depend on `tempfile`).
mod tempfile_guard {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    static SEQ: AtomicU64 = AtomicU64::new(0);

    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new() -> std::io::Result<Self> {
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!(
                "starling-cluster-suite-{}-{n}-{}",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::create_dir_all(&p)?;
            Ok(Self(p))
        }
        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
