//! The `Pushdown` gRPC service an ingester process serves: evaluates a
//! pushed-down aggregation over one shard's data with the querier's engine,
//! or over several shards the node leads in one call, evaluated once over
//! the union of their series (`union.rs`), so a query costs one round trip,
//! one engine run and one partial result per node, not per shard. Where the data comes from (and the
//! leadership check before reading it) is the host's business, behind
//! [`ShardSource`], so this crate needs no ingester internals.

use super::union::UnionQueryable;
use super::{evaluate_partial, plan, plan_pair, wire, PartialResult};
use crate::engine::EngineError;
use aion_model::storage::{PushdownRequest, Queryable, StorageError};
use aion_proto::limit_status::{LimitHit, KNOWN_LIMITS};
use aion_model::TenantId;
use aion_proto::ingester as pb;
use aion_proto::ingester::pushdown_server::{Pushdown, PushdownServer};
use promql_parser::parser::Expr;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Gives the service a shard's data, after confirming this node leads it.
#[tonic::async_trait]
pub trait ShardSource: Send + Sync + 'static {
    /// The data of `shard` (linearizable: fails with the same statuses as
    /// `Select` — NOT_FOUND, FAILED_PRECONDITION with the leader, UNAVAILABLE).
    async fn leader_data(&self, shard: u64) -> Result<Arc<dyn Queryable>, Status>;

    /// [`ShardSource::leader_data`] for several shards, in their order (one
    /// after the other here; a host overrides it to confirm leadership of
    /// all of them in one round).
    async fn leader_data_many(&self, shards: &[u64]) -> Vec<Result<Arc<dyn Queryable>, Status>> {
        let mut out = Vec::with_capacity(shards.len());
        for &shard in shards {
            out.push(self.leader_data(shard).await);
        }
        out
    }
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

    /// Several shards: leadership of all confirmed at once, then ONE
    /// evaluation over the union of the confirmed shards' series
    /// ([`UnionQueryable`]), whose result is the node's partial; the shards
    /// not confirmed are reported as failures.
    async fn evaluate_shards(&self, shards: &[u64], tenant: &TenantId, req: &PushdownRequest, step_arrays: bool) -> Result<pb::AggregateResponse, Status> {
        mergeable(&req.expr)?;
        let data = self.source.leader_data_many(shards).await;
        let mut resp = pb::AggregateResponse::default();
        let mut parts: Vec<Arc<dyn Queryable>> = Vec::with_capacity(shards.len());
        for (&shard, d) in shards.iter().zip(data) {
            match d {
                Ok(q) => {
                    parts.push(q);
                    resp.answered.push(shard);
                }
                Err(s) => resp.failed.push(failure(shard, &s)),
            }
        }
        if parts.is_empty() {
            return Ok(resp);
        }
        let union: Arc<dyn Queryable> = Arc::new(UnionQueryable::new(parts));
        let label = format!("shards {:?}", resp.answered);
        match evaluate_on(union, &label, tenant.clone(), req.clone(), self.timeout).await {
            Ok(p) => {
                resp.annotated = p.annotated;
                resp.series_hashes = p.series_hashes;
                resp.samples = p.samples;
                if !p.annotated {
                    resp.series = p.series.iter().map(|s| wire::series_to_pb(req, s, step_arrays)).collect();
                }
            }
            // A limit holds for the whole node's answer: the call fails.
            Err(s) if LimitHit::from_status(&s).is_some() => return Err(s),
            Err(s) => {
                let answered = std::mem::take(&mut resp.answered);
                resp.failed.extend(answered.into_iter().map(|shard| failure(shard, &s)));
            }
        }
        Ok(resp)
    }
}

fn failure(shard: u64, s: &Status) -> pb::ShardFailure {
    pb::ShardFailure { shard, code: s.code() as i32, message: s.message().to_string() }
}

