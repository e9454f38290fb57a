//! The read path of the cluster client: [`FanOutQueryable`], the PromQL
//! engine's [`Queryable`] over every shard of the ingester cluster.
//!
//! A `Select` or pushed-down aggregation first goes to every ingester node
//! once, naming all the shards the shard map says it leads (`batched.rs`,
//! `pushdown.rs`): a query then costs one round trip per node, not per
//! shard. Series come back as the nodes' stored XOR chunks
//! (`unclipped_chunks`) and stay encoded through
//! [`Queryable::select_chunks`]: the engine's workers decode them where they
//! consume them. Whatever that does not answer — and every `LabelNames`/
//! `LabelValues` — goes one request per shard, at most
//! [`FanOutConfig::max_concurrency`] in flight: a streaming `Select`
//! (matchers and time range pushed down, series back as XOR chunks) or
//! `LabelNames`/`LabelValues`. Each shard is asked on its leader first
//! (reads are linearizable there); a `FAILED_PRECONDITION` redirect is
//! followed, `UNAVAILABLE` moves on to the next replica, and a round where
//! nobody answered is retried after a refresh of the shard map until the
//! shard's retry budget or the call's deadline runs out. Answers are merged
//! by label set ([`merge_series`]); names and values are unioned.
//!
//! A select's fetched series and chunk bytes are capped over all shards
//! ([`FanOutConfig::max_fetched_series`], `max_fetched_chunk_bytes`): past
//! either, the streams stop and the call fails with
//! [`StorageError::LimitExceeded`] (also with partial responses on).
//!
//! A shard without an answer fails the call with
//! [`StorageError::Unavailable`] naming the shard — unless partial
//! responses are enabled, in which case the shard is skipped and a warning
//! is reported through [`report_warning`] (the API adds it to the
//! response's `warnings`). When the API marks the query canceled (its
//! client went away, [`current_cancel_flag`]), in-flight shard requests are
//! dropped and the call fails at once. The trait is synchronous and is called from
//! blocking threads; each call runs on the runtime given at construction.

mod batched;
mod merge;
mod metrics;
mod pushdown;
pub mod pushdown_choice;

pub use aion_model::storage::merge_selected;
pub use merge::{merge_series, union_sorted};
pub use metrics::FanOutMetrics;

use super::{ClientError, ClusterClient};
use crate::grpc::convert::{matcher_to_pb, not_leader_from_status, selected_from_pb};
use crate::raft::ShardId;
use aion_model::labels::Labels;
use aion_model::matcher::Matcher;
use aion_model::storage::{
    current_cancel_flag, report_warning, PushdownAnswer, PushdownRequest, Queryable, SelectHints, SelectedSeries, Series,
    StorageError,
};
use std::sync::atomic::Ordering as AtomicOrdering;
use aion_model::tenant::TenantId;
use aion_proto::ingester as pb;
use aion_proto::ingester::ingester_client::IngesterClient;
use futures::stream::{self, StreamExt};
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::Channel;

/// Settings of the fan-out reader.
#[derive(Debug, Clone, Copy)]
pub struct FanOutConfig {
    /// Most shard requests in flight for one storage call.
    pub max_concurrency: usize,
    /// Deadline of one storage call: every shard, retries included.
    pub call_timeout: Duration,
    /// How long one shard is retried (elections, redirects, dead replicas)
    /// before it counts as unavailable.
    pub shard_retry_budget: Duration,
    /// Skip unavailable shards with a warning instead of failing the call.
    pub partial_response: bool,
    /// Most series one select may fetch over all shards; 0 = unlimited.
    pub max_fetched_series: usize,
    /// Let shards evaluate `sum/min/max/count/group` aggregations of
    /// selectors and per-series range functions (aggregation pushdown).
    pub aggregation_pushdown: bool,
    /// Most encoded chunk bytes one select may fetch over all shards (what
    /// bounds the call's memory); 0 = unlimited.
    pub max_fetched_chunk_bytes: usize,
    /// Decline pushdown for a while where the last pushed-down answer of the
    /// same aggregation moved as many values as reading the chunks would
    /// ([`pushdown_choice`]).
    pub adaptive_pushdown: bool,
}

