//! [`Tsdb`]: one TSDB in one RocksDB directory. Opening loads series,
//! postings and head state, then replays the WAL past the last checkpoint;
//! [`Tsdb::flush`] checkpoints. Appends ([`Appender`](aion_model::storage::Appender))
//! live in `tsdb/append.rs`, reads ([`Queryable`](aion_model::storage::Queryable))
//! in `tsdb/read.rs`.

mod append;
mod open;
mod read;
mod replicated;

pub use replicated::ReplicaMark;

use crate::config::TsdbConfig;
use crate::error::{IngesterError, Result};
use crate::head::Head;
use crate::keys::{u64_key, ALL_CFS, CF_HEAD, CF_META, CF_POSTINGS, CF_SERIES, CF_WAL, META_CHECKPOINT_SEQ};
use crate::metrics::Metrics;
use aion_model::matcher::Matcher;
use aion_model::tenant::TenantId;
use append::Sequencer;
use parking_lot::{Mutex, RwLock};
use prometheus_client::registry::Registry;
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, MemtableFactory, Options, WriteOptions, DB};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A point-in-time summary of a TSDB, for tests and status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsdbStats {
    /// Series in the head (all tenants).
    pub series: usize,
    /// Series with a non-empty open chunk.
    pub head_chunks: usize,
    /// WAL sequence number of the last applied batch.
    pub applied_seq: u64,
    /// Bytes of WAL records not yet covered by a checkpoint.
    pub wal_bytes: u64,
    /// Newest sample timestamp stored, if any.
    pub max_t: Option<i64>,
}

/// Bytes of encoded head records a checkpoint writes per RocksDB write.
const CHECKPOINT_SLICE_BYTES: usize = 1 << 20;

/// State shared by the handle and the background thread.
pub(crate) struct Inner {
    pub(crate) db: DB,
    pub(crate) cfg: TsdbConfig,
    pub(crate) head: RwLock<Head>,
    pub(crate) seq: Sequencer,
    pub(crate) metrics: Metrics,
    /// Serialises checkpoints.
    checkpoint_lock: Mutex<()>,
    /// (seq, bytes) of WAL records not yet purged, in apply order.
    pub(crate) wal_sizes: Mutex<VecDeque<(u64, u64)>>,
    /// Set when an apply write failed: the in-memory head is ahead of RocksDB.
    pub(crate) failed: Mutex<Option<String>>,
    /// Raft mode: the replica's position, persisted by checkpoints.
    replica: Mutex<ReplicaMark>,
    /// Raft mode: batches applied since open.
    replicated_applies: std::sync::atomic::AtomicU64,
    /// Width of the chunk key span (`meta` `chunk_span_ms`), set by `load`.
    chunk_span: std::sync::atomic::AtomicI64,
}

/// A time-series database on RocksDB: `Send + Sync`, meant to be shared
/// behind an `Arc` (calls block). Dropping it stops the background thread
/// without checkpointing; call [`Tsdb::flush`] on graceful shutdown.
pub struct Tsdb {
    inner: Arc<Inner>,
    background: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

impl Inner {
    /// Width of the chunks CF key span of this directory.
    pub(crate) fn chunk_span(&self) -> i64 {
        self.chunk_span.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Handle of a column family opened at start.
    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("BUG: every column family is opened at start")
    }

    /// Fails when an earlier apply write failed.
    pub(crate) fn check_failed(&self) -> Result<()> {
        match &*self.failed.lock() {
            Some(msg) => Err(IngesterError::Failed(msg.clone())),
            None => Ok(()),
        }
    }

