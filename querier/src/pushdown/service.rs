//! The `Pushdown` gRPC service an ingester process serves: evaluates a
//! pushed-down aggregation over one shard's data with the querier's engine.
//! Where the data comes from (and the leadership check before reading it)
//! is the host's business, behind [`ShardSource`], so this crate needs no
//! ingester internals.

use super::evaluate_partial;
use aion_model::storage::{PushdownRequest, Queryable};
use aion_model::{Labels, TenantId};
use aion_proto::ingester as pb;
use aion_proto::ingester::pushdown_server::{Pushdown, PushdownServer};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Gives the service a shard's data, after confirming this node leads it.
#[tonic::async_trait]
pub trait ShardSource: Send + Sync + 'static {
    /// The data of `shard` (linearizable: fails with the same statuses as
    /// `Select` — NOT_FOUND, FAILED_PRECONDITION with the leader, UNAVAILABLE).
    async fn leader_data(&self, shard: u64) -> Result<Arc<dyn Queryable>, Status>;
}

/// The `Pushdown` service over a [`ShardSource`].
pub struct PushdownService<S> {
    source: Arc<S>,
    timeout: Duration,
}

impl<S: ShardSource> PushdownService<S> {
    /// The service, evaluating each request within `timeout`.
    pub fn new(source: Arc<S>, timeout: Duration) -> Self {
        Self { source, timeout }
    }

    /// As a tonic server (add it to the ingester's gRPC router).
    pub fn into_server(self) -> PushdownServer<Self> {
        PushdownServer::new(self).max_encoding_message_size(256 << 20).max_decoding_message_size(256 << 20)
    }
}

#[tonic::async_trait]
impl<S: ShardSource> Pushdown for PushdownService<S> {
    async fn aggregate(&self, req: Request<pb::AggregateRequest>) -> Result<Response<pb::AggregateResponse>, Status> {
        let r = req.into_inner();
        let tenant = TenantId::new(&r.tenant).map_err(|e| Status::invalid_argument(format!("invalid tenant {:?}: {e}", r.tenant)))?;
        let data = self.source.leader_data(r.shard).await?;
        let preq = PushdownRequest { expr: r.expr, start_ms: r.start_ms, end_ms: r.end_ms, step_ms: r.step_ms, lookback_ms: r.lookback_ms };
        let timeout = self.timeout;
        let shard = r.shard;
        let out = tokio::task::spawn_blocking(move || evaluate_partial(data.as_ref(), &tenant, &preq, timeout))
            .await
            .map_err(|e| Status::internal(format!("shard {shard}: pushdown task failed: {e}")))?
            .map_err(|e| Status::invalid_argument(format!("shard {shard}: pushdown evaluation failed: {e}")))?;
        Ok(Response::new(pb::AggregateResponse {
            series: out.series.into_iter().map(|s| pb::PartialSeries { labels: labels_to_pb(&s.labels), samples: s.points.iter().map(|p| pb::Sample { timestamp_ms: p.t, value: p.v }).collect() }).collect(),
            annotated: out.annotated,
        }))
    }
}

fn labels_to_pb(l: &Labels) -> Vec<pb::Label> {
    l.iter().map(|l| pb::Label { name: l.name.to_string(), value: l.value.to_string() }).collect()
}
