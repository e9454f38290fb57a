//! Metric metadata (type, help, unit per metric family), as remote-write
//! senders report it and `/api/v1/metadata` serves it.
//!
//! Metadata is advisory and small, and kept the way Prometheus and Mimir
//! keep it: in memory, per tenant, refreshed by senders (Prometheus resends
//! it every minute) and forgotten after a retention period without updates.
//! [`MetadataStore`] is that store; [`MetadataWriter`]/[`MetadataReader`]
//! are how the distributor and the query API reach it, in one process or
//! over the cluster.

use crate::storage::StorageError;
use crate::tenant::TenantId;
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The type of a metric family (the Prometheus API's strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetricType {
    /// Unknown or untyped.
    Unknown,
    /// Counter.
    Counter,
    /// Gauge.
    Gauge,
    /// Histogram.
    Histogram,
    /// Gauge histogram.
    GaugeHistogram,
    /// Summary.
    Summary,
    /// Info.
    Info,
    /// State set.
    StateSet,
}

impl MetricType {
    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::GaugeHistogram => "gaugehistogram",
            Self::Summary => "summary",
            Self::Info => "info",
            Self::StateSet => "stateset",
        }
    }

    /// From the remote-write 1.0 `MetricMetadata.type` enum (0 unknown … 7 stateset).
    pub fn from_remote_write(v: i32) -> Self {
        match v {
            1 => Self::Counter,
            2 => Self::Gauge,
            3 => Self::Histogram,
            4 => Self::GaugeHistogram,
            5 => Self::Summary,
            6 => Self::Info,
            7 => Self::StateSet,
            _ => Self::Unknown,
        }
    }

    /// The remote-write 1.0 enum value.
    pub fn to_remote_write(self) -> i32 {
        self as i32
    }
}

/// One metadata entry of a metric family.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricMetadata {
    /// Metric family name.
    pub metric: String,
    /// Its type.
    pub kind: MetricType,
    /// Help text.
    pub help: String,
    /// Unit.
    pub unit: String,
}

/// Metadata by metric family name; a family may have several distinct entries.
pub type MetadataByMetric = BTreeMap<String, Vec<MetricMetadata>>;

/// What a metadata query asks for (the `/api/v1/metadata` parameters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataQuery {
    /// Only this metric family.
    pub metric: Option<String>,
    /// At most this many metric families.
    pub limit: Option<usize>,
    /// At most this many entries per family.
    pub limit_per_metric: Option<usize>,
}

/// Receives metadata from the write path.
pub trait MetadataWriter: Send + Sync {
    /// Records `items` for `tenant`.
    fn write_metadata(&self, tenant: &TenantId, items: Vec<MetricMetadata>) -> Result<(), StorageError>;
}

/// Serves metadata to the query API.
pub trait MetadataReader: Send + Sync {
    /// Metadata of `tenant` per `query`.
    fn read_metadata(&self, tenant: &TenantId, query: &MetadataQuery) -> Result<MetadataByMetric, StorageError>;
}

/// In-memory metadata per tenant with a retention period (see module docs).
pub struct MetadataStore {
    retain: Duration,
    max_per_tenant: usize,
    tenants: RwLock<HashMap<TenantId, HashMap<MetricMetadata, Instant>>>,
}

impl MetadataStore {
    /// A store forgetting entries not refreshed for `retain`, holding at
    /// most `max_per_tenant` entries per tenant (new entries beyond it are dropped).
    pub fn new(retain: Duration, max_per_tenant: usize) -> Self {
        Self { retain, max_per_tenant, tenants: RwLock::new(HashMap::new()) }
    }

