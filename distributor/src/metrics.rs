//! The distributor's Prometheus metrics, registered into the caller's registry.
//!
//! Exposed names (counters get `_total` from the registry):
//! `aion_distributor_requests_total{code}`,
//! `aion_distributor_received_request_bytes_total{tenant}` (compressed body bytes),
//! `aion_distributor_received_samples_total{tenant}`,
//! `aion_distributor_received_metadata_total{tenant}`,
//! `aion_distributor_discarded_samples_total{tenant,reason}`,
//! `aion_distributor_discarded_series_total{tenant,reason}`,
//! `aion_distributor_active_series{tenant}` (this distributor's approximate count).
//!
//! Limit reasons: `rate_limited`, `per_user_series_limit`,
//! `per_metric_series_limit`, `sample_too_old`, `sample_too_far_in_future`
//! (see [`crate::validation::reason`]).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label set `{code}`: the HTTP status answered.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The status code, e.g. `204`.
    pub code: String,
}

/// Label set `{tenant}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    /// The tenant id.
    pub tenant: String,
}

/// Label set `{tenant, reason}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DiscardLabels {
    /// The tenant id.
    pub tenant: String,
    /// Why the data was discarded (a validation rule or a storage reject reason).
    pub reason: String,
}

/// Handles to every distributor metric (cheap to clone; clones share values).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Remote-write requests answered, by status code.
    pub requests: Family<CodeLabel, Counter>,
    /// Compressed request body bytes received, by tenant.
    pub received_bytes: Family<TenantLabel, Counter>,
    /// Samples received (before validation), by tenant.
    pub received_samples: Family<TenantLabel, Counter>,
    /// Metadata entries received, by tenant (accepted and counted; not stored yet).
    pub received_metadata: Family<TenantLabel, Counter>,
    /// Samples not stored, by tenant and reason.
    pub discarded_samples: Family<DiscardLabels, Counter>,
    /// Series dropped by validation, by tenant and reason.
    pub discarded_series: Family<DiscardLabels, Counter>,
    /// Active series counted for the series limits, by tenant.
    pub active_series: Family<TenantLabel, Gauge>,
}

impl Metrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "aion_distributor_requests",
            "Remote-write requests answered by the distributor, by HTTP status code",
            m.requests.clone(),
        );
        registry.register(
            "aion_distributor_received_request_bytes",
            "Compressed remote-write request body bytes received, by tenant",
            m.received_bytes.clone(),
        );
        registry.register(
            "aion_distributor_received_samples",
            "Samples received in remote-write requests before validation, by tenant",
            m.received_samples.clone(),
        );
        registry.register(
            "aion_distributor_received_metadata",
            "Metric metadata entries received in remote-write requests, by tenant",
            m.received_metadata.clone(),
        );
        registry.register(
            "aion_distributor_discarded_samples",
            "Samples not stored, by tenant and reason",
            m.discarded_samples.clone(),
        );
        registry.register(
            "aion_distributor_discarded_series",
            "Series dropped by validation, by tenant and reason",
            m.discarded_series.clone(),
        );
        registry.register(
            "aion_distributor_active_series",
            "Active series this distributor counts against the per-tenant series limits, by tenant",
            m.active_series.clone(),
        );
        m
    }

    /// Adds `n` to a `{tenant}` family.
    pub(crate) fn add_tenant(f: &Family<TenantLabel, Counter>, tenant: &str, n: u64) {
        if n > 0 {
            f.get_or_create(&TenantLabel { tenant: tenant.to_string() }).inc_by(n);
        }
    }

    /// Adds `n` to a `{tenant, reason}` family.
    pub(crate) fn add_discard(f: &Family<DiscardLabels, Counter>, tenant: &str, reason: &str, n: u64) {
        if n > 0 {
            f.get_or_create(&DiscardLabels { tenant: tenant.to_string(), reason: reason.to_string() }).inc_by(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn exposes_the_documented_names() {
        let mut reg = Registry::default();
        let m = Metrics::register(&mut reg);
        m.requests.get_or_create(&CodeLabel { code: "204".into() }).inc();
        Metrics::add_discard(&m.discarded_samples, "t1", "out_of_order", 3);
        Metrics::add_tenant(&m.received_samples, "t1", 5);
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        assert!(out.contains("aion_distributor_requests_total{code=\"204\"} 1"), "{out}");
        assert!(out.contains("aion_distributor_discarded_samples_total{tenant=\"t1\",reason=\"out_of_order\"} 3"), "{out}");
        assert!(out.contains("aion_distributor_received_samples_total{tenant=\"t1\"} 5"), "{out}");
    }
}