/// One shard's partial result: leadership confirmed, then the engine on a blocking thread.
async fn evaluate_shard<S: ShardSource>(source: &S, shard: u64, tenant: TenantId, req: PushdownRequest, timeout: Duration) -> Result<PartialResult, Status> {
    evaluate_on(source.leader_data(shard).await?, &format!("shard {shard}"), tenant, req, timeout).await
}

/// The status of a failed evaluation: a query limit as [`LimitHit`]
/// (RESOURCE_EXHAUSTED naming it), anything else INVALID_ARGUMENT.
fn evaluation_status(what: &str, req: &PushdownRequest, e: EngineError) -> Status {
    let hit = match &e {
        EngineError::TooManySamples(_) => {
            Some(LimitHit { limit: "max_samples_per_query", max: req.max_samples, value: req.max_samples.saturating_add(1) })
        }
        EngineError::Storage(StorageError::LimitExceeded { limit, max, value }) => {
            KNOWN_LIMITS.into_iter().find(|l| l == limit).map(|limit| LimitHit { limit, max: *max, value: *value })
        }
        _ => None,
    };
    match hit {
        Some(h) => h.to_status(what),
        None => Status::invalid_argument(format!("{what}: pushdown evaluation failed: {e}")),
    }
}

/// A partial result over `data` (leadership confirmed; `what` names its
/// shards in errors), on a blocking thread.
async fn evaluate_on(data: Arc<dyn Queryable>, what: &str, tenant: TenantId, req: PushdownRequest, timeout: Duration) -> Result<PartialResult, Status> {
    let run = {
        let req = req.clone();
        move || evaluate_partial(data, &tenant, &req, timeout)
    };
    tokio::task::spawn_blocking(run)
        .await
        .map_err(|e| Status::internal(format!("{what}: pushdown task failed: {e}")))?
        .map_err(|e| evaluation_status(what, &req, e))
}

/// Checks that `expr` is an aggregation (or a pair of them, see
/// [`plan_pair`]) whose partial results merge across shards.
fn mergeable(expr: &str) -> Result<(), Status> {
    // The engine's memoised parse: a plain parse compiles every regex
    // matcher again, on every call.
    let ctx = crate::engine::plan::DurationContext { step_ms: 0, range_ms: 0 };
    let parsed = crate::engine::plan::parse(expr, ctx).map_err(|e| Status::invalid_argument(format!("pushdown expression {expr:?}: {e}")))?;
    let mergeable = match &parsed {
        Expr::Aggregate(a) => plan(a, 0, 0, 0, 0).is_some(),
        Expr::Binary(b) => plan_pair(b, 0, 0, 0, 0).is_some(),
        _ => return Err(Status::invalid_argument(format!("pushdown expression {expr:?} is not an aggregation"))),
    };
    if !mergeable {
        return Err(Status::invalid_argument(format!("pushdown expression {expr:?} cannot be merged across shards")));
    }
    Ok(())
}

