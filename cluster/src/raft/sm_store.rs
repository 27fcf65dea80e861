//! Openraft's state-machine side: applies entries to the application's state machine
//! (kept in memory by the application) and keeps the latest snapshot as one file,
//! `<data_dir>/snapshot.bin`, replaced atomically (temp file, fsync, rename, fsync dir).

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend,
    RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{Entry, TypeConfig};
use crate::error::StorageError;
use crate::state_machine::ErasedStateMachine;

type RaftStorageError = openraft::StorageError<u64>;
type Meta = SnapshotMeta<u64, BasicNode>;

const SNAPSHOT_FILE: &str = "snapshot.bin";
const SNAPSHOT_TMP: &str = "snapshot.bin.tmp";

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: Meta,
    data: Vec<u8>,
}

#[derive(Default)]
struct Applied {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
}

struct Inner {
    app: Arc<dyn ErasedStateMachine>,
    applied: Mutex<Applied>,
    dir: PathBuf,
    seq: AtomicU64,
}

/// State machine store (cheap to clone; clones share state).
#[derive(Clone)]
pub(crate) struct SmStore {
    inner: Arc<Inner>,
}

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> RaftStorageError {
    StorageIOError::new(
        ErrorSubject::StateMachine,
        verb,
        AnyError::error(e.to_string()),
    )
    .into()
}

fn snap_err(verb: ErrorVerb, e: impl std::fmt::Display) -> RaftStorageError {
    StorageIOError::new(
        ErrorSubject::Snapshot(None),
        verb,
        AnyError::error(e.to_string()),
    )
    .into()
}

impl SmStore {
    /// Opens the store; restores the application state from the snapshot file if present.
    pub(crate) fn open(dir: &Path, app: Arc<dyn ErasedStateMachine>) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)?;
        let _ = std::fs::remove_file(dir.join(SNAPSHOT_TMP));
        let store = Self {
            inner: Arc::new(Inner {
                app,
                applied: Mutex::new(Applied::default()),
                dir: dir.to_path_buf(),
                seq: AtomicU64::new(0),
            }),
        };
        if let Some(file) = store.read_file()? {
            store
                .inner
                .app
                .restore(&file.data)
                .map_err(|e| StorageError::Task(format!("restore snapshot: {e}")))?;
            let mut a = store.inner.applied.lock();
            a.last_applied = file.meta.last_log_id;
            a.membership = file.meta.last_membership;
        }
        Ok(store)
    }

    /// True if a snapshot file exists.
    pub(crate) fn has_snapshot(&self) -> bool {
        self.inner.dir.join(SNAPSHOT_FILE).exists()
    }

    fn read_file(&self) -> Result<Option<SnapshotFile>, StorageError> {
        match std::fs::read(self.inner.dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => Ok(Some(postcard::from_bytes(&bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn write_file(&self, file: SnapshotFile) -> Result<(), StorageError> {
        let dir = self.inner.dir.clone();
        tokio::task::spawn_blocking(move || write_atomic(&dir, &postcard::to_allocvec(&file)?))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))?
    }
}

/// Temp file, fsync, rename over the old snapshot, fsync the directory.
fn write_atomic(dir: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = dir.join(SNAPSHOT_TMP);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for SmStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        // Hold the applied lock so the data and its log id are one consistent cut.
        let (meta, data) = {
            let a = self.inner.applied.lock();
            let data = self
                .inner
                .app
                .snapshot()
                .map_err(|e| sm_err(ErrorVerb::Read, e))?;
            let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
            let snapshot_id = match a.last_applied {
                Some(l) => format!(
                    "{}-{}-{}-{seq}",
                    l.leader_id.term, l.leader_id.node_id, l.index
                ),
                None => format!("empty-{seq}"),
            };
            (
                Meta {
                    last_log_id: a.last_applied,
                    last_membership: a.membership.clone(),
                    snapshot_id,
                },
                data,
            )
        };
        self.write_file(SnapshotFile {
            meta: meta.clone(),
            data: data.clone(),
        })
        .await
        .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        tracing::debug!(snapshot = %meta.snapshot_id, bytes = data.len(), "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for SmStore {
    type SnapshotBuilder = SmStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), RaftStorageError> {
        let a = self.inner.applied.lock();
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<u8>>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            let mut a = self.inner.applied.lock();
            let resp = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(cmd) => self.inner.app.apply(&cmd).map_err(|e| {
                    tracing::error!(index = entry.log_id.index, error = %e, "state machine cannot apply a committed entry");
                    sm_err(ErrorVerb::Write, e)
                })?,
                EntryPayload::Membership(m) => {
                    a.membership = StoredMembership::new(Some(entry.log_id), m);
                    Vec::new()
                }
            };
            a.last_applied = Some(entry.log_id);
            out.push(resp);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, RaftStorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), RaftStorageError> {
        let data = snapshot.into_inner();
        {
            let mut a = self.inner.applied.lock();
            self.inner
                .app
                .restore(&data)
                .map_err(|e| snap_err(ErrorVerb::Write, e))?;
            a.last_applied = meta.last_log_id;
            a.membership = meta.last_membership.clone();
        }
        self.write_file(SnapshotFile {
            meta: meta.clone(),
            data,
        })
        .await
        .map_err(|e| snap_err(ErrorVerb::Write, e))
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, RaftStorageError> {
        let file = self.read_file().map_err(|e| snap_err(ErrorVerb::Read, e))?;
        Ok(file.map(|f| Snapshot {
            meta: f.meta,
            snapshot: Box::new(Cursor::new(f.data)),
        }))
    }
}
