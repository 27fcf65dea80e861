//! Durable Raft log and vote in redb. Every append, truncate, purge and vote is one redb
//! write transaction committed with `Durability::Immediate` (fsync) before Raft is told it is
//! done; only the optional "committed" hint uses a non-durable commit (losing it is safe).

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageIOError, Vote,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Entry, TypeConfig};
use crate::error::StorageError;

type RaftStorageError = openraft::StorageError<u64>;

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const VOTE: &str = "vote";
const PURGED: &str = "last_purged";
const COMMITTED: &str = "committed";

/// The redb-backed log store (cheap to clone; clones share the database).
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<Database>,
}

fn io_err(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: impl Into<StorageError>,
) -> RaftStorageError {
    let e: StorageError = e.into();
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

impl LogStore {
    /// Opens (or creates) `<dir>/raft.redb`.
    pub(crate) fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)?;
        let db = Database::create(dir.join("raft.redb"))?;
        let txn = db.begin_write()?;
        txn.open_table(LOGS)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    /// True if no vote and no log (purged or present) was ever stored.
    pub(crate) fn is_pristine(&self) -> Result<bool, StorageError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let logs = txn.open_table(LOGS)?;
        Ok(meta.get(VOTE)?.is_none() && meta.get(PURGED)?.is_none() && logs.first()?.is_none())
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let v = meta.get(key)?;
        Ok(match v {
            Some(v) => Some(postcard::from_bytes(v.value())?),
            None => None,
        })
    }

    fn put_meta<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        durability: Durability,
    ) -> Result<(), StorageError> {
        let bytes = postcard::to_allocvec(value)?;
        let mut txn = self.db.begin_write()?;
        txn.set_durability(durability)
            .map_err(|e| StorageError::Task(e.to_string()))?;
        txn.open_table(META)?.insert(key, bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    fn read_range<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<Entry>, StorageError> {
        let txn = self.db.begin_read()?;
        let logs = txn.open_table(LOGS)?;
        let mut out = Vec::new();
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        for item in logs.range(bounds)? {
            let (_, v) = item?;
            out.push(postcard::from_bytes(v.value())?);
        }
        Ok(out)
    }

    fn last_entry(&self) -> Result<Option<Entry>, StorageError> {
        let txn = self.db.begin_read()?;
        let logs = txn.open_table(LOGS)?;
        let last = logs.last()?;
        Ok(match last {
            Some((_, v)) => Some(postcard::from_bytes(v.value())?),
            None => None,
        })
    }

    fn write_entries(&self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), StorageError> {
        let txn = self.db.begin_write()?;
        {
            let mut logs = txn.open_table(LOGS)?;
            for (index, bytes) in &entries {
                logs.insert(*index, bytes.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn delete_from(&self, index: u64) -> Result<(), StorageError> {
        let txn = self.db.begin_write()?;
        txn.open_table(LOGS)?.retain_in(index.., |_, _| false)?;
        txn.commit()?;
        Ok(())
    }

    fn purge_upto(&self, log_id: &LogId<u64>) -> Result<(), StorageError> {
        let bytes = postcard::to_allocvec(log_id)?;
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(PURGED, bytes.as_slice())?;
        txn.open_table(LOGS)?
            .retain_in(..=log_id.index, |_, _| false)?;
        txn.commit()?;
        Ok(())
    }

    /// Runs a blocking redb write off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&LogStore) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))?
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        self.read_range(range)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftStorageError> {
        let read = |e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e);
        let last_purged_log_id: Option<LogId<u64>> = self.get_meta(PURGED).map_err(read)?;
        let last = self.last_entry().map_err(read)?.map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), RaftStorageError> {
        let vote = *vote;
        self.blocking(move |s| s.put_meta(VOTE, &vote, Durability::Immediate))
            .await
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, RaftStorageError> {
        self.get_meta(VOTE)
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Read, e))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), RaftStorageError> {
        // A hint that lets a restarted node re-apply its log without waiting for a leader:
        // non-durable is fine, it is made durable by the next log or vote write.
        self.blocking(move |s| s.put_meta(COMMITTED, &committed, Durability::None))
            .await
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, RaftStorageError> {
        let c: Option<Option<LogId<u64>>> = self
            .get_meta(COMMITTED)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))?;
        Ok(c.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = Vec::new();
        for e in entries {
            let bytes = postcard::to_allocvec(&e)
                .map_err(|err| io_err(ErrorSubject::Log(e.log_id), ErrorVerb::Write, err))?;
            batch.push((e.log_id.index, bytes));
        }
        let res = self.blocking(move |s| s.write_entries(batch)).await;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io_err(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), RaftStorageError> {
        self.blocking(move |s| s.delete_from(log_id.index))
            .await
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), RaftStorageError> {
        self.blocking(move |s| s.purge_upto(&log_id))
            .await
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}
