//! Multi-shard `Select`: one call reads every listed shard the node leads
//! (`SelectRequest.shards`), so a querier pays one round trip per node, not
//! per shard. Each shard is read exactly as a single-shard `Select` would
//! (leadership of all of them confirmed in one round per peer, see
//! `read_index.rs`, unless `allow_follower_read`; stored chunks sent
//! as they are when the caller asked for `unclipped_chunks`), concurrently; the
//! stream's messages name their shard, and the last message lists the
//! shards answered and those that failed with the status a single-shard
//! call would have returned (the client retries those one by one).
//!
//! A small select — the head's postings bound it to at most
//! [`INLINE_READ_SERIES_DAYS`] series × days of range over all its shards,
//! e.g. one instance's series over a day — is read right on the request's
//! task: thread hops would cost it more than the read. Any other is read on
//! at most one blocking thread per core, each reading its share of the
//! shards one after the other, so a large select uses every core.

use super::convert;
use super::server::{select_pb, storage_status, IngesterService, SelectStream, SERIES_PER_MESSAGE};
use crate::shards::HostedShard;
use std::sync::Arc;
use crate::raft::ShardData;
use crate::shards::ShardQuery;
use aion_model::matcher::Matcher;
use aion_model::storage::{Queryable, SelectHints, StorageError};
use aion_model::tenant::TenantId;
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
        let bound = series_days_bound(&hosted, &tenant, &matchers, &hints);
        let read = move |q: &dyn Queryable| select_pb(q, &tenant, &hints, &matchers, unclipped);
        let results = if bound.is_some_and(|b| b <= INLINE_READ_SERIES_DAYS) {
            req.shards.iter().copied().zip(hosted).map(|(id, h)| (id, read_shard(h, &read))).collect()
        } else {
            read_in_groups(&req.shards, hosted, read).await
        };
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

/// Most series × days of range (a partial day counts as one) a select may
/// be bounded to for it to be read on the request's task instead of a
/// blocking thread: at a few microseconds per series and day, such a read
/// holds the task well under a millisecond.
const INLINE_READ_SERIES_DAYS: usize = 64;

/// The series the shards' postings bound a select to (see
/// [`ShardQuery::series_bound`]), times the days its range touches;
/// `None` when a shard cannot bound it. Unconfirmed shards read nothing.
fn series_days_bound<S: ShardData + ShardQuery>(
    hosted: &[Result<Arc<HostedShard<S>>, Status>],
    tenant: &TenantId,
    matchers: &[Matcher],
    hints: &SelectHints,
) -> Option<usize> {
    const DAY_MS: i64 = 86_400_000;
    let days = usize::try_from(hints.end.saturating_sub(hints.start) / DAY_MS + 1).unwrap_or(usize::MAX);
    hosted.iter().try_fold(0usize, |sum, h| match h {
        Ok(h) => Some(sum.saturating_add(h.data.series_bound(tenant, matchers)?.saturating_mul(days))),
        Err(_) => Some(sum),
    })
}

/// `read(shard data)` on one confirmed shard, on this thread (a failed
/// confirmation passes through).
fn read_shard<S, T, F>(hosted: Result<Arc<HostedShard<S>>, Status>, read: &F) -> Result<T, Status>
where
    S: ShardData + ShardQuery,
    F: Fn(&dyn Queryable) -> Result<T, StorageError>,
{
    hosted.and_then(|h| read(h.data.queryable()).map_err(|e| storage_status(h.id, e)))
}

/// Blocking threads one multi-shard read uses at most: the cores, looked up
/// once (`available_parallelism` reads cgroup files on every call).
fn read_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map(std::num::NonZeroUsize::get).unwrap_or(1).clamp(1, 8))
}

/// `read(shard data)` for every shard whose leadership was confirmed, the
/// shards split into at most [`read_threads`] contiguous groups, each read
/// on one blocking thread; results in `shards` order (a failed
/// confirmation passes through).
async fn read_in_groups<S, T, F>(
    shards: &[u64],
    hosted: Vec<Result<Arc<HostedShard<S>>, Status>>,
    read: F,
) -> Vec<(u64, Result<T, Status>)>
where
    S: ShardData + ShardQuery,
    T: Send + 'static,
    F: Fn(&dyn Queryable) -> Result<T, StorageError> + Send + Sync + 'static,
{
    let read = Arc::new(read);
    let per_group = shards.len().div_ceil(read_threads()).max(1);
    let mut groups = Vec::new();
    let mut items = shards.iter().copied().zip(hosted).peekable();
    while items.peek().is_some() {
        let group: Vec<_> = items.by_ref().take(per_group).collect();
        let read = Arc::clone(&read);
        groups.push(async move {
            let ids: Vec<u64> = group.iter().map(|(id, _)| *id).collect();
            let run = move || {
                group.into_iter().map(|(id, h)| (id, read_shard(h, &*read))).collect::<Vec<_>>()
            };
            match tokio::task::spawn_blocking(run).await {
                Ok(done) => done,
                Err(e) => ids.into_iter().map(|id| (id, Err(Status::internal(format!("shard {id}: read task failed: {e}"))))).collect(),
            }
        });
    }
    futures::future::join_all(groups).await.into_iter().flatten().collect()
}
