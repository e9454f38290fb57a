//! The read path. Under the head's read lock: postings give the matching
//! series, their open chunks are copied and a RocksDB snapshot is taken (so
//! head and persisted chunks are one consistent view). Outside the lock:
//! persisted chunks of the blocks in range are read block by block in ref
//! order ([`chunks`]), and decoded unless the caller takes them encoded.

use super::{Inner, Tsdb};
use crate::error::Result;
use crate::head::{Head, MemSeries};
use crate::series::{label_value, to_labels};
use aion_model::chunk::ChunkSeries;
use aion_model::labels::Labels;
use aion_model::matcher::Matcher;
use aion_model::storage::{Queryable, SelectHints, SelectedSeries, Series, StorageError};
use aion_model::tenant::TenantId;
use chunks::refs_and_span;
use std::collections::BTreeSet;

mod chunks;

/// A matching series with what is needed to read its samples.
struct Candidate {
    r: u64,
    labels: Labels,
    min_t: i64,
    max_t: i64,
    /// Open chunk (mint, bytes) when it may overlap the range.
    head: Option<(i64, Vec<u8>)>,
}

/// True when the series certainly has a sample in `hints` without decoding:
/// its newest sample (`max_t`) is in range.
fn surely_in_range(c: &Candidate, hints: &SelectHints) -> bool {
    hints.start <= c.max_t && c.max_t <= hints.end
}

fn candidate(r: u64, s: &MemSeries, hints: &SelectHints) -> Option<Candidate> {
    let max_t = s.state.max_t()?;
    let min_t = s.state.min_t;
    if max_t < hints.start || min_t > hints.end {
        return None;
    }
    let head = (s.state.chunk_len > 0 && s.state.chunk_mint <= hints.end)
        .then(|| (s.state.chunk_mint, s.state.chunk.bytes().to_vec()));
    Some(Candidate {
        r,
        labels: to_labels(&s.labels),
        min_t,
        max_t,
        head,
    })
}

