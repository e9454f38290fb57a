//! Hosting and dropping shard replicas at runtime, and the node's hosted
//! shard set recorded in the Raft log DB (so a restarted node hosts what it
//! hosted when it stopped, not what the static placement says).

use super::{ShardHost, ShardHostError, ShardQuery};
use crate::raft::{ShardData, ShardId};
use crate::shards::NodeId;
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
        let data = Arc::downgrade(&hosted.data);
        drop(hosted);
        wait_released(&data, RELEASE_WAIT, shard, self.node_id).await;
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

/// How long [`ShardHost::drop_shard`] waits for the last user of a dropped
/// replica's data (a read in flight, a state-machine task finishing) to let
/// go before deleting its files.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits until nothing holds `data` any more, so its store is closed (no
/// background flush still writing into the directory about to be
/// deleted); gives up with a warning after `within` ([`RELEASE_WAIT`]).
/// Returns whether it was released.
async fn wait_released<S>(data: &std::sync::Weak<S>, within: std::time::Duration, shard: ShardId, node: NodeId) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while data.strong_count() > 0 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(shard, node, holders = data.strong_count(), "dropped replica's data still in use; deleting it anyway");
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn deletion_waits_for_the_last_holder_then_gives_up() {
        let data = Arc::new(7u32);
        let weak = Arc::downgrade(&data);
        let holder = Arc::clone(&data);
        drop(data);
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(80)).await;
            drop(holder);
        });
        let t = tokio::time::Instant::now();
        assert!(wait_released(&weak, Duration::from_secs(5), 0, 1).await);
        assert!(t.elapsed() >= Duration::from_millis(80), "returned before the holder let go");
        release.await.unwrap_or_default();
        let kept = Arc::new(1u32);
        let t = tokio::time::Instant::now();
        assert!(!wait_released(&Arc::downgrade(&kept), Duration::from_millis(50), 0, 1).await);
        assert!(t.elapsed() >= Duration::from_millis(50));
    }
}
