//! Per-tenant query limits (Mimir/Prometheus-like): the [`QueryLimits`]
//! struct (defaults under `querier.limits:`), their per-tenant resolution
//! ([`TenantQueryLimits`], overrides from a runtime file re-read without
//! restart, see [`overrides`]), and the checks the query API makes with them.
//!
//! Semantics (0 always means "no per-tenant limit"):
//! - `max_query_length`: the span of data a query reads — `end - start` of a
//!   range query (0 for an instant query) plus its largest range-selector or
//!   subquery window — may not exceed this; otherwise 400 `bad_data`.
//! - `max_query_lookback`: data older than `now - max_query_lookback` is not
//!   visible. As Mimir does, a range query's `start` is clamped forward (on
//!   its step grid) and selections never read before that time; a query that
//!   lies wholly before it returns an empty result, not an error.
//! - `max_series_per_query`: most distinct series the query's selectors may return in
//!   total (pushed-down aggregations count their partial result series);
//!   otherwise 422 `execution`.
//! - `max_samples_per_query`, `query_timeout`: per-tenant values of the
//!   engine's `querier.max_samples` / `querier.timeout` (0: use those).

#[cfg(test)]
mod api_test;
pub mod overrides;
pub mod queryable;

pub use overrides::{parse_overrides, spawn_reloader, TenantQueryLimits};
pub use queryable::LimitedQueryable;

use crate::engine::EngineOptions;
use promql_parser::parser::Expr;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

/// Errors of the limits configuration and overrides file.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LimitsError {
    /// The overrides file cannot be read.
    #[error("cannot read query overrides file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The overrides file (or a limits value) is invalid.
    #[error("query overrides: {0}")]
    Invalid(String),
}

/// Per-tenant query limits; 0 = no limit (or "use the querier-wide value").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryLimits {
    /// Longest span of data one query may read (range + largest selector window).
    #[serde(with = "humantime_serde")]
    pub max_query_length: Duration,
    /// How far back from now queries may read; older data is clamped away.
    #[serde(with = "humantime_serde")]
    pub max_query_lookback: Duration,
    /// Most distinct series all selectors of one query may return together.
    pub max_series_per_query: usize,
    /// Most samples one query may hold in memory (0: `querier.max_samples`).
    pub max_samples_per_query: usize,
    /// Longest one query may run (0: `querier.timeout`).
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_query_length: Duration::ZERO,
            max_query_lookback: Duration::ZERO,
            max_series_per_query: 0,
            max_samples_per_query: 0,
            query_timeout: Duration::ZERO,
        }
    }
}

impl QueryLimits {
    /// Checks the values; `at` names the place (`querier.limits`, `overrides.<tenant>`).
    pub fn validate(&self, at: &str) -> Result<(), LimitsError> {
        // Every combination is meaningful today (0 = off); keep the hook so
        // overrides go through the same path as the defaults.
        let _ = at;
        Ok(())
    }

    /// The engine options for a tenant with these limits, over the querier-wide `base`.
    pub fn engine_options(&self, base: &EngineOptions) -> EngineOptions {
        let mut o = base.clone();
        if self.max_samples_per_query > 0 {
            o.max_samples = self.max_samples_per_query;
        }
        if !self.query_timeout.is_zero() {
            o.timeout = self.query_timeout;
        }
        o
    }

    /// The oldest timestamp (ms) a query may read at `now_ms`, if lookback is limited.
    pub fn min_time_ms(&self, now_ms: i64) -> Option<i64> {
        (!self.max_query_lookback.is_zero())
            .then(|| now_ms.saturating_sub(i64::try_from(self.max_query_lookback.as_millis()).unwrap_or(i64::MAX)))
    }

    /// Checks a query reading `length_ms` of data against `max_query_length`;
    /// the error message names the limit and `tenant`.
    pub fn check_length(&self, tenant: &str, length_ms: i64) -> Result<(), String> {
        let max = i64::try_from(self.max_query_length.as_millis()).unwrap_or(i64::MAX);
        if max == 0 || length_ms <= max {
            return Ok(());
        }
        let got = humantime::format_duration(Duration::from_millis(length_ms.max(0) as u64));
        Err(format!(
            "the query time range exceeds the limit (query length: {got}, limit: {}) for tenant {tenant:?} (max_query_length)",
            humantime::format_duration(self.max_query_length)
        ))
    }
}