impl Inner {
    /// Matching series of `tenant` that may have samples in range, sorted by labels.
    fn candidates(
        &self,
        head: &Head,
        tenant: &TenantId,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Vec<Candidate> {
        if hints.start > hints.end {
            return Vec::new();
        }
        let Some(idx) = head.tenants.get(tenant.as_str()) else {
            return Vec::new();
        };
        let mut out: Vec<Candidate> = idx
            .select(matchers, |r, m| {
                head.series
                    .get(&r)
                    .is_some_and(|s| m.matches(label_value(&s.labels, &m.name)))
            })
            .into_iter()
            .filter_map(|r| head.series.get(&r).and_then(|s| candidate(r, s, hints)))
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Like [`Inner::select`], but series certain to have a sample in range
    /// stay encoded (their chunks are copied once, straight from RocksDB);
    /// the others are decoded here so that empty ones are omitted as usual.
    pub(crate) fn select_chunks(
        &self,
        tenant: &TenantId,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<SelectedSeries>> {
        let head = self.head.read();
        let cands = self.candidates(&head, tenant, hints, matchers);
        let snap = self.db.snapshot();
        drop(head);
        let is_sure: Vec<bool> = cands.iter().map(|c| surely_in_range(c, hints)).collect();
        let (mut sure, mut unsure) = (Vec::new(), Vec::new());
        for (c, &s) in cands.into_iter().zip(&is_sure) {
            if s {
                sure.push(c);
            } else {
                unsure.push(c);
            }
        }
        let checked = self.read_samples(&snap, &unsure, hints)?;
        let mut decoded = unsure.into_iter().zip(checked);
        let (refs, lo, hi) = refs_and_span(&sure, hints);
        let mut stored = self.chunks_by_ref(&snap, &refs, lo, hi, hints)?;
        let mut encoded: Vec<ChunkSeries> = Vec::with_capacity(sure.len());
        for c in sure {
            let mut e = stored
                .remove(&c.r)
                .unwrap_or_else(|| ChunkSeries::new(Labels::empty(), hints.start, hints.end));
            if let Some((_, bytes)) = &c.head {
                e.push_chunk(bytes);
            }
            e.labels = c.labels;
            encoded.push(e);
        }
        // Back to label order: both parts kept the order of `cands`.
        let mut encoded = encoded.into_iter();
        let mut out = Vec::with_capacity(is_sure.len());
        for sure in is_sure {
            if sure {
                out.extend(encoded.next().map(SelectedSeries::Encoded));
            } else if let Some((d, samples)) = decoded.next() {
                if !samples.is_empty() {
                    out.push(SelectedSeries::Decoded(Series { labels: d.labels, samples }));
                }
            }
        }
        Ok(out)
    }

    /// See [`Tsdb::series_bound`].
    pub(crate) fn series_bound(&self, tenant: &TenantId, matchers: &[Matcher]) -> Option<usize> {
        let head = self.head.read();
        match head.tenants.get(tenant.as_str()) {
            Some(idx) => idx.select_bound(matchers),
            None => Some(0),
        }
    }

    /// Series matching `matchers` with their samples in `hints`, sorted by labels.
    pub(crate) fn select(
        &self,
        tenant: &TenantId,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<Series>> {
        let head = self.head.read();
        let cands = self.candidates(&head, tenant, hints, matchers);
        let snap = self.db.snapshot();
        drop(head);
        let samples = self.read_samples(&snap, &cands, hints)?;
        Ok(cands
            .into_iter()
            .zip(samples)
            .filter(|(_, s)| !s.is_empty())
            .map(|(c, samples)| Series {
                labels: c.labels,
                samples,
            })
            .collect())
    }

    /// Labels of matching series with at least one sample in `hints`, sorted;
    /// decodes only series whose span straddles the range boundaries.
    pub(crate) fn matching_labels(
        &self,
        tenant: &TenantId,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<Labels>> {
        let head = self.head.read();
        let cands = self.candidates(&head, tenant, hints, matchers);
        let snap = self.db.snapshot();
        drop(head);
        let (sure, unsure): (Vec<Candidate>, Vec<Candidate>) =
            cands.into_iter().partition(|c| surely_in_range(c, hints));
        let checked = self.read_samples(&snap, &unsure, hints)?;
        let mut out: Vec<Labels> = sure.into_iter().map(|c| c.labels).collect();
        out.extend(
            unsure
                .into_iter()
                .zip(checked)
                .filter(|(_, s)| !s.is_empty())
                .map(|(c, _)| c.labels),
        );
        out.sort();
        Ok(out)
    }
}

impl Queryable for Tsdb {
    fn select(
        &self,
        tenant: &TenantId,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> std::result::Result<Vec<Series>, StorageError> {
        self.inner
            .select(tenant, hints, matchers)
            .map_err(StorageError::from)
    }

    fn select_chunks(
        &self,
        tenant: &TenantId,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> std::result::Result<Vec<SelectedSeries>, StorageError> {
        self.inner
            .select_chunks(tenant, hints, matchers)
            .map_err(StorageError::from)
    }

    fn series(
        &self,
        tenant: &TenantId,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> std::result::Result<Vec<Labels>, StorageError> {
        self.inner
            .matching_labels(tenant, hints, matchers)
            .map_err(StorageError::from)
    }

    fn label_names(
        &self,
        tenant: &TenantId,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> std::result::Result<Vec<String>, StorageError> {
        let labels = self.inner.matching_labels(tenant, hints, matchers)?;
        let names: BTreeSet<&str> = labels
            .iter()
            .flat_map(|l| l.iter().map(|p| p.name.as_str()))
            .collect();
        Ok(names.into_iter().map(str::to_string).collect())
    }

    fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        hints: &SelectHints,
        matchers: &[Matcher],
    ) -> std::result::Result<Vec<String>, StorageError> {
        let labels = self.inner.matching_labels(tenant, hints, matchers)?;
        let values: BTreeSet<&str> = labels.iter().filter_map(|l| l.get(name)).collect();
        Ok(values.into_iter().map(str::to_string).collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::TsdbConfig;
    use aion_model::sample::Sample;
    use aion_model::storage::{Appender, SeriesSamples, WriteBatch};
    use std::time::Duration;

    /// Reads skip other series' chunks by stepping or seeking: every subset
    /// of interleaved series, some of them absent from some blocks, must
    /// come back complete, persisted (flushed) and head chunks alike.
    #[test]
    fn sparse_and_dense_selections_read_every_chunk() {
        let dir = tempfile::TempDir::new().unwrap();
        let cfg = TsdbConfig {
            checkpoint_interval: Duration::ZERO,
            ..Default::default()
        };
        let db = Tsdb::open(dir.path(), cfg).unwrap();
        let tenant = TenantId::new("t").unwrap();
        let n = 60usize;
        // Series i starts in block i % 3: 7 h at one sample a minute.
        let expected: Vec<(Labels, Vec<Sample>)> = (0..n)
            .map(|i| {
                let l = Labels::from_pairs([
                    ("__name__", "m"),
                    ("i", &format!("{i:03}")),
                    ("every20", if i % 20 == 0 { "y" } else { "n" }),
                ]);
                let first = (i % 3) as i64 * 120;
                let s = (first..420).map(|m| Sample::new(m * 60_000, (i * 1000) as f64 + m as f64));
                (l, s.collect())
            })
            .collect();
        for m in 0..7 {
            let series = expected
                .iter()
                .map(|(l, s)| SeriesSamples {
                    labels: l.clone(),
                    samples: s.iter().filter(|x| x.t / 3_600_000 == m).copied().collect(),
                })
                .filter(|s| !s.samples.is_empty())
                .collect();
            db.append(WriteBatch { tenant: tenant.clone(), series }).unwrap();
        }
        db.flush().unwrap();
        let hints = SelectHints { start: 0, end: i64::MAX };
        for (matcher, want) in [
            (Matcher::equal("__name__", "m"), n),
            (Matcher::equal("every20", "y"), n / 20),
            (Matcher::equal("every20", "n"), n - n / 20),
        ] {
            let got = db.select(&tenant, &hints, std::slice::from_ref(&matcher)).unwrap();
            assert_eq!(got.len(), want, "{matcher:?}");
            // Left encoded, the same series decode to the same samples.
            let lazy = db.select_chunks(&tenant, &hints, std::slice::from_ref(&matcher)).unwrap();
            assert!(lazy.iter().all(|s| matches!(s, SelectedSeries::Encoded(_))));
            let lazy: Vec<Series> = lazy.into_iter().map(|s| s.into_series().unwrap()).collect();
            assert_eq!(lazy, got, "{matcher:?}");
            // Ranges ending before a series' newest sample are decoded by the
            // storage, so series without a sample there are still omitted.
            let part = SelectHints { start: 0, end: 60 * 60_000 };
            let want_part = db.select(&tenant, &part, std::slice::from_ref(&matcher)).unwrap();
            let lazy = db.select_chunks(&tenant, &part, std::slice::from_ref(&matcher)).unwrap();
            let lazy: Vec<Series> = lazy.into_iter().map(|s| s.into_series().unwrap()).collect();
            assert_eq!(lazy, want_part, "{matcher:?} first hour");
            for s in got {
                let (_, samples) = expected.iter().find(|(l, _)| *l == s.labels).unwrap();
                assert_eq!(&s.samples, samples, "{:?}", s.labels);
            }
        }
    }
}
