//! Querier settings.

use crate::engine::EngineOptions;
use serde::Deserialize;
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
        Ok(())
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
}
