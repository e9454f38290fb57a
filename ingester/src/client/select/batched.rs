//! `Select` through the fan-out with one call per ingester node: the node
//! is asked for every shard the shard map says it leads
//! (`SelectRequest.shards`), reads them concurrently and streams them back
//! tagged by shard, as stored chunks (`unclipped_chunks`; the series stay
//! encoded here and are clipped to the range where they are decoded).
//! Shards a node could not answer, shards without a known leader and every
//! shard of a node whose call failed (refunding what its stream had charged
//! to the fetch budget) go through the per-shard path with its redirects,
//! fail-over, retries and partial-response handling, so the result is the
//! same as asking every shard on its own: parts are merged in shard order
//! by [`merge_selected`] / [`merge_series`].

use super::{ingester_client, merge_selected, merge_series, select_shard, FanOutQueryable, FetchBudget, StorageError};
use crate::grpc::convert::{matcher_to_pb, selected_from_pb};
use crate::raft::ShardId;
use aion_model::matcher::Matcher;
use aion_model::storage::{SelectHints, SelectedSeries, Series};
use aion_model::tenant::TenantId;
use aion_proto::ingester as pb;
use aion_proto::ingester::ingester_client::IngesterClient;
use std::collections::BTreeSet;
use tokio::time::Instant;
use tonic::transport::Channel;

/// One node's answer: series per answered shard, and the shards it did not answer.
struct NodeSelect {
    parts: Vec<(ShardId, Vec<SelectedSeries>)>,
    failed: Vec<ShardId>,
}

impl FanOutQueryable {
    /// Series matching `matchers` with samples in `hints`, merged over shards.
    pub async fn select_async(
        &self,
        tenant: &TenantId,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<Series>, StorageError> {
        let parts = self.select_parts(tenant, hints, matchers).await?;
        let decoded = parts
            .into_iter()
            .map(|part| part.into_iter().map(SelectedSeries::into_series).collect::<Result<Vec<_>, _>>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(merge_series(decoded))
    }

    /// Like [`Self::select_async`], but series stay encoded (stored chunks,
    /// clipped to `hints` when decoded) unless two shards returned the same
    /// label set, whose samples are then merged here.
    pub async fn select_chunks_async(
        &self,
        tenant: &TenantId,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<SelectedSeries>, StorageError> {
        merge_selected(self.select_parts(tenant, hints, matchers).await?)
    }

    /// Every shard's answer to the select, in shard order.
    async fn select_parts(
        &self,
        tenant: &TenantId,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<Vec<SelectedSeries>>, StorageError> {
        let req = pb::SelectRequest {
            shard: 0,
            tenant: tenant.to_string(),
            matchers: matchers.iter().map(matcher_to_pb).collect(),
            start_ms: hints.start,
            end_ms: hints.end,
            allow_follower_read: false,
            shards: Vec::new(),
            unclipped_chunks: true,
        };
        let budget = FetchBudget::new(self.config.max_fetched_series, self.config.max_fetched_chunk_bytes);
        let budget = &budget;
        if self.client.shard_map().shard_ids().is_empty() {
            self.client.refresh().await;
        }
        let started = Instant::now();
        let deadline = started + self.config.call_timeout;
        let (by_node, mut rest) = self.shards_by_leader();
        let node_deadline = deadline.min(started + self.config.shard_retry_budget);
        let req = &req;
        let calls = by_node.into_iter().map(|(addr, shards)| async move {
            let Ok(ch) = self.client.channel(&addr) else { return (shards, None) };
            let node_req = pb::SelectRequest { shard: shards[0], shards: shards.clone(), ..req.clone() };
            let mut charged = (0, 0);
            let call = select_node(ingester_client(ch), node_req, budget, &mut charged);
            let answer = match tokio::time::timeout_at(node_deadline, call).await {
                Ok(Ok(answer)) => Some(answer),
                _ => None,
            };
            if answer.is_none() {
                budget.refund(charged);
            }
            (shards, answer)
        });
        let mut parts: Vec<(ShardId, Vec<SelectedSeries>)> = Vec::new();
        for (shards, answer) in futures::future::join_all(calls).await {
            match answer {
                Some(node) => {
                    self.metrics.request("select", "ok");
                    parts.extend(node.parts);
                    rest.extend(node.failed);
                }
                None => {
                    self.metrics.request("select", "retried");
                    rest.extend(shards);
                }
            }
        }
        budget.check()?;
        rest.sort_unstable();
        if rest.is_empty() {
            self.metrics.observe_call("select", started.elapsed().as_secs_f64());
        } else {
            let more = self
                .fan_out_over("select", rest, started, deadline, |shard, ch| {
                    let one = select_shard(ingester_client(ch), pb::SelectRequest { shard, ..req.clone() }, budget);
                    async move { one.await.map(|series| (shard, series)) }
                })
                .await;
            budget.check()?;
            parts.extend(more?);
        }
        parts.sort_by_key(|(shard, _)| *shard);
        Ok(parts.into_iter().map(|(_, series)| series).collect())
    }
}

/// Streams one node's multi-shard Select, charging `budget` as it goes.
/// An answer that does not account for every requested shard (a server
/// that ignores `shards`) is an error, so the caller asks shard by shard.
async fn select_node(
    mut client: IngesterClient<Channel>,
    req: pb::SelectRequest,
    budget: &FetchBudget,
    charged: &mut (usize, usize),
) -> Result<NodeSelect, tonic::Status> {
    let asked: BTreeSet<ShardId> = req.shards.iter().copied().collect();
    let hints = SelectHints { start: req.start_ms, end: req.end_ms };
    let mut stream = client.select(req).await?.into_inner();
    let mut parts: Vec<(ShardId, Vec<SelectedSeries>)> = Vec::new();
    let (mut answered, mut failed) = (BTreeSet::new(), BTreeSet::new());
    while let Some(msg) = stream.message().await? {
        answered.extend(msg.answered.iter().copied());
        failed.extend(msg.failed.iter().map(|f| f.shard));
        if msg.series.is_empty() {
            continue;
        }
        let bytes: usize = msg.series.iter().flat_map(|s| s.chunks.iter()).map(|c| c.data.len()).sum();
        charged.0 += msg.series.len();
        charged.1 += bytes;
        if let Err(e) = budget.charge(msg.series.len(), bytes) {
            return Err(tonic::Status::resource_exhausted(e.to_string()));
        }
        let series: Vec<SelectedSeries> = msg.series.into_iter().filter_map(|s| selected_from_pb(s, &hints)).collect();
        if parts.last().is_some_and(|(shard, _)| *shard == msg.shard) {
            if let Some((_, v)) = parts.last_mut() {
                v.extend(series);
            }
        } else {
            parts.push((msg.shard, series));
        }
    }
    let complete = answered.union(&failed).copied().collect::<BTreeSet<_>>() == asked
        && answered.is_disjoint(&failed)
        && parts.iter().all(|(s, _)| answered.contains(s));
    if !complete {
        return Err(tonic::Status::unimplemented("the ingester does not answer multi-shard selects"));
    }
    Ok(NodeSelect { parts, failed: failed.into_iter().collect() })
}