impl Default for FanOutConfig {
    fn default() -> Self {
        Self {
            max_concurrency: 16,
            call_timeout: Duration::from_secs(120),
            shard_retry_budget: Duration::from_secs(10),
            partial_response: false,
            max_fetched_series: 0,
            max_fetched_chunk_bytes: 0,
            aggregation_pushdown: true,
            adaptive_pushdown: true,
        }
    }
}

/// The engine's storage trait over the whole ingester cluster.
pub struct FanOutQueryable {
    client: ClusterClient,
    runtime: tokio::runtime::Handle,
    config: FanOutConfig,
    metrics: FanOutMetrics,
    choices: pushdown_choice::PushdownChoices,
}

impl FanOutQueryable {
    /// A reader over `client`'s cluster whose calls run on `runtime`.
    /// Call its [`Queryable`] methods from outside async code (e.g. from
    /// `spawn_blocking`), never from a runtime worker thread.
    pub fn new(client: ClusterClient, runtime: tokio::runtime::Handle, config: FanOutConfig) -> Self {
        let config = FanOutConfig { max_concurrency: config.max_concurrency.max(1), ..config };
        Self { client, runtime, config, metrics: FanOutMetrics::default(), choices: Default::default() }
    }

    /// Reports into `metrics` (e.g. from [`FanOutMetrics::register`]).
    pub fn with_metrics(mut self, metrics: FanOutMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The cluster client it reads through.
    pub fn client(&self) -> &ClusterClient {
        &self.client
    }

    /// Its settings.
    pub fn config(&self) -> FanOutConfig {
        self.config
    }

    /// Label names of matching series, unioned over shards.
    pub async fn label_names_async(
        &self,
        tenant: &TenantId,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, StorageError> {
        let req = pb::LabelNamesRequest {
            shard: 0,
            tenant: tenant.to_string(),
            matchers: matchers.iter().map(matcher_to_pb).collect(),
            start_ms: hints.start,
            end_ms: hints.end,
        };
        let parts = self
            .fan_out("label names", |shard, ch| {
                let mut client = ingester_client(ch);
                let req = pb::LabelNamesRequest { shard, ..req.clone() };
                async move { Ok(client.label_names(req).await?.into_inner().names) }
            })
            .await?;
        Ok(union_sorted(parts))
    }

    /// Values of label `name` over matching series, unioned over shards.
    pub async fn label_values_async(
        &self,
        tenant: &TenantId,
        name: &str,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, StorageError> {
        let req = pb::LabelValuesRequest {
            shard: 0,
            tenant: tenant.to_string(),
            name: name.to_string(),
            matchers: matchers.iter().map(matcher_to_pb).collect(),
            start_ms: hints.start,
            end_ms: hints.end,
        };
        let parts = self
            .fan_out("label values", |shard, ch| {
                let mut client = ingester_client(ch);
                let req = pb::LabelValuesRequest { shard, ..req.clone() };
                async move { Ok(client.label_values(req).await?.into_inner().values) }
            })
            .await?;
        Ok(union_sorted(parts))
    }

    /// Runs `call` on every shard; the answers in shard order, or the error
    /// naming the shards that had none (see the module docs for partial responses).
    async fn fan_out<T, F, Fut>(&self, what: &str, call: F) -> Result<Vec<T>, StorageError>
    where
        F: Fn(ShardId, Channel) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        if self.client.shard_map().shard_ids().is_empty() {
            self.client.refresh().await;
        }
        let started = Instant::now();
        let shards: Vec<ShardId> = (0..self.client.shard_count()).collect();
        self.fan_out_over(what, shards, started, started + self.config.call_timeout, call).await
    }

    /// [`Self::fan_out`] over `shards` only (the rest of the cluster's shards
    /// answered another way), timed from `started`, within `deadline`.
    async fn fan_out_over<T, F, Fut>(
        &self,
        what: &str,
        shards: Vec<ShardId>,
        started: Instant,
        deadline: Instant,
        call: F,
    ) -> Result<Vec<T>, StorageError>
    where
        F: Fn(ShardId, Channel) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let call = &call;
        let mut results: Vec<(ShardId, Result<T, ClientError>)> = stream::iter(shards)
            .map(|shard| async move { (shard, self.on_shard(what, shard, deadline, |c| call(shard, c)).await) })
            .buffer_unordered(self.config.max_concurrency)
            .collect()
            .await;
        results.sort_by_key(|(shard, _)| *shard);
        let total = self.client.shard_count() as usize;
        let mut answers = Vec::with_capacity(results.len());
        let mut failed: Vec<(ShardId, ClientError)> = Vec::new();
        for (shard, r) in results {
            match r {
                Ok(v) => answers.push(v),
                Err(e) => failed.push((shard, e)),
            }
        }
        self.metrics.observe_call(what, started.elapsed().as_secs_f64());
        // A query limit fails the query, partial responses or not.
        if let Some((_, e @ ClientError::Limit { .. })) = failed.iter().find(|(_, e)| matches!(e, ClientError::Limit { .. })) {
            return Err(to_storage_error(e, e.to_string()));
        }
        let Some((_, first)) = failed.first() else { return Ok(answers) };
        let ids: Vec<String> = failed.iter().map(|(s, _)| s.to_string()).collect();
        let summary = format!(
            "{what}: {} of {total} shards unavailable (shards {}): {first}",
            failed.len(),
            ids.join(", ")
        );
        let partial = self.config.partial_response && failed.len() < total;
        self.metrics.unavailable(what, partial, failed.len());
        if !partial {
            return Err(to_storage_error(first, summary));
        }
        let warning = format!("partial response: {summary}; their series are missing from the result");
        if !report_warning(warning.clone()) {
            tracing::warn!(warning = %warning, "partial response without a warning sink");
        }
        Ok(answers)
    }

    /// One shard's answer: leader first, redirects followed, other replicas
    /// on retryable errors, rounds repeated after a map refresh until the
    /// shard's retry budget or `deadline` ends.
    async fn on_shard<T, F, Fut>(&self, what: &str, shard: ShardId, deadline: Instant, call: F) -> Result<T, ClientError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let started = Instant::now();
        let budget_end = deadline.min(started + self.config.shard_retry_budget);
        let mut backoff = Duration::from_millis(20);
        let mut last: Option<ClientError> = None;
        let mut transport_errors = 0usize;
        loop {
            let mut candidates = self.client.route(shard).map(|r| r.candidates()).unwrap_or_default();
            let leader = self.client.route(shard).and_then(|r| r.leader.map(|(_, a)| a));
            let mut tried: HashSet<String> = HashSet::new();
            let mut i = 0;
            while i < candidates.len() {
                let addr = candidates[i].clone();
                i += 1;
                if !tried.insert(addr.clone()) {
                    continue;
                }
                let remaining = budget_end.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    break;
                }
                let client = match self.client.channel(&addr) {
                    Ok(c) => c,
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                };
                let status = match tokio::time::timeout(remaining, call(client)).await {
                    Ok(Ok(v)) => {
                        self.metrics.request(what, "ok");
                        return Ok(v);
                    }
                    Ok(Err(status)) => status,
                    Err(_) => break,
                };
                if let Some((id, leader_addr)) = not_leader_from_status(&status) {
                    self.metrics.request(what, "redirected");
                    self.client.note_leader(shard, id, &leader_addr);
                    if !tried.contains(&leader_addr) {
                        candidates.insert(i, leader_addr);
                    }
                } else if leader.as_deref() == Some(addr.as_str()) {
                    self.client.forget_leader(shard);
                }
                let e = ClientError::from_status(shard, &addr, &status);
                if !e.is_retryable() {
                    self.metrics.request(what, "error");
                    return Err(e);
                }
                self.metrics.request(what, "retried");
                // A replica's own answer (no leader, no quorum) says more than a refused connection.
                if !(status.code() == tonic::Code::Unavailable && status.metadata().is_empty()) || last.is_none() {
                    last = Some(e);
                } else {
                    transport_errors += 1;
                }
            }
            let now = Instant::now();
            if now + backoff >= budget_end {
                tracing::debug!(shard, transport_errors, "giving up on shard");
                return Err(give_up(shard, last, budget_end == deadline && now >= deadline, now - started));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
            self.client.refresh().await;
        }
    }
}

