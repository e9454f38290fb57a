//! Metrics of the read fan-out ([`super::FanOutQueryable`]), registered into
//! the caller's registry.
//!
//! Exposed names (counters get `_total` from the registry):
//! `aion_querier_fanout_duration_seconds{op}` (one storage call over every
//! shard), `aion_querier_shard_requests_total{op,outcome}` (one RPC to one
//! replica: `ok`, `redirected`, `retried` on another replica or round, `error`
//! not retryable), `aion_querier_shards_unavailable_total{op,partial}`
//! (shards given up on; `partial="true"` when skipped with a warning),
//! `aion_querier_pushdown_declined_total` (aggregations evaluated from
//! chunks because pushing them down did not pay, `pushdown_choice.rs`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label set `{op}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    /// `select`, `label names` or `label values`.
    pub op: String,
}

/// Label set `{op, outcome}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The storage call.
    pub op: String,
    /// What the RPC did.
    pub outcome: String,
}

/// Label set `{op, partial}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnavailableLabels {
    /// The storage call.
    pub op: String,
    /// `true` when the shard was skipped with a warning.
    pub partial: String,
}

/// Handles to the fan-out metrics (cheap to clone; clones share values).
#[derive(Debug, Clone)]
pub struct FanOutMetrics {
    duration: Family<OpLabel, Histogram>,
    requests: Family<RequestLabels, Counter>,
    unavailable: Family<UnavailableLabels, Counter>,
    declined: Counter,
}

impl Default for FanOutMetrics {
    fn default() -> Self {
        Self {
            duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_5, 2.0, 16))),
            requests: Family::default(),
            unavailable: Family::default(),
            declined: Counter::default(),
        }
    }
}

impl FanOutMetrics {
    /// New metrics, registered into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "aion_querier_fanout_duration_seconds",
            "Duration of one storage call over every shard",
            m.duration.clone(),
        );
        registry.register("aion_querier_shard_requests", "Shard read RPCs by outcome", m.requests.clone());
        registry.register(
            "aion_querier_shards_unavailable",
            "Shards without an answer in a storage call",
            m.unavailable.clone(),
        );
        registry.register(
            "aion_querier_pushdown_declined",
            "Aggregations evaluated from chunks because pushing them down did not pay",
            m.declined.clone(),
        );
        m
    }

    pub(super) fn pushdown_declined(&self) {
        self.declined.inc();
    }

    pub(super) fn observe_call(&self, op: &str, seconds: f64) {
        self.duration.get_or_create(&OpLabel { op: op.to_string() }).observe(seconds);
    }

    pub(super) fn request(&self, op: &str, outcome: &str) {
        self.requests.get_or_create(&RequestLabels { op: op.to_string(), outcome: outcome.to_string() }).inc();
    }

    pub(super) fn unavailable(&self, op: &str, partial: bool, shards: usize) {
        let labels = UnavailableLabels { op: op.to_string(), partial: partial.to_string() };
        self.unavailable.get_or_create(&labels).inc_by(shards as u64);
    }
}
