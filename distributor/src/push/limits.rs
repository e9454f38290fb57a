//! Per-tenant limit checks on the push path: sample age (grace periods), the
//! ingestion rate, and the active-series limits. Each check drops what it
//! rejects, counts it by reason, and reports the first rejection.

use crate::active_series::SeriesLimitHit;
use crate::config::Limits;
use crate::error::{DistributorError, Result};
use crate::metrics::Metrics;
use crate::validation::reason;
use crate::Distributor;
use aion_model::storage::SeriesSamples;
use aion_model::{Labels, Sample};
use aion_proto::prometheus::Sample as ProtoSample;
use std::time::{Duration, Instant};

/// The first sample of `samples` outside the grace periods around `now_ms`,
/// as (reason, message); `None` when all are inside. Zero periods are off.
pub(crate) fn time_violation(t: i64, limits: &Limits, now_ms: i64) -> Option<(&'static str, String)> {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let (future, past) = (limits.creation_grace_period, limits.past_grace_period);
    if !future.is_zero() && t > now_ms.saturating_add(ms(future)) {
        return Some((
            reason::TOO_FAR_IN_FUTURE,
            format!(
                "sample too far in the future: timestamp {t} is more than {} (creation_grace_period) after now ({now_ms})",
                humantime::format_duration(future)
            ),
        ));
    }
    if !past.is_zero() && t < now_ms.saturating_sub(ms(past)) {
        return Some((
            reason::TOO_OLD,
            format!(
                "sample too old: timestamp {t} is more than {} (past_grace_period) before now ({now_ms})",
                humantime::format_duration(past)
            ),
        ));
    }
    None
}

impl Distributor {
    /// Keeps the samples inside the grace periods; counts the others and
    /// describes the first one (naming the series).
    pub(crate) fn check_sample_times(
        &self,
        tenant: &str,
        labels: &Labels,
        samples: &[ProtoSample],
        limits: &Limits,
        now_ms: i64,
    ) -> (Vec<Sample>, Option<DistributorError>) {
        let mut kept = Vec::with_capacity(samples.len());
        let mut first = None;
        for s in samples {
            match time_violation(s.timestamp, limits, now_ms) {
                None => kept.push(Sample::new(s.timestamp, s.value)),
                Some((r, msg)) => {
                    Metrics::add_discard(&self.metrics.discarded_samples, tenant, r, 1);
                    first.get_or_insert_with(|| DistributorError::LimitExceeded {
                        reason: r,
                        message: format!("{msg} for series '{labels}' of tenant {tenant}"),
                    });
                }
            }
        }
        (kept, first)
    }

    /// Takes `samples` tokens from the tenant's bucket, or answers 429.
    pub(crate) fn check_rate(&self, tenant: &str, samples: usize, limits: &Limits) -> Result<()> {
        let (rate, burst) = (limits.ingestion_rate, limits.ingestion_burst_size);
        if self.rate.allow(tenant, samples as u64, rate, burst, Instant::now()) {
            return Ok(());
        }
        Metrics::add_discard(&self.metrics.discarded_samples, tenant, reason::RATE_LIMITED, samples as u64);
        Err(DistributorError::RateLimited { tenant: tenant.to_string(), limit: rate, burst, samples })
    }

    /// Keeps the series the active-series limits admit; counts the others and
    /// describes the first one.
    pub(crate) fn check_series_limits(
        &self,
        tenant: &str,
        series: Vec<SeriesSamples>,
        limits: &Limits,
    ) -> (Vec<SeriesSamples>, Option<DistributorError>) {
        let (per_user, per_metric) = (limits.max_global_series_per_user, limits.max_global_series_per_metric);
        if per_user == 0 && per_metric == 0 {
            return (series, None);
        }
        let refs: Vec<&Labels> = series.iter().map(|s| &s.labels).collect();
        let verdicts = self.active.admit(tenant, &refs, per_user, per_metric, Instant::now());
        let active = i64::try_from(self.active.count(tenant)).unwrap_or(i64::MAX);
        self.metrics
            .active_series
            .get_or_create(&crate::metrics::TenantLabel { tenant: tenant.to_string() })
            .set(active);
        let mut first = None;
        let mut kept = Vec::with_capacity(series.len());
        for (s, v) in series.into_iter().zip(verdicts) {
            let Some(hit) = v else {
                kept.push(s);
                continue;
            };
            let (r, what) = match &hit {
                SeriesLimitHit::PerUser { limit } => (
                    reason::PER_USER_SERIES_LIMIT,
                    format!("per-tenant series limit of {limit} (max_global_series_per_user) exceeded for tenant {tenant}"),
                ),
                SeriesLimitHit::PerMetric { limit, metric } => (
                    reason::PER_METRIC_SERIES_LIMIT,
                    format!(
                        "per-metric series limit of {limit} (max_global_series_per_metric) exceeded for tenant {tenant}, metric {metric}"
                    ),
                ),
            };
            Metrics::add_discard(&self.metrics.discarded_series, tenant, r, 1);
            Metrics::add_discard(&self.metrics.discarded_samples, tenant, r, s.samples.len() as u64);
            first.get_or_insert_with(|| DistributorError::LimitExceeded {
                reason: r,
                message: format!("{what}: new series '{}' rejected", s.labels),
            });
        }
        (kept, first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_periods_bound_sample_times_and_zero_is_off() {
        let l = Limits {
            creation_grace_period: Duration::from_secs(600),
            past_grace_period: Duration::from_secs(3600),
            ..Limits::default()
        };
        let now = 10_000_000_000;
        assert_eq!(time_violation(now, &l, now), None);
        assert_eq!(time_violation(now + 600_000, &l, now), None, "exactly at the edge is fine");
        assert_eq!(time_violation(now - 3_600_000, &l, now), None);
        let (r, m) = time_violation(now + 600_001, &l, now).unwrap();
        assert_eq!(r, reason::TOO_FAR_IN_FUTURE);
        assert!(m.contains("is more than 10m (creation_grace_period)"), "{m}");
        let (r, m) = time_violation(now - 3_600_001, &l, now).unwrap();
        assert_eq!(r, reason::TOO_OLD);
        assert!(m.contains("timestamp 9996399999 is more than 1h (past_grace_period)"), "{m}");
        let off = Limits { creation_grace_period: Duration::ZERO, past_grace_period: Duration::ZERO, ..l };
        assert_eq!(time_violation(i64::MAX, &off, now), None);
        assert_eq!(time_violation(i64::MIN, &off, now), None);
    }
}