    /// Persists the head state of every changed series, records the applied
    /// WAL position and purges the WAL up to it, ending with one synced write.
    ///
    /// The head records are encoded under the head read lock (appliers wait,
    /// queries go on) and written in slices of [`CHECKPOINT_SLICE_BYTES`], so
    /// at most one slice of encoded records is in memory at a time instead of
    /// every changed series' chunk at once. Only the last write (the rest of
    /// the records, `checkpoint_seq`, the replica mark and the WAL purge) is
    /// synced; the RocksDB log keeps the slices before it, so they are durable
    /// when it is, and a crash before it leaves the previous checkpoint in force.
    pub(crate) fn checkpoint(&self) -> Result<u64> {
        self.check_failed()?;
        let _serial = self.checkpoint_lock.lock();
        let (seq, mut wb, count) = {
            let head = self.head.read();
            match self.write_dirty_slices(&head) {
                Ok((wb, count)) => (head.applied_seq, wb, count),
                Err(e) => {
                    head.mark_all_dirty();
                    self.metrics.checkpoint_failures.inc();
                    return Err(e);
                }
            }
        };
        wb.put_cf(self.cf(CF_META), META_CHECKPOINT_SEQ, seq.to_be_bytes());
        self.replica.lock().write_to(&mut wb, self.cf(CF_META));
        wb.delete_range_cf(self.cf(CF_WAL), u64_key(0), u64_key(seq.saturating_add(1)));
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        if let Err(e) = self.db.write_opt(wb, &opts) {
            self.head.read().mark_all_dirty();
            self.metrics.checkpoint_failures.inc();
            return Err(IngesterError::rocks("writing a checkpoint")(e));
        }
        let mut sizes = self.wal_sizes.lock();
        while sizes.front().is_some_and(|(s, _)| *s <= seq) {
            sizes.pop_front();
        }
        self.metrics
            .wal_bytes
            .set(sizes.iter().map(|(_, b)| *b as i64).sum());
        self.metrics.checkpoints.inc();
        tracing::debug!(seq, series = count, "TSDB checkpoint written");
        Ok(seq)
    }

    /// Encodes the head record of every changed series (clearing its dirty
    /// flag) and writes them unsynced, a slice at a time. Returns the batch
    /// holding the last, unwritten slice and the number of records.
    fn write_dirty_slices(&self, head: &Head) -> Result<(rocksdb::WriteBatch, usize)> {
        let mut wb = rocksdb::WriteBatch::default();
        let mut buf = Vec::new();
        let mut count = 0;
        for (r, s) in head.series.iter() {
            if !s.state.dirty.swap(false, std::sync::atomic::Ordering::Relaxed) {
                continue;
            }
            buf.clear();
            s.state.encode(&mut buf);
            wb.put_cf(self.cf(CF_HEAD), u64_key(r), &buf);
            count += 1;
            if wb.size_in_bytes() >= CHECKPOINT_SLICE_BYTES {
                self.db
                    .write(std::mem::take(&mut wb))
                    .map_err(IngesterError::rocks("writing checkpoint head records"))?;
            }
        }
        Ok((wb, count))
    }

