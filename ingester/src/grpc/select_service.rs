//! Multi-shard `Select`: one call reads every listed shard the node leads
//! (`SelectRequest.shards`), so a querier pays one round trip per node, not
//! per shard. Each shard is read exactly as a single-shard `Select` would
//! (leadership confirmed unless `allow_follower_read`), concurrently; the
//! stream's messages name their shard, and the last message lists the
//! shards answered and those that failed with the status a single-shard
//! call would have returned (the client retries those one by one).

use super::convert;
use super::server::{IngesterService, SelectStream, SERIES_PER_MESSAGE};
use crate::raft::ShardData;
use crate::shards::ShardQuery;
use aion_proto::ingester as pb;
use tonic::{Response, Status};

impl<S: ShardData + ShardQuery> IngesterService<S> {
    /// Serves a `Select` that lists several shards.
    pub(super) async fn select_shards(&self, req: pb::SelectRequest) -> Result<Response<SelectStream>, Status> {
        let tenant = convert::tenant(&req.tenant).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let matchers = convert::matchers_from_pb(&req.matchers).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let hints = convert::hints(req.start_ms, req.end_ms).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let follower_ok = req.allow_follower_read;
        let reads = req.shards.iter().map(|&shard| {
            let (tenant, matchers) = (tenant.clone(), matchers.clone());
            async move {
                let r = self.read_with(shard, follower_ok, move |q| q.select(&tenant, &hints, &matchers)).await;
                (shard, r)
            }
        });
        let results = futures::future::join_all(reads).await;
        let mut messages: Vec<Result<pb::SelectResponse, Status>> = Vec::new();
        let mut last = pb::SelectResponse::default();
        for (shard, r) in results {
            match r {
                Ok(series) => {
                    for batch in series.chunks(SERIES_PER_MESSAGE) {
                        let series = batch.iter().map(convert::series_to_pb).collect();
                        messages.push(Ok(pb::SelectResponse { series, shard, ..Default::default() }));
                    }
                    last.answered.push(shard);
                }
                Err(s) => last.failed.push(pb::ShardFailure { shard, code: s.code() as i32, message: s.message().to_string() }),
            }
        }
        messages.push(Ok(last));
        Ok(Response::new(Box::pin(tokio_stream::iter(messages))))
    }
}
