//! [`ShardRouter`]: the distributor's [`Appender`] in a cluster. It splits a
//! tenant's write batch by owning shard ([`ShardRing`]), pushes the shard
//! batches in parallel to their leaders ([`ClusterClient::push_shard_batches`]) and
//! succeeds only when every shard batch committed.
//!
//! Outcome mapping: the shards' counts are summed; their rejection messages
//! (`"{reason} sample at t={t} for series {labels}"`, the first few per
//! shard) become [`SampleRejection`]s naming the series, so the
//! distributor's 400 still names the offending series. A shard that rejected
//! more samples than it described repeats its last described rejection for
//! the rest (counts stay exact; only those timestamps are approximate).
//! Any shard batch failing retryably is [`StorageError::Unavailable`]
//! (HTTP 503: the sender retries the whole request, and shards that had
//! committed accept the re-sent samples as duplicates); a non-retryable
//! failure is [`StorageError::Io`] (HTTP 500).

use super::metrics::{FailureLabels, RouterMetrics, ShardLabel};
use super::placement::ShardRing;
use super::push::{MultiSupport, PushReport, RetryPolicy};
use super::{ClientError, ClusterClient};
use crate::raft::ShardId;
use aion_model::labels::Labels;
use aion_model::storage::{AppendOutcome, Appender, RejectReason, SampleRejection, SeriesSamples, StorageError, WriteBatch};
use aion_proto::ingester as pb;
use std::collections::BTreeMap;
use std::time::Instant;

/// Routes write batches to the shard leaders of an ingester cluster.
pub struct ShardRouter {
    client: ClusterClient,
    ring: ShardRing,
    policy: RetryPolicy,
    runtime: tokio::runtime::Handle,
    metrics: RouterMetrics,
    multi: MultiSupport,
}

impl std::fmt::Debug for ShardRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardRouter").field("shards", &self.ring.shard_count()).field("policy", &self.policy).finish()
    }
}

impl ShardRouter {
    /// A router over `client`'s shards (`client.shard_count()` of them), with
    /// `policy` per shard batch. `runtime` runs the pushes when called through
    /// the blocking [`Appender`] interface (from a blocking-pool thread).
    pub fn new(
        client: ClusterClient,
        policy: RetryPolicy,
        runtime: tokio::runtime::Handle,
        metrics: RouterMetrics,
    ) -> Self {
        let ring = ShardRing::new(client.shard_count());
        Self { client, ring, policy, runtime, metrics, multi: MultiSupport::default() }
    }

    /// The placement ring in use.
    pub fn ring(&self) -> &ShardRing {
        &self.ring
    }

    /// The cluster client in use.
    pub fn client(&self) -> &ClusterClient {
        &self.client
    }

    /// Splits `batch` into one batch per owning shard (series moved, not
    /// copied; order within a shard kept).
    pub fn split(&self, batch: WriteBatch) -> BTreeMap<ShardId, WriteBatch> {
        let tenant = batch.tenant;
        let mut out: BTreeMap<ShardId, WriteBatch> = BTreeMap::new();
        for s in batch.series {
            let shard = self.ring.shard_of(tenant.as_str(), &s.labels);
            out.entry(shard)
                .or_insert_with(|| WriteBatch { tenant: tenant.clone(), series: Vec::new() })
                .series
                .push(s);
        }
        out
    }

    /// Routes `batch`: every shard batch in parallel in the Raft codec, the
    /// batches of one leader in one `PushEncodedMulti` call (per-shard
    /// `PushEncoded` for a lone batch, on retries and to nodes without it);
    /// Ok only when all committed.
    pub async fn push(&self, batch: WriteBatch) -> Result<AppendOutcome, StorageError> {
        let batches = self.split(batch);
        let start = Instant::now();
        let results = self.client.push_shard_batches(&batches, &self.policy, &self.multi).await;
        for (&shard, result) in batches.keys().zip(&results) {
            self.observe(shard, start, result);
        }
        let total = results.len();
        let mut outcome = AppendOutcome::default();
        let mut failures: Vec<ClientError> = Vec::new();
        for (b, result) in batches.values().zip(results) {
            match result {
                Ok(report) => merge(&mut outcome, &b.series, report.result),
                Err(e) => failures.push(e),
            }
        }
        if failures.is_empty() {
            return Ok(outcome);
        }
        let retryable = failures.iter().all(ClientError::is_retryable);
        let first = failures.iter().find(|e| !e.is_retryable()).unwrap_or(&failures[0]);
        let msg = format!("{} of {total} shard batches not committed; first: {first}", failures.len());
        Err(if retryable { StorageError::Unavailable(msg) } else { StorageError::Io(msg) })
    }

