//! The Raft log of many shards in one RocksDB (openraft `RaftLogStorage`).
//!
//! Column families (layouts in `docs/format/raft.md`):
//! - `raft_log`: `shard_id u64 BE | log_index u64 BE` → encoded entry;
//! - `raft_meta`: `shard_id u64 BE | tag u8` → vote (tag 1), committed log
//!   id (tag 2), last purged log id (tag 3).
//!
//! Writes that openraft needs durable (append, vote, truncate, purge) are
//! queued to the DB's writer thread (`log_store/writer.rs`), which writes everything
//! queued meanwhile, for all shards, as one synced RocksDB write. The
//! committed log id is queued unsynced and not awaited: a stale value after a
//! crash only makes openraft re-apply less eagerly. Reads of the last few
//! appended entries are answered from memory (`log_store/cache.rs`).

mod cache;
mod writer;

use super::codec::{self, CodecError};
use cache::{TailCache, TailCaches};
pub use writer::WriteError;
use writer::{Cf, LogWriter, Op};
use super::metrics::ShardRaftStats;
use super::{NodeId, ShardId, TypeConfig};
use std::collections::BTreeSet;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote,
};
use rocksdb::{ColumnFamily, Direction, IteratorMode, Options, ReadOptions, WriteOptions, DB};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Column family holding log entries of every shard.
pub const CF_RAFT_LOG: &str = "raft_log";
/// Column family holding per-shard vote, committed and last-purged log ids.
pub const CF_RAFT_META: &str = "raft_meta";

const META_VOTE: u8 = 1;
const META_COMMITTED: u8 = 2;
const META_PURGED: u8 = 3;

/// Key (in `raft_meta`) of the node's hosted shard set: shard id `u64::MAX`
/// (reserved, never a real shard) and tag `0xff`.
const HOSTED_SHARDS_KEY: [u8; 9] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
/// Version byte of the hosted shard set value.
const HOSTED_SHARDS_VERSION: u8 = 1;

/// Decodes `version u8 | shard u64 BE *`.
fn decode_hosted(raw: &[u8]) -> std::result::Result<BTreeSet<ShardId>, CodecError> {
    let (version, body) = raw.split_first().ok_or_else(|| CodecError("empty hosted shard set".into()))?;
    if *version != HOSTED_SHARDS_VERSION {
        return Err(CodecError(format!(
            "hosted shard set version {version}, this build reads {HOSTED_SHARDS_VERSION}"
        )));
    }
    if body.len() % 8 != 0 {
        return Err(CodecError(format!("hosted shard set of {} bytes is not a multiple of 8", body.len())));
    }
    Ok(body
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            u64::from_be_bytes(b)
        })
        .collect())
}

