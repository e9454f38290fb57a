//! [`LimitedQueryable`]: one query's view of storage under its tenant's
//! limits — selections never read before the lookback limit, and the distinct
//! series all selections return (by label-set hash, as Mimir's series limiter)
//! are counted against `max_series_per_query`.

use aion_model::labels::Labels;
use aion_model::matcher::Matcher;
use aion_model::storage::{
    PushdownAnswer, PushdownRequest, Queryable, SelectHints, SelectedSeries, Series, StorageError,
};
use aion_model::TenantId;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Name of the series limit in errors and metrics.
pub const MAX_SERIES_PER_QUERY: &str = "max_series_per_query";

/// Storage seen through one query's limits. Create one per query.
pub struct LimitedQueryable {
    inner: Arc<dyn Queryable>,
    /// Oldest readable timestamp (ms), if lookback is limited.
    min_time_ms: Option<i64>,
    /// Largest selector window of the query (ms), to decide on pushdown.
    window_ms: i64,
    max_series: usize,
    /// Hashes of the distinct series returned so far (kept only under a limit).
    seen: Mutex<HashSet<u64>>,
    exceeded: AtomicBool,
}

impl LimitedQueryable {
    /// `inner` limited to data at or after `min_time_ms` and `max_series`
    /// series in total (0: unlimited); `window_ms` is the query's largest
    /// selector window (see [`super::query_window_ms`]).
    pub fn new(inner: Arc<dyn Queryable>, min_time_ms: Option<i64>, window_ms: i64, max_series: usize) -> Self {
        Self { inner, min_time_ms, window_ms, max_series, seen: Mutex::new(HashSet::new()), exceeded: AtomicBool::new(false) }
    }

    /// Whether a selection went over `max_series_per_query`.
    pub fn series_limit_exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// Distinct series returned so far (counted only under a series limit).
    pub fn series_returned(&self) -> usize {
        self.seen.lock().len()
    }

    /// Label-set hashes of the distinct series returned so far (kept only
    /// under a series limit), in no particular order.
    pub fn series_hashes(&self) -> Vec<u64> {
        self.seen.lock().iter().copied().collect()
    }

    /// `hints` clamped to the lookback limit; None when nothing is left.
    fn clamp(&self, hints: &SelectHints) -> Option<SelectHints> {
        match self.min_time_ms {
            Some(min) if hints.end < min => None,
            Some(min) => Some(SelectHints { start: hints.start.max(min), end: hints.end }),
            None => Some(*hints),
        }
    }

    /// Adds the series `labels` to the query's distinct set, failing over the limit.
    fn count<'a>(&self, labels: impl Iterator<Item = &'a Labels>) -> Result<(), StorageError> {
        self.count_hashes(labels.map(aion_model::hash::labels_hash))
    }

    /// [`Self::count`] of series given by their label-set hashes.
    fn count_hashes(&self, hashes: impl Iterator<Item = u64>) -> Result<(), StorageError> {
        if self.max_series == 0 {
            return Ok(());
        }
        let mut seen = self.seen.lock();
        seen.extend(hashes);
        if seen.len() > self.max_series {
            self.exceeded.store(true, Ordering::Relaxed);
            return Err(StorageError::LimitExceeded {
                limit: MAX_SERIES_PER_QUERY,
                max: self.max_series as u64,
                value: seen.len() as u64,
            });
        }
        Ok(())
    }
}

impl Queryable for LimitedQueryable {
    fn select(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        let Some(h) = self.clamp(hints) else { return Ok(Vec::new()) };
        let out = self.inner.select(tenant, &h, matchers)?;
        self.count(out.iter().map(|s| &s.labels))?;
        Ok(out)
    }

