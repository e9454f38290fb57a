//! The shards a node answers for in one `Aggregate` call, as ONE
//! [`Queryable`]: the node evaluates the aggregation once over the union of
//! their series (one engine run, one partial result) instead of once per
//! shard followed by a merge of the shards' partials.
//!
//! Each part returns its series sorted by labels; the union concatenates
//! them in part order and sorts stably by labels. A label set found in
//! several parts (a series re-homed to another shard) is decoded and its
//! samples merged by timestamp, the earliest part's sample winning a clash —
//! so it counts once, as in a single store.

use aion_model::storage::{merge_selected, Queryable, SelectHints, SelectedSeries, Series, StorageError};
use aion_model::{Labels, Matcher, TenantId};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Several shards' data read as one store.
pub struct UnionQueryable {
    parts: Vec<Arc<dyn Queryable>>,
}

impl UnionQueryable {
    /// The union of `parts` (given in shard order).
    pub fn new(parts: Vec<Arc<dyn Queryable>>) -> Self {
        Self { parts }
    }
}

impl Queryable for UnionQueryable {
    fn select(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        let chunks = self.select_chunks(tenant, hints, matchers)?;
        chunks.into_iter().map(SelectedSeries::into_series).collect()
    }

    fn select_chunks(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<SelectedSeries>, StorageError> {
        if let [only] = self.parts.as_slice() {
            return only.select_chunks(tenant, hints, matchers);
        }
        let parts = self.parts.iter().map(|p| p.select_chunks(tenant, hints, matchers));
        merge_selected(parts.collect::<Result<_, _>>()?)
    }

    fn series(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Labels>, StorageError> {
        let mut all = BTreeSet::new();
        for p in &self.parts {
            all.extend(p.series(tenant, hints, matchers)?);
        }
        Ok(all.into_iter().collect())
    }

    fn label_names(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let mut all = BTreeSet::new();
        for p in &self.parts {
            all.extend(p.label_names(tenant, hints, matchers)?);
        }
        Ok(all.into_iter().collect())
    }

    fn label_values(&self, tenant: &TenantId, name: &str, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let mut all = BTreeSet::new();
        for p in &self.parts {
            all.extend(p.label_values(tenant, name, hints, matchers)?);
        }
        Ok(all.into_iter().collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aion_model::memstore::MemStore;
    use aion_model::storage::{Appender, SeriesSamples, WriteBatch};
    use aion_model::Sample;

    fn store(series: &[(&str, &[(i64, f64)])]) -> Arc<dyn Queryable> {
        let s = MemStore::new();
        let series = series
            .iter()
            .map(|(job, pts)| SeriesSamples {
                labels: Labels::from_pairs([("__name__", "m"), ("job", *job)]),
                samples: pts.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
            })
            .collect();
        s.append(WriteBatch { tenant: TenantId::anonymous(), series }).unwrap();
        Arc::new(s)
    }

    #[test]
    fn the_union_is_sorted_and_a_series_on_two_shards_counts_once() {
        let u = UnionQueryable::new(vec![
            store(&[("b", &[(1, 1.0), (3, 3.0)]), ("c", &[(1, 9.0)])]),
            store(&[("a", &[(1, 5.0)]), ("b", &[(2, 2.0), (3, 7.0)])]),
        ]);
        let t = TenantId::anonymous();
        let m = [Matcher::equal("__name__", "m")];
        let got = u.select(&t, &SelectHints::all(), &m).unwrap();
        let jobs: Vec<_> = got.iter().map(|s| s.labels.get("job").unwrap().to_string()).collect();
        assert_eq!(jobs, ["a", "b", "c"]);
        assert_eq!(got[1].samples, vec![Sample::new(1, 1.0), Sample::new(2, 2.0), Sample::new(3, 3.0)], "first shard wins t=3");
        assert_eq!(u.series(&t, &SelectHints::all(), &m).unwrap().len(), 3);
        assert_eq!(u.label_values(&t, "job", &SelectHints::all(), &[]).unwrap(), ["a", "b", "c"]);
    }
}