    fn observe(&self, shard: ShardId, start: Instant, result: &Result<PushReport, ClientError>) {
        let label = ShardLabel { shard };
        self.metrics.push_duration.get_or_create(&label).observe(start.elapsed().as_secs_f64());
        match result {
            Ok(r) => {
                self.metrics.retries.get_or_create(&label).inc_by(u64::from(r.attempts.saturating_sub(1)));
                self.metrics.redirects.get_or_create(&label).inc_by(u64::from(r.redirects));
            }
            Err(e) => {
                let labels = FailureLabels { shard, retryable: e.is_retryable().to_string() };
                self.metrics.failures.get_or_create(&labels).inc();
            }
        }
    }
}

impl Appender for ShardRouter {
    /// Blocks the calling (blocking-pool) thread on [`ShardRouter::push`].
    fn append(&self, batch: WriteBatch) -> Result<AppendOutcome, StorageError> {
        self.runtime.block_on(self.push(batch))
    }
}

/// Adds one shard's answer to `outcome`, turning its messages into
/// rejections naming series of the shard batch `series`.
fn merge(outcome: &mut AppendOutcome, series: &[SeriesSamples], result: pb::PushResult) {
    outcome.appended += result.appended;
    outcome.duplicates_ignored += result.duplicates_ignored;
    if result.rejected == 0 {
        return;
    }
    let mut described: Vec<SampleRejection> = result.messages.iter().map(|m| parse_rejection(m, series)).collect();
    let last = described.last().cloned().unwrap_or_else(|| SampleRejection {
        labels: series.first().map(|s| s.labels.clone()).unwrap_or_else(Labels::empty),
        t: 0,
        reason: RejectReason::OutOfOrder,
    });
    while (described.len() as u64) < result.rejected {
        described.push(last.clone());
    }
    described.truncate(result.rejected as usize);
    outcome.rejected.extend(described);
}

/// Parses `"{reason} sample at t={t} for series {labels}"` (the ingester's
/// `WriteSummary` message), finding the series among `series`.
fn parse_rejection(message: &str, series: &[SeriesSamples]) -> SampleRejection {
    let reason = if message.starts_with(RejectReason::DuplicateTimestamp.as_str()) {
        RejectReason::DuplicateTimestamp
    } else {
        RejectReason::OutOfOrder
    };
    let after_t = message.split_once(" sample at t=").map(|(_, rest)| rest);
    let (t, named) = match after_t.and_then(|rest| rest.split_once(" for series ")) {
        Some((t, named)) => (t.parse().unwrap_or(0), named),
        None => (0, ""),
    };
    let labels = series
        .iter()
        .find(|s| s.labels.to_string() == named)
        .or_else(|| series.first())
        .map(|s| s.labels.clone())
        .unwrap_or_else(Labels::empty);
    SampleRejection { labels, t, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> Vec<SeriesSamples> {
        let series = |v: &str| SeriesSamples {
            labels: Labels::from_pairs([("__name__", "m"), ("v", v)]),
            samples: vec![aion_model::sample::Sample::new(5, 1.0)],
        };
        vec![series("a"), series("b")]
    }

    #[test]
    fn shard_messages_become_rejections_naming_the_series() {
        let mut out = AppendOutcome::default();
        let result = pb::PushResult {
            appended: 7,
            duplicates_ignored: 1,
            rejected: 3,
            messages: vec![
                "duplicate_sample_for_timestamp sample at t=5 for series m{v=\"b\"}".into(),
                "out_of_order sample at t=4 for series m{v=\"a\"}".into(),
            ],
        };
        merge(&mut out, &req(), result);
        assert_eq!((out.appended, out.duplicates_ignored, out.rejected.len()), (7, 1, 3));
        assert_eq!(out.rejected[0].reason, RejectReason::DuplicateTimestamp);
        assert_eq!(out.rejected[0].labels.get("v"), Some("b"));
        assert_eq!(out.rejected[0].t, 5);
        assert_eq!(out.rejected[1].reason, RejectReason::OutOfOrder);
        assert_eq!(out.rejected[1].labels.get("v"), Some("a"));
        assert_eq!(out.rejected[2], out.rejected[1]);
        // Unparseable messages still count, attributed to the batch's first series.
        let mut out = AppendOutcome::default();
        merge(&mut out, &req(), pb::PushResult { rejected: 1, messages: vec!["garbage".into()], ..Default::default() });
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].labels.get("v"), Some("a"));
    }
}