    fn select_chunks(
        &self,
        tenant: &TenantId,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<SelectedSeries>, StorageError> {
        let Some(h) = self.clamp(hints) else { return Ok(Vec::new()) };
        let out = self.inner.select_chunks(tenant, &h, matchers)?;
        self.count(out.iter().map(SelectedSeries::labels))?;
        Ok(out)
    }

    fn series(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Labels>, StorageError> {
        let Some(h) = self.clamp(hints) else { return Ok(Vec::new()) };
        let out = self.inner.series(tenant, &h, matchers)?;
        self.count(out.iter())?;
        Ok(out)
    }

    fn label_names(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let Some(h) = self.clamp(hints) else { return Ok(Vec::new()) };
        self.inner.label_names(tenant, &h, matchers)
    }

    fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, StorageError> {
        let Some(h) = self.clamp(hints) else { return Ok(Vec::new()) };
        self.inner.label_values(tenant, name, &h, matchers)
    }

    /// Pushed down only when the aggregation cannot read before the lookback
    /// limit (shards cannot clamp). Under a series limit each part may select
    /// the series the query has left, and the series the parts selected
    /// (their label-set hashes) count against the limit as a selection here
    /// would.
    fn pushdown(&self, tenant: &TenantId, req: &PushdownRequest) -> Option<Result<PushdownAnswer, StorageError>> {
        if let Some(min) = self.min_time_ms {
            let earliest = req.start_ms.saturating_sub(self.window_ms.max(req.lookback_ms));
            if earliest < min {
                return None;
            }
        }
        let req = if self.max_series > 0 {
            let left = self.max_series.saturating_sub(self.series_returned()).max(1);
            PushdownRequest { max_series: left as u64, ..req.clone() }
        } else {
            req.clone()
        };
        let r = self.inner.pushdown(tenant, &req)?;
        Some(match r {
            Ok(mut a) => self.count_hashes(std::mem::take(&mut a.series_hashes).into_iter()).map(|()| a),
            Err(e) => {
                if matches!(e, StorageError::LimitExceeded { limit: MAX_SERIES_PER_QUERY, .. }) {
                    self.exceeded.store(true, Ordering::Relaxed);
                }
                Err(e)
            }
        })
    }

    fn may_push_down(&self) -> bool {
        self.inner.may_push_down()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aion_model::memstore::MemStore;
    use aion_model::storage::{Appender, SeriesSamples, WriteBatch};
    use aion_model::Sample;

    fn store() -> Arc<dyn Queryable> {
        let s = MemStore::new();
        let series = (0..3)
            .map(|i| SeriesSamples {
                labels: Labels::from_pairs([("__name__", "m"), ("i", &i.to_string())]),
                samples: vec![Sample::new(1000, 1.0), Sample::new(5000, 2.0)],
            })
            .collect();
        s.append(WriteBatch { tenant: TenantId::anonymous(), series }).unwrap();
        Arc::new(s)
    }

    #[test]
    fn counts_series_across_selections_and_clamps_time() {
        let t = TenantId::anonymous();
        let all = SelectHints::all();
        let q = LimitedQueryable::new(store(), None, 0, 3);
        assert_eq!(q.select(&t, &all, &[]).unwrap().len(), 3);
        assert_eq!(q.select(&t, &all, &[]).unwrap().len(), 3, "the same series again are not counted twice");
        assert_eq!(q.series_returned(), 3);
        assert!(!q.series_limit_exceeded());
        let q = LimitedQueryable::new(store(), None, 0, 2);
        let one = [Matcher::equal("i", "0")];
        assert_eq!(q.select(&t, &all, &one).unwrap().len(), 1);
        let err = q.select(&t, &all, &[]).unwrap_err();
        assert!(matches!(err, StorageError::LimitExceeded { limit: MAX_SERIES_PER_QUERY, max: 2, value: 3 }), "{err}");
        assert!(q.series_limit_exceeded());

        let q = LimitedQueryable::new(store(), Some(3000), 0, 0);
        let s = q.select(&t, &all, &[]).unwrap();
        assert!(s.iter().all(|s| s.samples.len() == 1 && s.samples[0].t == 5000), "{s:?}");
        assert!(q.select(&t, &SelectHints { start: 0, end: 2000 }, &[]).unwrap().is_empty());
        assert!(!q.series_limit_exceeded());
    }
}
