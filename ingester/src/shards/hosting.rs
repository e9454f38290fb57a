//! Hosting and dropping shard replicas at runtime, and the node's hosted
//! shard set recorded in the Raft log DB (so a restarted node hosts what it
//! hosted when it stopped, not what the static placement says).

use super::{ShardHost, ShardHostError, ShardQuery};
use crate::raft::{ShardData, ShardId};
use std::collections::BTreeSet;
use std::sync::Arc;

impl<S: ShardData + ShardQuery> ShardHost<S> {
    fn storage_err(&self, shard: ShardId, what: &'static str, e: impl std::fmt::Display) -> ShardHostError {
        ShardHostError::Storage {
            shard,
            node: self.node_id,
            what,
            reason: e.to_string(),
        }
    }

    /// The hosted shard set as recorded on disk; `None` on a node's first start.
    pub fn recorded_shards(&self) -> Result<Option<BTreeSet<ShardId>>, ShardHostError> {
        self.log_db
            .hosted_shards()
            .map_err(|e| self.storage_err(u64::MAX, "reading the hosted shard set", e))
    }

    /// Records the currently hosted shards (synced) as the set to host after a restart.
    pub async fn record_hosted_shards(&self) -> Result<(), ShardHostError> {
        let set: BTreeSet<ShardId> = self.shard_ids().into_iter().collect();
        let db = self.log_db.clone();
        tokio::task::spawn_blocking(move || db.save_hosted_shards(&set))
            .await
            .map_err(|e| self.storage_err(u64::MAX, "recording the hosted shard set", e))?
            .map_err(|e| self.storage_err(u64::MAX, "recording the hosted shard set", e))
    }

    /// Starts an empty (or recovered) replica of `shard` that waits to be
    /// added to its group; records the new hosted set. Returns false when
    /// the shard was already hosted (idempotent).
    pub async fn host_shard(&self, shard: ShardId) -> Result<bool, ShardHostError> {
        let _guard = self.admin.lock().await;
        if self.shard(shard).is_some() {
            return Ok(false);
        }
        let opener = self.opener.clone().ok_or_else(|| {
            self.storage_err(shard, "hosting a replica", "this host has no shard opener")
        })?;
        let sm = tokio::task::spawn_blocking(move || opener.open(shard).map_err(|e| e.to_string()))
            .await
            .map_err(|e| self.storage_err(shard, "opening the state machine", e))?
            .map_err(|e| self.storage_err(shard, "opening the state machine", e))?;
        self.open_shard(shard, sm).await?;
        self.record_hosted_shards().await?;
        tracing::info!(shard, node = self.node_id, "hosting a new replica");
        Ok(true)
    }

    /// Stops this node's replica of `shard`, deletes its log, vote and
    /// state, and records the new hosted set. Returns false when the shard
    /// was not hosted (idempotent).
    pub async fn drop_shard(&self, shard: ShardId) -> Result<bool, ShardHostError> {
        let _guard = self.admin.lock().await;
        let Some(hosted) = self.shards.write().remove(&shard) else {
            return Ok(false);
        };
        self.record_hosted_shards().await?;
        if let Err(e) = hosted.raft.shutdown().await {
            tracing::warn!(shard, node = self.node_id, "raft shutdown: {e}");
        }
        drop(hosted);
        self.log_db
            .shard(shard)
            .destroy()
            .await
            .map_err(|e| self.storage_err(shard, "deleting the raft log", e))?;
        if let Some(opener) = self.opener.clone() {
            tokio::task::spawn_blocking(move || opener.remove(shard).map_err(|e| e.to_string()))
                .await
                .map_err(|e| self.storage_err(shard, "deleting the state", e))?
                .map_err(|e| self.storage_err(shard, "deleting the state", e))?;
        }
        tracing::info!(shard, node = self.node_id, "dropped replica");
        Ok(true)
    }

    /// Starts the replicas of every shard in `shards` with `opener`-built
    /// state machines (startup), then records the hosted set.
    pub async fn open_all(&self, shards: &BTreeSet<ShardId>) -> Result<(), ShardHostError> {
        for &shard in shards {
            let opener = self.opener.clone().ok_or_else(|| {
                self.storage_err(shard, "opening a replica", "this host has no shard opener")
            })?;
            let sm = tokio::task::spawn_blocking(move || opener.open(shard).map_err(|e| e.to_string()))
                .await
                .map_err(|e| self.storage_err(shard, "opening the state machine", e))?
                .map_err(|e| self.storage_err(shard, "opening the state machine", e))?;
            self.open_shard(shard, sm).await?;
        }
        self.record_hosted_shards().await
    }

    /// The replica of `shard` or [`ShardHostError::UnknownShard`].
    pub fn hosted(&self, shard: ShardId) -> Result<Arc<super::HostedShard<S>>, ShardHostError> {
        self.shard(shard).ok_or(ShardHostError::UnknownShard {
            shard,
            node: self.node_id,
        })
    }
}
