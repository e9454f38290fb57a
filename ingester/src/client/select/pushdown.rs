//! Aggregation pushdown through the fan-out: one `Aggregate` call per
//! ingester node for all the shards it leads (as the shard map knows them),
//! each node merging its shards' partial results before answering — so a
//! query costs one round trip and one partial result per node, not per
//! shard. Shards a node could not answer (leadership moved, no quorum, …),
//! shards without a known leader and every shard of a node whose call
//! failed go through the per-shard path with its redirects, fail-over,
//! retries and partial-response handling, so the outcome is the same as
//! asking every shard on its own.

use super::{FanOutQueryable, StorageError};
use crate::client::{aggregate_node, aggregate_shard, ShardPartial};
use crate::raft::ShardId;
use aion_model::storage::{PushdownAnswer, PushdownRequest};
use aion_proto::limit_status::LimitHit;
use aion_model::tenant::TenantId;
use std::collections::BTreeMap;
use tokio::time::Instant;

impl FanOutQueryable {
    /// A pushed-down aggregation evaluated on every shard's leader: the
    /// shards' partial results, merged by the caller. `Ok(None)` when a
    /// shard's evaluation raised annotations (the engine then evaluates
    /// the aggregation itself, so annotations stay exact).
    pub async fn pushdown_async(&self, tenant: &TenantId, req: &PushdownRequest) -> Result<Option<PushdownAnswer>, StorageError> {
        if self.client.shard_map().shard_ids().is_empty() {
            self.client.refresh().await;
        }
        let started = Instant::now();
        let deadline = started + self.config.call_timeout;
        let (by_node, mut rest) = self.shards_by_leader();
        let node_budget = deadline.min(started + self.config.shard_retry_budget);
        let calls = by_node.into_iter().map(|(addr, shards)| async move {
            let answer = match self.client.channel(&addr) {
                Ok(ch) => tokio::time::timeout_at(node_budget, aggregate_node(ch, shards.clone(), tenant, req)).await.ok(),
                Err(_) => None,
            };
            (shards, answer)
        });
        let mut parts: Vec<ShardPartial> = Vec::new();
        for (shards, answer) in futures::future::join_all(calls).await {
            // A query limit holds for the whole query: no shard is asked again.
            if let Some(hit) = answer.as_ref().and_then(|a| a.as_ref().err()).and_then(LimitHit::from_status) {
                self.metrics.request("aggregate", "error");
                return Err(super::limit_error(hit));
            }
            match answer {
                Some(Ok(node)) => {
                    self.metrics.request("aggregate", "ok");
                    rest.extend(node.failed.iter().map(|(s, _)| *s));
                    if !node.answered.is_empty() {
                        parts.push(node.partial);
                    }
                }
                _ => {
                    self.metrics.request("aggregate", "retried");
                    rest.extend(shards);
                }
            }
        }
        rest.sort_unstable();
        if rest.is_empty() {
            self.metrics.observe_call("aggregate", started.elapsed().as_secs_f64());
        } else {
            let more = self
                .fan_out_over("aggregate", rest, started, deadline, |shard, ch| aggregate_shard(ch, shard, tenant, req))
                .await?;
            parts.extend(more);
        }
        if parts.iter().any(|p| p.annotated) {
            return Ok(None);
        }
        let mut answer = PushdownAnswer::default();
        for p in parts {
            answer.series.extend(p.series);
            answer.series_hashes.extend(p.series_hashes);
            answer.samples += p.samples;
        }
        Ok(Some(answer))
    }

    /// Shards grouped by the address of their known leader, and the shards
    /// without one.
    pub(super) fn shards_by_leader(&self) -> (BTreeMap<String, Vec<ShardId>>, Vec<ShardId>) {
        let map = self.client.shard_map();
        let mut by_node: BTreeMap<String, Vec<ShardId>> = BTreeMap::new();
        let mut rest = Vec::new();
        for shard in 0..self.client.shard_count() {
            match map.get(shard).and_then(|r| r.leader.as_ref()) {
                Some((_, addr)) => by_node.entry(addr.clone()).or_default().push(shard),
                None => rest.push(shard),
            }
        }
        (by_node, rest)
    }
}
