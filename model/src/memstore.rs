//! An in-memory [`Queryable`] + [`Appender`], used by the PromQL conformance
//! runner and unit tests. Same ordering rules as the ingester: out-of-order
//! samples and same-timestamp-different-value samples are rejected.

use crate::chunk::{ChunkSeries, XorChunk};
use crate::labels::Labels;
use crate::matcher::{matches_all, Matcher};
use crate::sample::Sample;
use crate::storage::{
    AppendOutcome, Appender, Queryable, RejectReason, SampleRejection, SelectHints, SelectedSeries, Series,
    StorageError, WriteBatch,
};
use crate::tenant::TenantId;
use parking_lot::RwLock;
use std::collections::{BTreeMap, BTreeSet};

/// In-memory series store, keyed by tenant then labels.
#[derive(Debug, Default)]
pub struct MemStore {
    data: RwLock<BTreeMap<TenantId, BTreeMap<Labels, Vec<Sample>>>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops everything.
    pub fn clear(&self) {
        self.data.write().clear();
    }

    fn matching<'a>(
        tenant_data: Option<&'a BTreeMap<Labels, Vec<Sample>>>,
        hints: &'a SelectHints,
        matchers: &'a [Matcher],
    ) -> impl Iterator<Item = (&'a Labels, &'a [Sample])> + 'a {
        tenant_data.into_iter().flat_map(|m| m.iter()).filter_map(move |(l, s)| {
            if !matches_all(matchers, l) {
                return None;
            }
            let lo = s.partition_point(|x| x.t < hints.start);
            let hi = s.partition_point(|x| x.t <= hints.end);
            (lo < hi).then(|| (l, &s[lo..hi]))
        })
    }
}

impl Queryable for MemStore {
    fn select(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        let data = self.data.read();
        Ok(Self::matching(data.get(tenant), hints, matchers)
            .map(|(l, s)| Series { labels: l.clone(), samples: s.to_vec() })
            .collect())
    }

    /// Every series left encoded, as a chunk store would (so the engine's
    /// lazy read path runs under the conformance scripts too): the samples
    /// in range and one beyond each edge, in chunks of up to 120 samples.
    fn select_chunks(
        &self,
        tenant: &TenantId,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<SelectedSeries>, StorageError> {
        let data = self.data.read();
        let Some(all) = data.get(tenant) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for (labels, samples) in all {
            if !matches_all(matchers, labels) {
                continue;
            }
            let lo = samples.partition_point(|x| x.t < hints.start);
            let hi = samples.partition_point(|x| x.t <= hints.end);
            if lo >= hi {
                continue;
            }
            let mut series = ChunkSeries::new(labels.clone(), hints.start, hints.end);
            for part in samples[lo.saturating_sub(1)..(hi + 1).min(samples.len())].chunks(120) {
                let mut chunk = XorChunk::new();
                part.iter().for_each(|s| chunk.append(s.t, s.v));
                series.push_chunk(chunk.bytes());
            }
            out.push(SelectedSeries::Encoded(series));
        }
        Ok(out)
    }

    fn label_names(&self, tenant: &TenantId, hints: &SelectHints, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let data = self.data.read();
        let mut out = BTreeSet::new();
        for (l, _) in Self::matching(data.get(tenant), hints, matchers) {
            out.extend(l.iter().map(|l| l.name.clone()));
        }
        Ok(out.into_iter().collect())
    }

    fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, StorageError> {
        let data = self.data.read();
        let mut out = BTreeSet::new();
        for (l, _) in Self::matching(data.get(tenant), hints, matchers) {
            if let Some(v) = l.get(name) {
                out.insert(v.to_string());
            }
        }
        Ok(out.into_iter().collect())
    }
}

impl Appender for MemStore {
    fn append(&self, batch: WriteBatch) -> Result<AppendOutcome, StorageError> {
        let mut data = self.data.write();
        let tenant = data.entry(batch.tenant).or_default();
        let mut out = AppendOutcome::default();
        for s in batch.series {
            let stored = tenant.entry(s.labels.clone()).or_default();
            for sample in s.samples {
                match stored.last() {
                    Some(last) if last.t == sample.t && last.v.to_bits() == sample.v.to_bits() => {
                        out.duplicates_ignored += 1
                    }
                    Some(last) if last.t == sample.t => out.rejected.push(SampleRejection {
                        labels: s.labels.clone(),
                        t: sample.t,
                        reason: RejectReason::DuplicateTimestamp,
                    }),
                    Some(last) if last.t > sample.t => out.rejected.push(SampleRejection {
                        labels: s.labels.clone(),
                        t: sample.t,
                        reason: RejectReason::OutOfOrder,
                    }),
                    _ => {
                        stored.push(sample);
                        out.appended += 1;
                    }
                }
            }
        }
        Ok(out)
    }
}
