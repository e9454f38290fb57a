//! Querier settings.

use crate::engine::EngineOptions;
use crate::limits::{spawn_reloader, LimitsError, QueryLimits, TenantQueryLimits};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Querier configuration (`querier:` in the YAML file).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuerierConfig {
    /// How far back an instant selector looks for the latest sample.
    #[serde(with = "humantime_serde")]
    pub lookback_delta: Duration,
    /// Longest a query may run.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most samples one query may hold in memory.
    pub max_samples: usize,
    /// In a cluster (`--target=querier`): answer from the shards that are
    /// reachable, with a warning naming the missing ones, instead of failing
    /// the query. Off by default: a down shard is an error, not a silent hole.
    pub partial_response: bool,
    /// In a cluster: most series one selector may fetch from the shards; 0 = unlimited.
    pub max_fetched_series_per_query: usize,
    /// In a cluster: most encoded chunk bytes one selector may fetch from the
    /// shards (bounds the querier's memory per selector); 0 = unlimited.
    pub max_fetched_chunk_bytes_per_query: usize,
    /// In a cluster: shards evaluate `sum/min/max/count/group` aggregations of
    /// selectors and per-series range functions (`rate`, `*_over_time`, …)
    /// and the querier merges their partial results (aggregation pushdown).
    pub aggregation_pushdown: bool,
    /// With pushdown on: evaluate an aggregation from the chunks for a minute
    /// when its last pushed-down answer moved as many values (≥ 0.15 per
    /// sample loaded) as reading the chunks would, e.g. `sum by (instance)`
    /// over a few series per instance; then measure again.
    pub adaptive_pushdown: bool,
    /// Default per-tenant query limits (a tenant without an override gets these).
    pub limits: QueryLimits,
    /// Runtime overrides file: YAML `overrides: { <tenant>: { <limits fields> } }`;
    /// fields a tenant does not set keep the defaults of `limits`.
    pub overrides_file: Option<PathBuf>,
    /// How often the overrides file is re-read.
    #[serde(with = "humantime_serde")]
    pub overrides_period: Duration,
}

impl Default for QuerierConfig {
    fn default() -> Self {
        let e = EngineOptions::default();
        Self {
            lookback_delta: e.lookback_delta,
            timeout: e.timeout,
            max_samples: e.max_samples,
            partial_response: false,
            max_fetched_series_per_query: 0,
            max_fetched_chunk_bytes_per_query: 0,
            aggregation_pushdown: true,
            adaptive_pushdown: true,
            limits: QueryLimits::default(),
            overrides_file: None,
            overrides_period: Duration::from_secs(10),
        }
    }
}

impl QuerierConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), String> {
        if self.lookback_delta.is_zero() {
            return Err("lookback_delta must be positive".into());
        }
        if self.timeout.is_zero() {
            return Err("timeout must be positive".into());
        }
        if self.max_samples == 0 {
            return Err("max_samples must be positive".into());
        }
        if self.overrides_file.is_some() && self.overrides_period.is_zero() {
            return Err("overrides_period must be greater than 0 when overrides_file is set".into());
        }
        self.limits.validate("querier.limits").map_err(|e| e.to_string())
    }

    /// The engine options these settings imply.
    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            lookback_delta: self.lookback_delta,
            timeout: self.timeout,
            max_samples: self.max_samples,
            ..EngineOptions::default()
        }
    }

    /// The per-tenant limits: defaults from `limits`, overrides read from
    /// `overrides_file` now (an error fails the start) and re-read every
    /// `overrides_period` while the returned value lives (on a tokio runtime).
    pub fn tenant_limits(&self) -> Result<Arc<TenantQueryLimits>, LimitsError> {
        let limits = Arc::new(TenantQueryLimits::new(self.limits.clone()));
        if let Some(path) = &self.overrides_file {
            limits.load_file(path)?;
            spawn_reloader(Arc::downgrade(&limits), path.clone(), self.overrides_period);
        }
        Ok(limits)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_under_querier() {
        let c: QuerierConfig = serde_yaml::from_str(
            "overrides_file: /nope.yaml\noverrides_period: 1s\nlimits:\n  max_query_length: 1d\n  max_series_per_query: 10\n",
        )
        .unwrap();
        assert_eq!(c.limits.max_query_length, Duration::from_secs(86_400));
        assert_eq!(c.limits.max_series_per_query, 10);
        assert_eq!(c.overrides_period, Duration::from_secs(1));
        assert!(c.validate().is_ok());
        let e = c.tenant_limits().unwrap_err().to_string();
        assert!(e.contains("/nope.yaml"), "a missing overrides file fails the start: {e}");
        assert!(serde_yaml::from_str::<QuerierConfig>("limits:\n  max_series: 1\n").is_err());
        let d = QuerierConfig::default().tenant_limits().unwrap();
        assert_eq!(*d.get("any"), QueryLimits::default());
    }
}