    fn stats(&self) -> TsdbStats {
        let head = self.head.read();
        TsdbStats {
            series: head.series.len(),
            head_chunks: head.head_chunks,
            applied_seq: head.applied_seq,
            wal_bytes: self.wal_sizes.lock().iter().map(|(_, b)| *b).sum(),
            max_t: head.max_t,
        }
    }
}

/// Column families with their options. `series` and `postings` are written
/// once per new series and read only when the TSDB opens (or dumps a
/// snapshot), so their memtables are plain vectors, sorted when flushed:
/// a new series' label postings land at random key positions, and inserting
/// them into a skip list was ~9 % of an ingester's CPU while series were
/// being created. Vector memtables cannot take concurrent writers, so
/// memtable writes are serialised (RocksDB still groups them).
fn column_families(opts: &mut Options) -> Vec<ColumnFamilyDescriptor> {
    opts.set_allow_concurrent_memtable_write(false);
    ALL_CFS
        .iter()
        .map(|name| {
            let mut cf = opts.clone();
            if [CF_SERIES, CF_POSTINGS].contains(name) {
                cf.set_memtable_factory(MemtableFactory::Vector);
            }
            ColumnFamilyDescriptor::new(*name, cf)
        })
        .collect()
}

impl Tsdb {
    /// Opens (creating if missing) the TSDB in `dir`: loads series, postings
    /// and head state, replays the WAL after the last checkpoint (skipping
    /// corrupt records with a warning), applies retention, and starts the
    /// background checkpoint thread when `checkpoint_interval` is non-zero.
    pub fn open(dir: &Path, cfg: TsdbConfig) -> Result<Tsdb> {
        cfg.validate()?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(4);
        // One memtable budget for every column family (the oldest memtable is
        // flushed when it fills), and per-CF memtables of half of it.
        opts.set_db_write_buffer_size(cfg.memtable_budget_bytes);
        opts.set_write_buffer_size(cfg.memtable_budget_bytes / 2);
        let open_err = |reason: String| IngesterError::Open {
            dir: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let cfs = column_families(&mut opts);
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|e| open_err(e.to_string()))?;
        open::check_format_version(&db, dir, crate::keys::chunk_span_for(cfg.retention_ms()))?;
        let inner = Arc::new(Inner {
            db,
            head: RwLock::new(Head::new(cfg.max_samples_per_chunk)),
            cfg,
            seq: Sequencer::new(0),
            metrics: Metrics::default(),
            checkpoint_lock: Mutex::new(()),
            wal_sizes: Mutex::new(VecDeque::new()),
            failed: Mutex::new(None),
            replica: Mutex::new(ReplicaMark::default()),
            replicated_applies: std::sync::atomic::AtomicU64::new(0),
            chunk_span: std::sync::atomic::AtomicI64::new(crate::keys::BLOCK_MS),
        });
        inner.load()?;
        inner.apply_retention()?;
        let tsdb = Tsdb {
            background: Mutex::new(None),
            inner: inner.clone(),
        };
        if !inner.cfg.checkpoint_interval.is_zero() {
            let (tx, rx) = mpsc::channel::<()>();
            let interval = inner.cfg.checkpoint_interval;
            let handle = std::thread::Builder::new()
                .name("aion-tsdb-checkpoint".into())
                .spawn(move || background(&inner, interval, rx))
                .map_err(IngesterError::Thread)?;
            *tsdb.background.lock() = Some((tx, handle));
        }
        Ok(tsdb)
    }

    /// Checkpoint: persists every open head chunk, records the WAL position
    /// and purges the WAL up to it. Call on graceful shutdown. Returns the WAL
    /// sequence number the checkpoint covers.
    pub fn flush(&self) -> Result<u64> {
        self.inner.checkpoint()
    }

    /// Drops whole chunk key spans (2 h to a day) older than the retention window (measured back from
    /// the newest stored sample). Also run at open and by the background thread.
    pub fn apply_retention(&self) -> Result<()> {
        self.inner.apply_retention().map(|_| ())
    }

    /// Registers the TSDB's metrics (`aion_tsdb_*`) in `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.inner.metrics.register(registry);
    }

    /// A point-in-time summary.
    pub fn stats(&self) -> TsdbStats {
        self.inner.stats()
    }

    /// An upper bound of how many series a select with `matchers` returns
    /// (`None` when no equality matcher bounds it), from the head's postings
    /// alone: cheap enough to decide where to run the read.
    pub fn series_bound(&self, tenant: &TenantId, matchers: &[Matcher]) -> Option<usize> {
        self.inner.series_bound(tenant, matchers)
    }

    /// The configuration in use.
    pub fn config(&self) -> &TsdbConfig {
        &self.inner.cfg
    }
}

impl Drop for Tsdb {
    fn drop(&mut self) {
        if let Some((tx, handle)) = self.background.lock().take() {
            drop(tx);
            if handle.join().is_err() {
                tracing::error!("TSDB background thread panicked");
            }
        }
    }
}

/// Background loop: retention then checkpoint every `interval` until the
/// sender is dropped.
fn background(inner: &Inner, interval: Duration, stop: mpsc::Receiver<()>) {
    loop {
        match stop.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {
                if let Err(e) = inner.apply_retention() {
                    tracing::warn!(error = %e, "TSDB retention failed");
                }
                if let Err(e) = inner.checkpoint() {
                    tracing::warn!(error = %e, "TSDB checkpoint failed");
                }
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
#[path = "tsdb_test.rs"]
mod tsdb_test;
