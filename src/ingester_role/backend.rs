//! The state machine backends an ingester node can run its shards on
//! (`ingester_cluster.state_machine`): what each needs to open a shard, its
//! Raft snapshot policy, and how it is flushed on shutdown.

use aion_ingester::raft::{shard_tsdb_dir, MemShardData, ShardData, ShardId, ShardStateMachine, TsdbShardData};
use aion_ingester::shards::{default_raft_config, ShardQuery};
use aion_ingester::TsdbConfig;
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;

/// A shard state machine backend of the ingester role.
pub trait Backend: ShardData + ShardQuery + Sized {
    /// Name in logs.
    const NAME: &'static str;

    /// Raft timing and snapshot policy for shards on this backend.
    fn raft_config() -> openraft::Config;

    /// Opens (or creates) this node's state machine of `shard`.
    fn open(data_dir: &Path, shard: ShardId, cfg: &TsdbConfig) -> anyhow::Result<ShardStateMachine<Self>>;

    /// Makes applied state durable (on graceful shutdown).
    fn flush(&self) -> anyhow::Result<()>;
}

/// In memory: rebuilt on restart by replaying the whole Raft log, which is
/// therefore never purged (no snapshots).
impl Backend for MemShardData {
    const NAME: &'static str = "memory";

    fn raft_config() -> openraft::Config {
        openraft::Config { snapshot_policy: openraft::SnapshotPolicy::Never, ..default_raft_config() }
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

    fn raft_config() -> openraft::Config {
        default_raft_config()
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
