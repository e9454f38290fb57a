//! Metrics of the write routing ([`super::ShardRouter`]), registered into the
//! caller's registry.
//!
//! Exposed names (counters get `_total` from the registry):
//! `aion_distributor_shard_push_duration_seconds{shard}` (one shard batch,
//! retries included), `aion_distributor_shard_push_retries_total{shard}`,
//! `aion_distributor_shard_push_redirects_total{shard}` (`NotLeader`
//! followed), `aion_distributor_shard_push_failures_total{shard,retryable}`
//! (shard batches given up on).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label set `{shard}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    /// The shard id.
    pub shard: u64,
}

/// Label set `{shard, retryable}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The shard id.
    pub shard: u64,
    /// `true` when the sender may retry (answered 503), else `false`.
    pub retryable: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_5, 2.0, 14))
}

/// Handles to the routing metrics (cheap to clone; clones share values).
#[derive(Debug, Clone)]
pub struct RouterMetrics {
    /// Duration of one shard batch push, retries included, by shard.
    pub push_duration: Family<ShardLabel, Histogram, fn() -> Histogram>,
    /// Attempts beyond the first, by shard.
    pub retries: Family<ShardLabel, Counter>,
    /// `NotLeader` redirects followed, by shard.
    pub redirects: Family<ShardLabel, Counter>,
    /// Shard batches that failed for good, by shard and retryability.
    pub failures: Family<FailureLabels, Counter>,
}

impl Default for RouterMetrics {
    fn default() -> Self {
        Self {
            push_duration: Family::new_with_constructor(latency_histogram),
            retries: Family::default(),
            redirects: Family::default(),
            failures: Family::default(),
        }
    }
}

impl RouterMetrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "aion_distributor_shard_push_duration_seconds",
            "Time to commit one shard batch on the shard's leader, retries included, by shard",
            m.push_duration.clone(),
        );
        registry.register(
            "aion_distributor_shard_push_retries",
            "Shard push attempts beyond the first (after UNAVAILABLE, timeouts, transport errors), by shard",
            m.retries.clone(),
        );
        registry.register(
            "aion_distributor_shard_push_redirects",
            "NotLeader redirects followed while pushing, by shard",
            m.redirects.clone(),
        );
        registry.register(
            "aion_distributor_shard_push_failures",
            "Shard batches given up on, by shard and whether the sender may retry",
            m.failures.clone(),
        );
        m
    }
}