/// Failures of the Raft log DB.
#[derive(Debug, Error)]
pub enum RaftLogError {
    /// The DB could not be opened.
    #[error("opening raft log DB at {}: {source}", path.display())]
    Open {
        /// Directory of the DB.
        path: PathBuf,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
    /// A DB handed to [`RaftLogDb::from_db`] lacks a needed column family.
    #[error("raft log DB has no column family {0:?}")]
    MissingColumnFamily(&'static str),
    /// A RocksDB read or write failed.
    #[error("shard {shard}: RocksDB {op} failed: {source}")]
    Rocks {
        /// Shard whose data was accessed.
        shard: ShardId,
        /// What was being done.
        op: &'static str,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
    /// A stored record failed to decode.
    #[error("shard {shard}: {what}: {source}")]
    Codec {
        /// Shard whose data was read.
        shard: ShardId,
        /// Which record.
        what: String,
        /// The decoding failure.
        source: CodecError,
    },
    /// A write queued to the DB's writer thread failed.
    #[error("shard {shard}: RocksDB {op} failed: {source}")]
    Write {
        /// Shard being written.
        shard: ShardId,
        /// What was being done.
        op: &'static str,
        /// The failure.
        #[source]
        source: WriteError,
    },
    /// The writer thread could not be started.
    #[error("starting the raft log writer thread for {}: {source}", path.display())]
    Writer {
        /// Directory of the DB.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, RaftLogError>;

/// Key of entry `index` of `shard` in `raft_log`.
pub fn log_key(shard: ShardId, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&shard.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

fn meta_key(shard: ShardId, tag: u8) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&shard.to_be_bytes());
    k[8] = tag;
    k
}

/// One RocksDB per ingester holding the Raft logs of all its shards.
#[derive(Clone)]
pub struct RaftLogDb {
    db: Arc<DB>,
    caches: TailCaches,
    writer: LogWriter,
}

impl RaftLogDb {
    /// Column families this store needs (for callers opening a shared DB).
    pub const COLUMN_FAMILIES: [&'static str; 2] = [CF_RAFT_LOG, CF_RAFT_META];

    /// Opens (creating if needed) a DB of its own at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_options(path, Options::default())
    }

    /// Like [`RaftLogDb::open`] with caller-tuned RocksDB options (e.g.
    /// statistics); creating the DB and its column families is forced on.
    pub fn open_with_options(path: &Path, mut opts: Options) -> Result<Self> {
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let db = DB::open_cf(&opts, path, Self::COLUMN_FAMILIES).map_err(|source| {
            RaftLogError::Open {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Self::from_open_db(Arc::new(db), path)
    }

    /// Uses an already open DB (e.g. the ingester's TSDB DB), which must have
    /// been opened with [`RaftLogDb::COLUMN_FAMILIES`].
    pub fn from_db(db: Arc<DB>) -> Result<Self> {
        for cf in Self::COLUMN_FAMILIES {
            if db.cf_handle(cf).is_none() {
                return Err(RaftLogError::MissingColumnFamily(cf));
            }
        }
        let path = db.path().to_path_buf();
        Self::from_open_db(db, &path)
    }

    fn from_open_db(db: Arc<DB>, path: &Path) -> Result<Self> {
        let writer = LogWriter::start(&db).map_err(|source| RaftLogError::Writer {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self { db, caches: TailCaches::default(), writer })
    }

    /// The log store of one shard (a cheap handle; any number may exist).
    pub fn shard(&self, shard: ShardId) -> ShardLogStore {
        ShardLogStore {
            db: Arc::clone(&self.db),
            shard,
            stats: None,
            cache: self.caches.shard(shard),
            writer: self.writer.clone(),
        }
    }

    /// The set of shards this node hosts, as last saved; `None` when never
    /// saved (a node's first start).
    pub fn hosted_shards(&self) -> Result<Option<BTreeSet<ShardId>>> {
        let cf = self
            .db
            .cf_handle(CF_RAFT_META)
            .ok_or(RaftLogError::MissingColumnFamily(CF_RAFT_META))?;
        let raw = self
            .db
            .get_cf(cf, HOSTED_SHARDS_KEY)
            .map_err(|source| RaftLogError::Rocks { shard: u64::MAX, op: "read hosted shards", source })?;
        let Some(raw) = raw else { return Ok(None) };
        decode_hosted(&raw).map(Some).map_err(|source| RaftLogError::Codec {
            shard: u64::MAX,
            what: "hosted shard set".into(),
            source,
        })
    }

    /// Saves (synced) the set of shards this node hosts.
    pub fn save_hosted_shards(&self, shards: &BTreeSet<ShardId>) -> Result<()> {
        let cf = self
            .db
            .cf_handle(CF_RAFT_META)
            .ok_or(RaftLogError::MissingColumnFamily(CF_RAFT_META))?;
        let mut buf = Vec::with_capacity(1 + 8 * shards.len());
        buf.push(HOSTED_SHARDS_VERSION);
        for s in shards {
            buf.extend_from_slice(&s.to_be_bytes());
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db
            .put_cf_opt(cf, HOSTED_SHARDS_KEY, buf, &opts)
            .map_err(|source| RaftLogError::Rocks { shard: u64::MAX, op: "write hosted shards", source })
    }

    /// The underlying DB.
    pub fn db(&self) -> &Arc<DB> {
        &self.db
    }
}

/// The Raft log and vote of one shard: openraft's `RaftLogStorage` and
/// `RaftLogReader` (the reader is a clone of the store).
#[derive(Clone)]
pub struct ShardLogStore {
    db: Arc<DB>,
    shard: ShardId,
    stats: Option<Arc<ShardRaftStats>>,
    /// The shard's recently appended entries (shared by all its handles).
    cache: Arc<parking_lot::Mutex<TailCache>>,
    /// The DB's writer thread.
    writer: LogWriter,
}

impl ShardLogStore {
    /// This store, recording the committed index into `stats` as well.
    pub fn with_stats(mut self, stats: Arc<ShardRaftStats>) -> Self {
        self.stats = Some(stats);
        self
    }

    /// The shard this store belongs to.
    pub fn shard_id(&self) -> ShardId {
        self.shard
    }

    fn cf(&self, name: &'static str) -> Result<&ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or(RaftLogError::MissingColumnFamily(name))
    }

    fn rocks(&self, op: &'static str) -> impl FnOnce(rocksdb::Error) -> RaftLogError {
        let shard = self.shard;
        move |source| RaftLogError::Rocks { shard, op, source }
    }

    fn codec(&self, what: impl Into<String>) -> impl FnOnce(CodecError) -> RaftLogError {
        let shard = self.shard;
        let what = what.into();
        move |source| RaftLogError::Codec {
            shard,
            what,
            source,
        }
    }

    fn meta(&self, tag: u8) -> Result<Option<Vec<u8>>> {
        self.db
            .get_cf(self.cf(CF_RAFT_META)?, meta_key(self.shard, tag))
            .map_err(self.rocks("read meta"))
    }

    fn opt_log_id_meta(&self, tag: u8, what: &str) -> Result<Option<LogId<NodeId>>> {
        match self.meta(tag)? {
            None => Ok(None),
            Some(b) => codec::decode_opt_log_id(&b).map_err(self.codec(what)),
        }
    }

    /// Entries with index in `[start, end)`, in index order.
    pub fn read_range(&self, start: u64, end: u64) -> Result<Vec<Entry<TypeConfig>>> {
        if start >= end {
            return Ok(Vec::new());
        }
        if let Some(hit) = self.cache.lock().range(start, end) {
            return Ok(hit);
        }
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(log_key(self.shard, end));
        let from = log_key(self.shard, start);
        let it = self.db.iterator_cf_opt(
            self.cf(CF_RAFT_LOG)?,
            opts,
            IteratorMode::From(&from, Direction::Forward),
        );
        let mut out = Vec::new();
        for kv in it {
            let (k, v) = kv.map_err(self.rocks("iterate log"))?;
            let e = codec::decode_local_entry(bytes::Bytes::from(v))
                .map_err(self.codec(format!("log entry key {k:02x?}")))?;
            out.push(e);
        }
        Ok(out)
    }

    /// Log id of the last entry present, if any.
    pub fn last_entry_id(&self) -> Result<Option<LogId<NodeId>>> {
        let mut opts = ReadOptions::default();
        opts.set_iterate_lower_bound(log_key(self.shard, 0));
        opts.set_iterate_upper_bound(log_key(self.shard, u64::MAX));
        let mut it = self
            .db
            .iterator_cf_opt(self.cf(CF_RAFT_LOG)?, opts, IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(kv) => {
                let (_, v) = kv.map_err(self.rocks("seek last log entry"))?;
                codec::decode_entry_log_id(&v)
                    .map(Some)
                    .map_err(self.codec("last log entry"))
            }
        }
    }

    /// Last purged log id, if any entry was ever purged.
    pub fn last_purged(&self) -> Result<Option<LogId<NodeId>>> {
        self.opt_log_id_meta(META_PURGED, "last purged log id")
    }

    /// Writes `ops` atomically and synced through the DB's writer thread
    /// (which groups concurrent writes of all shards into one sync).
    async fn write_synced(&self, op: &'static str, ops: Vec<Op>) -> Result<()> {
        self.writer
            .write(ops, true)
            .await
            .map_err(|source| RaftLogError::Write { shard: self.shard, op, source })
    }

    /// Deletes every entry and all meta of this shard (replica moved away).
    pub async fn destroy(&self) -> Result<()> {
        self.cache.lock().clear();
        let ops = vec![
            Op::DeleteRange(Cf::Log, log_key(self.shard, 0).to_vec(), log_key(self.shard, u64::MAX).to_vec()),
            Op::DeleteRange(Cf::Meta, meta_key(self.shard, 0).to_vec(), meta_key(self.shard, u8::MAX).to_vec()),
        ];
        self.write_synced("destroy", ops).await
    }
}

fn read_err(e: RaftLogError) -> StorageError<NodeId> {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: RaftLogError) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

fn range_to_indices<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for ShardLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let (start, end) = range_to_indices(&range);
        self.read_range(start, end).map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for ShardLogStore {
    type LogReader = ShardLogStore;

    async fn get_log_state(
        &mut self,
    ) -> std::result::Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id = self.last_purged().map_err(read_err)?;
        let last_log_id = self
            .last_entry_id()
            .map_err(read_err)?
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(
        &mut self,
        vote: &Vote<NodeId>,
    ) -> std::result::Result<(), StorageError<NodeId>> {
        let mut buf = Vec::with_capacity(18);
        codec::encode_vote(vote, &mut buf);
        let ops = vec![Op::Put(Cf::Meta, meta_key(self.shard, META_VOTE).to_vec(), buf)];
        self.write_synced("write vote", ops)
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(
        &mut self,
    ) -> std::result::Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        let to_err =
            |e: RaftLogError| StorageError::from(StorageIOError::read_vote(AnyError::new(&e)));
        match self.meta(META_VOTE).map_err(to_err)? {
            None => Ok(None),
            Some(b) => codec::decode_vote(&b)
                .map(Some)
                .map_err(self.codec("vote"))
                .map_err(to_err),
        }
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> std::result::Result<(), StorageError<NodeId>> {
        if let Some(stats) = &self.stats {
            stats.set_committed(committed.map_or(0, |c| c.index));
        }
        let mut buf = Vec::with_capacity(26);
        codec::encode_opt_log_id(committed.as_ref(), &mut buf);
        self.cache.lock().committed = Some(committed);
        // Queued, not awaited: the shard's Raft core never waits for it (a
        // stale value after a crash only makes openraft re-apply later).
        self.writer
            .write_detached(vec![Op::Put(Cf::Meta, meta_key(self.shard, META_COMMITTED).to_vec(), buf)]);
        Ok(())
    }

    async fn read_committed(
        &mut self,
    ) -> std::result::Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        if let Some(saved) = self.cache.lock().committed {
            return Ok(saved);
        }
        self.opt_log_id_meta(META_COMMITTED, "committed log id")
            .map_err(read_err)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> std::result::Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let ops = entries
            .iter()
            .map(|e| {
                let mut buf = Vec::new();
                codec::encode_entry(e, &mut buf);
                Op::Put(Cf::Log, log_key(self.shard, e.log_id.index).to_vec(), buf)
            })
            .collect();
        match self.write_synced("append", ops).await {
            Ok(()) => {
                self.cache.lock().extend(&entries);
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(
        &mut self,
        log_id: LogId<NodeId>,
    ) -> std::result::Result<(), StorageError<NodeId>> {
        self.cache.lock().truncate(log_id.index);
        let ops = vec![Op::DeleteRange(
            Cf::Log,
            log_key(self.shard, log_id.index).to_vec(),
            log_key(self.shard, u64::MAX).to_vec(),
        )];
        self.write_synced("truncate", ops).await.map_err(write_err)
    }

    async fn purge(
        &mut self,
        log_id: LogId<NodeId>,
    ) -> std::result::Result<(), StorageError<NodeId>> {
        let mut buf = Vec::with_capacity(26);
        codec::encode_opt_log_id(Some(&log_id), &mut buf);
        self.cache.lock().purge(log_id.index);
        let ops = vec![
            Op::Put(Cf::Meta, meta_key(self.shard, META_PURGED).to_vec(), buf),
            Op::DeleteRange(
                Cf::Log,
                log_key(self.shard, 0).to_vec(),
                log_key(self.shard, log_id.index.saturating_add(1)).to_vec(),
            ),
        ];
        self.write_synced("purge", ops).await.map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_shard_then_index() {
        let mut keys = vec![
            log_key(2, 0),
            log_key(1, u64::MAX - 1),
            log_key(1, 256),
            log_key(1, 3),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                log_key(1, 3),
                log_key(1, 256),
                log_key(1, u64::MAX - 1),
                log_key(2, 0)
            ]
        );
        assert!(meta_key(1, META_PURGED) < meta_key(2, META_VOTE));
    }

    #[test]
    fn hosted_shard_set_survives_reopen_and_a_shard_destroy() {
        let dir = tempfile::tempdir().unwrap();
        let db = RaftLogDb::open(dir.path()).unwrap();
        assert_eq!(db.hosted_shards().unwrap(), None);
        db.save_hosted_shards(&BTreeSet::new()).unwrap();
        assert_eq!(db.hosted_shards().unwrap(), Some(BTreeSet::new()));
        let set = BTreeSet::from([0, 7, 15]);
        db.save_hosted_shards(&set).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(db.shard(15).destroy()).unwrap();
        drop(db);
        let db = RaftLogDb::open(dir.path()).unwrap();
        assert_eq!(db.hosted_shards().unwrap(), Some(set));
        assert!(decode_hosted(&[2, 0]).is_err());
        assert!(decode_hosted(&[1, 0, 0]).is_err());
    }

    #[test]
    fn range_bounds_map_to_half_open_indices() {
        assert_eq!(range_to_indices(&(3..7)), (3, 7));
        assert_eq!(range_to_indices(&(3..=7)), (3, 8));
        assert_eq!(range_to_indices(&(..)), (0, u64::MAX));
        assert_eq!(range_to_indices(&(5..)), (5, u64::MAX));
    }
}