/// Clamps a range query's `start_ms` forward to `min_ms`, keeping it on the
/// grid `start_ms + k*step_ms`. Returns the new start (maybe past `end`).
pub fn clamp_start(start_ms: i64, step_ms: i64, min_ms: i64) -> i64 {
    if start_ms >= min_ms || step_ms <= 0 {
        return start_ms;
    }
    let behind = min_ms - start_ms;
    let steps = behind / step_ms + i64::from(behind % step_ms != 0);
    start_ms.saturating_add(steps.saturating_mul(step_ms))
}

/// The largest window (ms) any selector of `query` reads before its
/// evaluation time: a matrix selector's range, a subquery's range plus its
/// inner window. Offsets are ignored. 0 when the query does not parse (the
/// engine then reports the parse error).
pub fn query_window_ms(query: &str) -> i64 {
    match crate::engine::plan::parse(query, crate::engine::plan::DurationContext { step_ms: 0, range_ms: 0 }) {
        Ok(e) => expr_window_ms(&e),
        Err(_) => 0,
    }
}

fn dur_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn expr_window_ms(e: &Expr) -> i64 {
    match e {
        Expr::MatrixSelector(m) => dur_ms(m.range),
        Expr::Subquery(s) => dur_ms(s.range).saturating_add(expr_window_ms(&s.expr)),
        Expr::Paren(p) => expr_window_ms(&p.expr),
        Expr::Unary(u) => expr_window_ms(&u.expr),
        Expr::Binary(b) => expr_window_ms(&b.lhs).max(expr_window_ms(&b.rhs)),
        Expr::Aggregate(a) => {
            expr_window_ms(&a.expr).max(a.param.as_ref().map_or(0, |p| expr_window_ms(p)))
        }
        Expr::Call(c) => c.args.args.iter().map(|a| expr_window_ms(a)).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_ranges_and_subqueries() {
        assert_eq!(query_window_ms("up"), 0);
        assert_eq!(query_window_ms("rate(x[5m])"), 300_000);
        assert_eq!(query_window_ms("sum(rate(x[5m])) / sum(rate(y[1h]))"), 3_600_000);
        assert_eq!(query_window_ms("max_over_time(rate(x[1m])[30m:1m])"), 1_860_000);
        assert_eq!(query_window_ms("topk(3, avg_over_time(x[2m]))"), 120_000);
        assert_eq!(query_window_ms("sum("), 0);
    }

    #[test]
    fn start_is_clamped_on_the_step_grid() {
        assert_eq!(clamp_start(0, 10, 25), 30);
        assert_eq!(clamp_start(0, 10, 30), 30);
        assert_eq!(clamp_start(40, 10, 30), 40);
    }

    #[test]
    fn resolution_of_engine_options_and_length() {
        let base = EngineOptions::default();
        let l = QueryLimits::default();
        assert_eq!(l.engine_options(&base).max_samples, base.max_samples);
        assert_eq!(l.min_time_ms(1000), None);
        assert!(l.check_length("t", i64::MAX).is_ok(), "0 = unlimited");
        let l = QueryLimits {
            max_samples_per_query: 7,
            query_timeout: Duration::from_secs(3),
            max_query_lookback: Duration::from_secs(1),
            max_query_length: Duration::from_secs(60),
            ..QueryLimits::default()
        };
        let o = l.engine_options(&base);
        assert_eq!((o.max_samples, o.timeout), (7, Duration::from_secs(3)));
        assert_eq!(o.lookback_delta, base.lookback_delta);
        assert_eq!(l.min_time_ms(5000), Some(4000));
        assert!(l.check_length("t", 60_000).is_ok());
        let e = l.check_length("team-a", 60_001).unwrap_err();
        assert!(e.contains("max_query_length") && e.contains("team-a") && e.contains("1m"), "{e}");
    }
}
