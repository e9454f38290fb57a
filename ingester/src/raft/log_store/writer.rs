//! One writer thread per log DB that turns the writes of all shards into as
//! few synced RocksDB writes as it can.
//!
//! Every shard's appends, votes, truncates and purges are queued here as
//! jobs. The thread takes whatever has queued up while its previous write
//! was syncing, puts all of it in ONE write batch and issues one write (synced
//! when any job asked for it), then answers every job. That is group commit
//! without RocksDB's write-group hand-off between threads (no blocking-pool
//! thread per write, no writer spinning to join a group), and an
//! unsynced write (the committed log id) never waits behind a sync on the
//! caller's thread: it is queued and not awaited.
//!
//! Each job's operations land in one RocksDB write batch, so a job stays
//! atomic; jobs are written in the order they were queued. The thread holds
//! only a weak reference to the DB between writes, so dropping the last
//! handle closes the DB, and it exits when the last handle is gone.

use rocksdb::{WriteBatch, WriteOptions, DB};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Weak};
use tokio::sync::oneshot;

/// Most jobs put into one write.
const MAX_JOBS_PER_WRITE: usize = 1024;

/// A column family of the log DB.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cf {
    /// `raft_log`.
    Log,
    /// `raft_meta`.
    Meta,
}

impl Cf {
    fn name(self) -> &'static str {
        match self {
            Cf::Log => super::CF_RAFT_LOG,
            Cf::Meta => super::CF_RAFT_META,
        }
    }
}

/// One write operation of a job.
#[derive(Debug)]
pub(super) enum Op {
    /// Put `key` → `value`.
    Put(Cf, Vec<u8>, Vec<u8>),
    /// Delete keys in `[from, to)`.
    DeleteRange(Cf, Vec<u8>, Vec<u8>),
}

/// Why a queued write did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// RocksDB refused the write (every job of that write gets this).
    #[error("{0}")]
    Rocks(#[from] rocksdb::Error),
    /// The DB has no such column family.
    #[error("no column family {0:?}")]
    MissingColumnFamily(&'static str),
    /// The writer thread is gone (the DB was closed).
    #[error("raft log writer stopped")]
    Stopped,
}

struct Job {
    ops: Vec<Op>,
    sync: bool,
    done: Option<oneshot::Sender<Result<(), WriteError>>>,
}

/// Handle of the writer thread (cheap to clone).
#[derive(Clone)]
pub(super) struct LogWriter {
    tx: Sender<Job>,
}

impl LogWriter {
    /// Starts the writer thread of `db`.
    pub(super) fn start(db: &Arc<DB>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let weak = Arc::downgrade(db);
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || run(&weak, &rx))?;
        Ok(Self { tx })
    }

    /// Writes `ops` atomically (synced when `sync`) and waits until it is done.
    pub(super) async fn write(&self, ops: Vec<Op>, sync: bool) -> Result<(), WriteError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Job { ops, sync, done: Some(done) })
            .map_err(|_| WriteError::Stopped)?;
        rx.await.map_err(|_| WriteError::Stopped)?
    }

    /// Queues `ops` as an unsynced write without waiting for it (written in
    /// queue order; a failure is logged).
    pub(super) fn write_detached(&self, ops: Vec<Op>) {
        if self.tx.send(Job { ops, sync: false, done: None }).is_err() {
            tracing::warn!("raft log writer stopped; an unsynced write was dropped");
        }
    }
}

fn run(db: &Weak<DB>, rx: &Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_JOBS_PER_WRITE {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let res = match db.upgrade() {
            Some(db) => write_jobs(&db, &mut jobs),
            None => Err(WriteError::Stopped),
        };
        if let Err(e) = &res {
            if jobs.iter().any(|j| j.done.is_none()) {
                tracing::warn!(error = %e, "raft log write failed (an unsynced committed-id write was lost)");
            }
        }
        for j in jobs {
            if let Some(done) = j.done {
                let _ = done.send(res.clone());
            }
        }
    }
}

/// Puts every job's operations in one write batch and writes it.
fn write_jobs(db: &DB, jobs: &mut [Job]) -> Result<(), WriteError> {
    let cf = |c: Cf| db.cf_handle(c.name()).ok_or(WriteError::MissingColumnFamily(c.name()));
    let (log, meta) = (cf(Cf::Log)?, cf(Cf::Meta)?);
    let handle = |c: Cf| match c {
        Cf::Log => log,
        Cf::Meta => meta,
    };
    let mut wb = WriteBatch::default();
    let mut sync = false;
    for j in jobs.iter_mut() {
        sync |= j.sync;
        for op in j.ops.drain(..) {
            match op {
                Op::Put(c, k, v) => wb.put_cf(handle(c), k, v),
                Op::DeleteRange(c, from, to) => wb.delete_range_cf(handle(c), from, to),
            }
        }
    }
    let mut opts = WriteOptions::default();
    opts.set_sync(sync);
    db.write_opt(wb, &opts)?;
    Ok(())
}
