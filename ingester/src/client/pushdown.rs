//! The client half of aggregation pushdown: one shard's `Pushdown.Aggregate`
//! call and the conversion of its answer. The fan-out over shards, leader
//! routing and the merge are the read path's ([`super::FanOutQueryable`]).

use crate::grpc::convert::labels_from_pb;
use aion_model::sample::Sample;
use aion_model::storage::{PartialSeries, PushdownRequest};
use aion_model::tenant::TenantId;
use aion_proto::ingester as pb;
use aion_proto::ingester::pushdown_client::PushdownClient;
use tonic::transport::Channel;

/// One shard's partial aggregation: its series, and whether the shard's
/// evaluation raised annotations (then the caller must not use pushdown).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShardPartial {
    /// Output series over the shard's data.
    pub series: Vec<PartialSeries>,
    /// The shard's evaluation produced warnings or infos.
    pub annotated: bool,
}

/// Asks the ingester behind `channel` to evaluate `req` over `shard`.
pub async fn aggregate_shard(
    channel: Channel,
    shard: u64,
    tenant: &TenantId,
    req: &PushdownRequest,
) -> Result<ShardPartial, tonic::Status> {
    let mut client = PushdownClient::new(channel)
        .max_decoding_message_size(super::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(super::MAX_MESSAGE_BYTES);
    let reply = client
        .aggregate(pb::AggregateRequest {
            shard,
            tenant: tenant.to_string(),
            expr: req.expr.clone(),
            start_ms: req.start_ms,
            end_ms: req.end_ms,
            step_ms: req.step_ms,
            lookback_ms: req.lookback_ms,
        })
        .await?
        .into_inner();
    Ok(ShardPartial {
        series: reply
            .series
            .into_iter()
            .map(|s| PartialSeries {
                labels: labels_from_pb(s.labels),
                points: s.samples.into_iter().map(|p| Sample::new(p.timestamp_ms, p.value)).collect(),
            })
            .collect(),
        annotated: reply.annotated,
    })
}