    /// Entries held for every tenant.
    pub fn len(&self) -> usize {
        self.tenants.read().values().map(HashMap::len).sum()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops entries older than the retention period.
    pub fn purge(&self, now: Instant) {
        let mut tenants = self.tenants.write();
        for entries in tenants.values_mut() {
            entries.retain(|_, seen| now.saturating_duration_since(*seen) <= self.retain);
        }
        tenants.retain(|_, e| !e.is_empty());
    }
}

impl MetadataWriter for MetadataStore {
    fn write_metadata(&self, tenant: &TenantId, items: Vec<MetricMetadata>) -> Result<(), StorageError> {
        if items.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        let mut tenants = self.tenants.write();
        let entries = tenants.entry(tenant.clone()).or_default();
        for m in items.into_iter().filter(|m| !m.metric.is_empty()) {
            if entries.len() >= self.max_per_tenant && !entries.contains_key(&m) {
                continue;
            }
            entries.insert(m, now);
        }
        Ok(())
    }
}

impl MetadataReader for MetadataStore {
    fn read_metadata(&self, tenant: &TenantId, query: &MetadataQuery) -> Result<MetadataByMetric, StorageError> {
        let now = Instant::now();
        let tenants = self.tenants.read();
        let mut out = MetadataByMetric::new();
        if let Some(entries) = tenants.get(tenant) {
            for (m, seen) in entries {
                if now.saturating_duration_since(*seen) > self.retain {
                    continue;
                }
                if query.metric.as_deref().is_some_and(|want| want != m.metric) {
                    continue;
                }
                out.entry(m.metric.clone()).or_default().push(m.clone());
            }
        }
        Ok(limit(out, query))
    }
}

/// Sorts each family's entries, dedups them and applies the query's limits.
pub fn limit(mut all: MetadataByMetric, query: &MetadataQuery) -> MetadataByMetric {
    for v in all.values_mut() {
        v.sort();
        v.dedup();
        if let Some(n) = query.limit_per_metric {
            v.truncate(n);
        }
    }
    if let Some(n) = query.limit {
        all = all.into_iter().take(n).collect();
    }
    all
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn m(metric: &str, kind: MetricType, help: &str) -> MetricMetadata {
        MetricMetadata { metric: metric.into(), kind, help: help.into(), unit: String::new() }
    }

    #[test]
    fn stores_per_tenant_dedups_and_limits() {
        let s = MetadataStore::new(Duration::from_secs(60), 100);
        let (a, b) = (TenantId::new("a").unwrap(), TenantId::new("b").unwrap());
        s.write_metadata(&a, vec![m("up", MetricType::Gauge, "up?"), m("up", MetricType::Gauge, "up?"), m("x_total", MetricType::Counter, "x")]).unwrap();
        s.write_metadata(&a, vec![m("up", MetricType::Gauge, "other help")]).unwrap();
        s.write_metadata(&b, vec![m("secret", MetricType::Gauge, "b only")]).unwrap();
        let all = s.read_metadata(&a, &MetadataQuery::default()).unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), vec!["up", "x_total"]);
        assert_eq!(all["up"].len(), 2);
        assert!(!all.contains_key("secret"), "tenants are isolated");
        let one = s.read_metadata(&a, &MetadataQuery { metric: Some("up".into()), limit_per_metric: Some(1), ..Default::default() }).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one["up"].len(), 1);
        let lim = s.read_metadata(&a, &MetadataQuery { limit: Some(1), ..Default::default() }).unwrap();
        assert_eq!(lim.len(), 1);
    }

    #[test]
    fn forgets_after_retention_and_caps_entries() {
        let s = MetadataStore::new(Duration::from_millis(0), 2);
        let t = TenantId::new("t").unwrap();
        s.write_metadata(&t, vec![m("a", MetricType::Gauge, ""), m("b", MetricType::Gauge, ""), m("c", MetricType::Gauge, "")]).unwrap();
        assert_eq!(s.len(), 2, "capped at 2 per tenant");
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.read_metadata(&t, &MetadataQuery::default()).unwrap().is_empty());
        s.purge(Instant::now());
        assert!(s.is_empty());
    }

    #[test]
    fn type_enum_round_trips() {
        for v in 0..8 {
            assert_eq!(MetricType::from_remote_write(v).to_remote_write(), v);
        }
        assert_eq!(MetricType::from_remote_write(99), MetricType::Unknown);
    }
}