#[tonic::async_trait]
impl<S: ShardSource> Pushdown for PushdownService<S> {
    async fn aggregate(&self, req: Request<pb::AggregateRequest>) -> Result<Response<pb::AggregateResponse>, Status> {
        let r = req.into_inner();
        let tenant = TenantId::new(&r.tenant).map_err(|e| Status::invalid_argument(format!("invalid tenant {:?}: {e}", r.tenant)))?;
        let preq = PushdownRequest {
            expr: r.expr,
            start_ms: r.start_ms,
            end_ms: r.end_ms,
            step_ms: r.step_ms,
            lookback_ms: r.lookback_ms,
            max_series: r.max_series,
            max_samples: r.max_samples,
        };
        if !r.shards.is_empty() {
            return Ok(Response::new(self.evaluate_shards(&r.shards, &tenant, &preq, r.step_arrays).await?));
        }
        let out = evaluate_shard(self.source.as_ref(), r.shard, tenant, preq.clone(), self.timeout).await?;
        Ok(Response::new(pb::AggregateResponse {
            series: out.series.iter().map(|s| wire::series_to_pb(&preq, s, r.step_arrays)).collect(),
            annotated: out.annotated,
            series_hashes: out.series_hashes,
            samples: out.samples,
            ..Default::default()
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aion_model::memstore::MemStore;
    use aion_model::storage::{Appender, SeriesSamples, WriteBatch};
    use aion_model::{Labels, Sample};
    use std::collections::HashMap;

    struct Shards(HashMap<u64, Arc<MemStore>>);

    #[tonic::async_trait]
    impl ShardSource for Shards {
        async fn leader_data(&self, shard: u64) -> Result<Arc<dyn Queryable>, Status> {
            let s = self.0.get(&shard).ok_or_else(|| Status::failed_precondition(format!("not leading {shard}")))?;
            Ok(Arc::clone(s) as Arc<dyn Queryable>)
        }
    }

    /// A shard with one series per job; `first` numbers them (label `i`), so
    /// that shards hold distinct series, as placement guarantees.
    fn store(first: usize, jobs: &[(&str, f64)]) -> Arc<MemStore> {
        let s = MemStore::new();
        let series = jobs
            .iter()
            .enumerate()
            .map(|(i, (job, k))| (i + first, (job, k)))
            .map(|(i, (job, k))| SeriesSamples {
                labels: Labels::from_pairs([("__name__", "x_total".to_string()), ("job", job.to_string()), ("i", i.to_string())]),
                samples: (0..20).map(|t| Sample::new(t * 15_000, k * t as f64)).collect(),
            })
            .collect();
        s.append(WriteBatch { tenant: TenantId::anonymous(), series }).unwrap();
        Arc::new(s)
    }

    fn request(shards: Vec<u64>) -> pb::AggregateRequest {
        pb::AggregateRequest {
            tenant: TenantId::anonymous().to_string(),
            expr: "sum by (job) (rate(x_total[1m]))".into(),
            start_ms: 60_000,
            end_ms: 240_000,
            step_ms: 30_000,
            lookback_ms: 300_000,
            shards,
            step_arrays: true,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn one_call_merges_the_led_shards_and_names_the_others() {
        let shards = HashMap::from([(0, store(0, &[("a", 1.0), ("b", 2.0)])), (1, store(2, &[("a", 3.0)]))]);
        let svc = PushdownService::new(Arc::new(Shards(shards)), Duration::from_secs(5));
        let r = svc.aggregate(Request::new(request(vec![0, 1, 7]))).await.unwrap().into_inner();
        assert_eq!(r.answered, vec![0, 1]);
        assert_eq!(r.failed.len(), 1);
        assert_eq!((r.failed[0].shard, r.failed[0].code), (7, tonic::Code::FailedPrecondition as i32));
        assert!(!r.annotated);
        // One merged series per job, on the step grid: a = 1/s + 3/s... per 15 s step.
        assert_eq!(r.series.len(), 2);
        let values = |s: &pb::PartialSeries| -> Vec<f64> { s.values_le.chunks(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect() };
        let a = &r.series[0];
        assert!(a.samples.is_empty() && values(a).len() == 7, "{a:?}");
        let want_a = (1.0 + 3.0) / 15.0;
        assert!(values(a).iter().all(|v| (v - want_a).abs() < 1e-9), "{:?}", values(a));
        let b = &r.series[1];
        assert!(values(b).iter().all(|v| (v - 2.0 / 15.0).abs() < 1e-9), "{:?}", values(b));
        // The single-shard form still answers with the shard's own result.
        let one = pb::AggregateRequest { shard: 1, ..request(Vec::new()) };
        let r = svc.aggregate(Request::new(one)).await.unwrap().into_inner();
        assert_eq!(r.series.len(), 1);
        assert!(r.answered.is_empty() && r.failed.is_empty());
    }
}
