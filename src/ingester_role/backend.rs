//! The state machine backends an ingester node can run its shards on
//! (`ingester_cluster.state_machine`): what each needs to open a shard, its
//! Raft snapshot policy, and how it is flushed on shutdown.

use aion_ingester::raft::{shard_tsdb_dir, MemShardData, ShardData, ShardId, ShardStateMachine, TsdbShardData};
use aion_ingester::shards::{raft_timing, BoxError, ShardOpener, ShardQuery};
use aion_ingester::TsdbConfig;
use anyhow::Context;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A shard state machine backend of the ingester role.
pub trait Backend: ShardData + ShardQuery + Sized {
    /// Name in logs.
    const NAME: &'static str;

    /// Raft timing and snapshot policy for shards on this backend;
    /// `snapshot_after` entries between snapshots where snapshots are used.
    fn raft_config(snapshot_after: u64, heartbeat: Duration) -> openraft::Config;

    /// Opens (or creates) this node's state machine of `shard`.
    fn open(data_dir: &Path, shard: ShardId, cfg: &TsdbConfig) -> anyhow::Result<ShardStateMachine<Self>>;

    /// Makes applied state durable (on graceful shutdown).
    fn flush(&self) -> anyhow::Result<()>;
}

/// In memory: rebuilt on restart by replaying the whole Raft log, which is
/// therefore never purged (no snapshots).
impl Backend for MemShardData {
    const NAME: &'static str = "memory";

    fn raft_config(_: u64, heartbeat: Duration) -> openraft::Config {
        openraft::Config { snapshot_policy: openraft::SnapshotPolicy::Never, ..raft_timing(heartbeat) }
    }

    fn open(_: &Path, _: ShardId, _: &TsdbConfig) -> anyhow::Result<ShardStateMachine<Self>> {
        Ok(ShardStateMachine::new(Arc::new(MemShardData::new())))
    }

    fn flush(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// One TSDB per shard under `<data>/shards/<id>/tsdb`; it records the
/// applied log position with each checkpoint, so a restart re-applies only
/// the log after it, and openraft's default snapshot policy may purge the log.
impl Backend for TsdbShardData {
    const NAME: &'static str = "tsdb";

    fn raft_config(snapshot_after: u64, heartbeat: Duration) -> openraft::Config {
        openraft::Config {
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_after),
            max_in_snapshot_log_to_keep: snapshot_after,
            ..raft_timing(heartbeat)
        }
    }

    fn open(data_dir: &Path, shard: ShardId, cfg: &TsdbConfig) -> anyhow::Result<ShardStateMachine<Self>> {
        let dir = shard_tsdb_dir(data_dir, shard);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let data = TsdbShardData::open(&dir, cfg.clone()).with_context(|| format!("opening shard {shard}'s TSDB in {}", dir.display()))?;
        ShardStateMachine::open(Arc::new(data)).with_context(|| format!("reading shard {shard}'s applied position"))
    }

    fn flush(&self) -> anyhow::Result<()> {
        self.tsdb().flush().context("flushing shard TSDB")?;
        Ok(())
    }
}

/// Opens and removes shard replicas of backend `B` under the data dir (the
/// [`ShardOpener`] of the node's `ShardHost`): state lives in
/// `<data>/shards/<id>/`, which a dropped replica deletes.
pub struct BackendOpener<B> {
    data_dir: PathBuf,
    cfg: TsdbConfig,
    _backend: PhantomData<fn() -> B>,
}

impl<B: Backend> BackendOpener<B> {
    /// The opener of replicas under `data_dir` with TSDB settings `cfg`.
    pub fn new(data_dir: &Path, cfg: &TsdbConfig) -> Self {
        Self { data_dir: data_dir.to_path_buf(), cfg: cfg.clone(), _backend: PhantomData }
    }
}

impl<B: Backend> ShardOpener<B> for BackendOpener<B> {
    fn open(&self, shard: ShardId) -> Result<ShardStateMachine<B>, BoxError> {
        B::open(&self.data_dir, shard, &self.cfg).map_err(|e| format!("{e:#}").into())
    }

    fn remove(&self, shard: ShardId) -> Result<(), BoxError> {
        let dir = self.data_dir.join("shards").join(shard.to_string());
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("deleting {}: {e}", dir.display()).into()),
        }
    }
}