/// An `Ingester` client over `ch` with the cluster's message size limits.
fn ingester_client(ch: Channel) -> IngesterClient<Channel> {
    IngesterClient::new(ch)
        .max_decoding_message_size(super::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(super::MAX_MESSAGE_BYTES)
}

/// Streams one shard's Select and decodes its chunks, charging `budget`
/// as it goes (and refunding it if the stream fails, since the shard is then
/// asked again elsewhere).
async fn select_shard(
    mut client: IngesterClient<Channel>,
    req: pb::SelectRequest,
    budget: &FetchBudget,
) -> Result<Vec<SelectedSeries>, tonic::Status> {
    let mut charged = (0, 0);
    let r = stream_select(&mut client, req, budget, &mut charged).await;
    if r.is_err() {
        budget.refund(charged);
    }
    r
}

async fn stream_select(
    client: &mut IngesterClient<Channel>,
    req: pb::SelectRequest,
    budget: &FetchBudget,
    charged: &mut (usize, usize),
) -> Result<Vec<SelectedSeries>, tonic::Status> {
    let hints = SelectHints { start: req.start_ms, end: req.end_ms };
    let mut stream = client.select(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(msg) = stream.message().await? {
        let bytes: usize = msg.series.iter().flat_map(|s| s.chunks.iter()).map(|c| c.data.len()).sum();
        charged.0 += msg.series.len();
        charged.1 += bytes;
        if let Err(e) = budget.charge(msg.series.len(), bytes) {
            return Err(tonic::Status::resource_exhausted(e.to_string()));
        }
        out.extend(msg.series.into_iter().filter_map(|s| selected_from_pb(s, &hints)));
    }
    Ok(out)
}

/// What one select may fetch over all shards; shared by the shard streams.
struct FetchBudget {
    max_series: usize,
    max_bytes: usize,
    series: AtomicUsize,
    bytes: AtomicUsize,
    exceeded: std::sync::Mutex<Option<StorageError>>,
}

impl FetchBudget {
    fn new(max_series: usize, max_bytes: usize) -> Self {
        Self {
            max_series,
            max_bytes,
            series: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            exceeded: std::sync::Mutex::new(None),
        }
    }

    /// Adds a streamed batch; the limit error once a maximum is passed.
    fn charge(&self, series: usize, bytes: usize) -> Result<(), StorageError> {
        let total_series = self.series.fetch_add(series, Ordering::Relaxed) + series;
        let total_bytes = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let err = if self.max_series > 0 && total_series > self.max_series {
            Some(("max_fetched_series_per_query", self.max_series, total_series))
        } else if self.max_bytes > 0 && total_bytes > self.max_bytes {
            Some(("max_fetched_chunk_bytes_per_query", self.max_bytes, total_bytes))
        } else {
            None
        };
        let Some((limit, max, value)) = err else { return Ok(()) };
        let e = StorageError::LimitExceeded { limit, max: max as u64, value: value as u64 };
        let mut slot = self.exceeded.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert_with(|| e.clone());
        Err(e)
    }

    fn refund(&self, (series, bytes): (usize, usize)) {
        self.series.fetch_sub(series, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// The limit error, if any stream passed a maximum.
    fn check(&self) -> Result<(), StorageError> {
        match self.exceeded.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn give_up(shard: ShardId, last: Option<ClientError>, deadline_hit: bool, waited: Duration) -> ClientError {
    match last {
        None => ClientError::NoReplica { shard },
        Some(e) if deadline_hit => ClientError::Deadline { shard, deadline: waited, last: e.to_string() },
        Some(e) => ClientError::NoLeader { shard, reason: format!("gave up after {waited:.1?}: {e}") },
    }
}

/// A query limit an ingester stopped at, as the storage error the engine reports.
fn limit_error(hit: aion_proto::limit_status::LimitHit) -> StorageError {
    StorageError::LimitExceeded { limit: hit.limit, max: hit.max, value: hit.value }
}

fn to_storage_error(e: &ClientError, message: String) -> StorageError {
    if let ClientError::Limit { hit, .. } = e {
        return limit_error(*hit);
    }
    if e.is_retryable() {
        StorageError::Unavailable(message)
    } else {
        StorageError::Io(message)
    }
}

impl FanOutQueryable {
    /// Runs `fut` to completion on the runtime, or until the query running on
    /// this thread is canceled (its client went away): in-flight shard
    /// requests are then dropped, which cancels their streams.
    fn run<T>(&self, fut: impl Future<Output = Result<T, StorageError>>) -> Result<T, StorageError> {
        let Some(flag) = current_cancel_flag() else { return self.runtime.block_on(fut) };
        self.runtime.block_on(async move {
            let canceled = async {
                while !flag.load(AtomicOrdering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            };
            tokio::select! {
                r = fut => r,
                () = canceled => Err(StorageError::Unavailable("query canceled: the client went away".into())),
            }
        })
    }
}

impl Queryable for FanOutQueryable {
    fn pushdown(&self, tenant: &TenantId, req: &PushdownRequest) -> Option<Result<PushdownAnswer, StorageError>> {
        // Fetch limits bound what the querier pulls from the shards; a pushed-down
        // aggregation pulls nothing, so with limits set the plain plan runs.
        let limited = self.config.max_fetched_series > 0 || self.config.max_fetched_chunk_bytes > 0;
        if !self.config.aggregation_pushdown || limited {
            return None;
        }
        let shape = (tenant.to_string(), req.expr.clone(), req.step_ms);
        let adaptive = self.config.adaptive_pushdown;
        if adaptive && self.choices.declines(&shape, std::time::Instant::now()) {
            self.metrics.pushdown_declined();
            return None;
        }
        let r = self.run(self.pushdown_async(tenant, req)).transpose()?;
        if let (true, Ok(a)) = (adaptive, &r) {
            let points: usize = a.series.iter().map(|s| s.points.len()).sum();
            self.choices.observe(shape, points as u64, a.samples, std::time::Instant::now());
        }
        Some(r)
    }

    fn may_push_down(&self) -> bool {
        let limited = self.config.max_fetched_series > 0 || self.config.max_fetched_chunk_bytes > 0;
        self.config.aggregation_pushdown && !limited
    }

    fn select(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        self.run(self.select_async(tenant, hints, matchers))
    }

    fn select_chunks(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<SelectedSeries>, StorageError> {
        self.run(self.select_chunks_async(tenant, hints, matchers))
    }

    fn series(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Labels>, StorageError> {
        // Labels only: the chunks are never decoded.
        Ok(self.select_chunks(tenant, hints, matchers)?.into_iter().map(|s| s.labels().clone()).collect())
    }

    fn label_names(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        self.run(self.label_names_async(tenant, hints, matchers))
    }

    fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, StorageError> {
        self.run(self.label_values_async(tenant, name, hints, matchers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_budget_trips_on_either_limit_and_refunds_failed_streams() {
        let b = FetchBudget::new(10, 0);
        assert!(b.charge(6, 1_000_000).is_ok(), "bytes unlimited");
        b.refund((6, 1_000_000));
        assert!(b.charge(10, 0).is_ok(), "refunded series do not count");
        let e = b.charge(1, 0).expect_err("11 > 10");
        assert_eq!(e, StorageError::LimitExceeded { limit: "max_fetched_series_per_query", max: 10, value: 11 });
        assert_eq!(b.check(), Err(e));
        assert_eq!(b.check(), Ok(()), "reported once");

        let b = FetchBudget::new(0, 100);
        assert!(b.charge(1_000, 100).is_ok());
        assert!(matches!(b.charge(0, 1), Err(StorageError::LimitExceeded { limit: "max_fetched_chunk_bytes_per_query", .. })));
    }

    #[test]
    fn a_limit_status_is_a_final_limit_error() {
        let hit = aion_proto::limit_status::LimitHit { limit: "max_series_per_query", max: 10, value: 11 };
        let e = ClientError::from_status(2, "a:1", &hit.to_status("shards [2]"));
        assert!(matches!(e, ClientError::Limit { shard: 2, hit: h } if h == hit), "{e:?}");
        assert!(!e.is_retryable());
        assert_eq!(
            to_storage_error(&e, e.to_string()),
            StorageError::LimitExceeded { limit: "max_series_per_query", max: 10, value: 11 }
        );
        // Other RESOURCE_EXHAUSTED statuses (a message over the size limit) are not limits.
        let other = ClientError::from_status(2, "a:1", &tonic::Status::resource_exhausted("message too large"));
        assert!(matches!(other, ClientError::Rpc { retryable: false, .. }), "{other:?}");
    }

    #[test]
    fn give_up_names_the_shard_and_the_cause() {
        assert!(matches!(give_up(3, None, false, Duration::ZERO), ClientError::NoReplica { shard: 3 }));
        let last = ClientError::Rpc { shard: 3, addr: "a:1".into(), status: "Unavailable: x".into(), retryable: true };
        let e = give_up(3, Some(last.clone()), false, Duration::from_secs(2));
        assert!(e.to_string().starts_with("shard 3: no leader (gave up after 2"), "{e}");
        assert!(matches!(give_up(3, Some(last), true, Duration::from_secs(2)), ClientError::Deadline { shard: 3, .. }));
    }
}
