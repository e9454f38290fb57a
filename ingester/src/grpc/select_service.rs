//! Multi-shard `Select`: one call reads every listed shard the node leads
//! (`SelectRequest.shards`), so a querier pays one round trip per node, not
//! per shard. Each shard is read exactly as a single-shard `Select` would
//! (leadership of all of them confirmed in one round per peer, see
//! `read_index.rs`, unless `allow_follower_read`; stored chunks sent
//! as they are when the caller asked for `unclipped_chunks`), concurrently; the
//! stream's messages name their shard, and the last message lists the
//! shards answered and those that failed with the status a single-shard
//! call would have returned (the client retries those one by one).

use super::convert;
use super::server::{read_hosted, select_pb, IngesterService, SelectStream, SERIES_PER_MESSAGE};
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
        let unclipped = req.unclipped_chunks;
        // Leadership of all the shards confirmed in one round per peer
        // (`read_index.rs`), unless follower reads are allowed.
        let hosted: Vec<Result<_, Status>> = if req.allow_follower_read {
            req.shards.iter().map(|&s| self.shard(s)).collect()
        } else {
            self.leader_shards(&req.shards).await
        };
        let reads = req.shards.iter().zip(hosted).map(|(&shard, hosted)| {
            let (tenant, matchers) = (tenant.clone(), matchers.clone());
            async move {
                let r = match hosted {
                    Ok(h) => read_hosted(h, move |q| select_pb(q, &tenant, &hints, &matchers, unclipped)).await,
                    Err(e) => Err(e),
                };
                (shard, r)
            }
        });
        let results = futures::future::join_all(reads).await;
        let mut messages: Vec<Result<pb::SelectResponse, Status>> = Vec::new();
        let mut last = pb::SelectResponse::default();
        for (shard, r) in results {
            match r {
                Ok(series) => {
                    let mut series = series.into_iter();
                    loop {
                        let batch: Vec<pb::ChunkedSeries> = series.by_ref().take(SERIES_PER_MESSAGE).collect();
                        if batch.is_empty() {
                            break;
                        }
                        messages.push(Ok(pb::SelectResponse { series: batch, shard, ..Default::default() }));
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
