//! The in-memory head: every series (packed labels + head state), the
//! per-tenant inverted index, and the deterministic apply of a write batch.
//! Pure memory: what apply must persist is returned as [`ApplyWrites`].

mod ref_map;
mod series_table;
mod state;

pub(crate) use ref_map::U64Map;
pub(crate) use series_table::SeriesTable;
pub(crate) use state::{ClosedChunk, HeadState, Verdict};

use crate::postings::TenantIndex;
use crate::series::{packed_hash, packed_to_labels_lossy, same_labels, to_labels, Interner, PackedLabels};
use aion_model::hash::labels_hash;
use aion_model::labels::Labels;
use aion_model::sample::Sample;
use aion_model::storage::{AppendOutcome, SampleRejection, WriteBatch};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One series in memory.
pub(crate) struct MemSeries {
    /// Owner tenant.
    pub tenant: Arc<str>,
    /// Sorted labels, packed.
    pub labels: PackedLabels,
    /// Open chunk and last sample.
    pub state: HeadState,
}

/// What applying a batch must persist besides the WAL record.
#[derive(Default)]
pub(crate) struct ApplyWrites {
    /// Series created by the batch (their series CF and postings entries).
    pub new_series: Vec<u64>,
    /// Chunks cut by the batch.
    pub closed: Vec<ClosedChunk>,
    /// Samples not stored because their series was named by a ref that does
    /// not exist or belongs to another tenant ([`SeriesKey::Ref`]).
    pub bad_ref_samples: u64,
}

/// How an encoded series of a replicated write names its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeriesKey<'a> {
    /// By its labels in the packed form ([`PackedLabels`]).
    Packed(&'a [u8]),
    /// By its ref, which the leader found in its applied state.
    Ref(u64),
}

/// What a read-locked look-up found for one series of a batch before its WAL
/// record was written: its labels hash and, when it already exists, its ref.
/// Series never leave the head, so a ref found stays valid for the apply.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SeriesHint {
    /// [`labels_hash`] of the series' labels.
    pub hash: u64,
    /// The series' ref, when it existed at look-up time.
    pub r: Option<u64>,
}

/// The head of one TSDB.
pub(crate) struct Head {
    /// Every series by ref.
    pub series: SeriesTable,
    /// Index per tenant.
    pub tenants: HashMap<Arc<str>, TenantIndex>,
    interner: Interner,
    /// Next series ref to assign (refs start at 1).
    pub next_ref: u64,
    /// WAL sequence number of the last applied batch.
    pub applied_seq: u64,
    /// Newest timestamp stored in any series (retention is measured back from it).
    pub max_t: Option<i64>,
    /// Series with a non-empty open chunk.
    pub head_chunks: usize,
    max_per_chunk: usize,
    /// Reused buffer of [`packed_hash`].
    hash_scratch: Vec<u8>,
}

impl Head {
    /// An empty head cutting chunks at `max_per_chunk` samples.
    pub(crate) fn new(max_per_chunk: usize) -> Self {
        Self {
            series: SeriesTable::default(),
            tenants: HashMap::new(),
            interner: Interner::default(),
            next_ref: 1,
            applied_seq: 0,
            max_t: None,
            head_chunks: 0,
            max_per_chunk,
            hash_scratch: Vec::with_capacity(256),
        }
    }

    /// Adds a series loaded from the series CF (postings are loaded separately).
    pub(crate) fn load_series(&mut self, r: u64, tenant: &str, labels: &Labels) {
        let tenant = self.interner.intern(tenant);
        let packed = PackedLabels::new(labels);
        self.tenants
            .entry(tenant.clone())
            .or_default()
            .add_series(r, labels_hash(labels));
        self.series.insert(
            r,
            MemSeries {
                tenant,
                labels: packed,
                state: HeadState::default(),
            },
        );
        self.next_ref = self.next_ref.max(r + 1);
    }

    /// Adds a posting loaded from the postings CF.
    pub(crate) fn load_posting(&mut self, tenant: &str, name: &str, value: &str, r: u64) {
        let (t, n, v) = (
            self.interner.intern(tenant),
            self.interner.intern(name),
            self.interner.intern(value),
        );
        self.tenants.entry(t).or_default().add_posting(n, v, r);
    }

    /// Installs the head state of series `r` loaded from the head CF.
    /// Returns false when the series is unknown.
    pub(crate) fn load_state(&mut self, r: u64, state: HeadState) -> bool {
        let Some(s) = self.series.get_mut(&r) else {
            return false;
        };
        if s.state.chunk_len > 0 {
            self.head_chunks -= 1;
        }
        if state.chunk_len > 0 {
            self.head_chunks += 1;
        }
        if let Some(t) = state.max_t() {
            self.max_t = Some(self.max_t.map_or(t, |m| m.max(t)));
        }
        s.state = state;
        true
    }

    /// The ref of `(tenant, labels)`, if the series exists.
    #[cfg(test)]
    pub(crate) fn lookup(&self, tenant: &str, labels: &Labels) -> Option<u64> {
        self.lookup_hashed(self.tenants.get(tenant)?, labels_hash(labels), labels)
    }

    /// The ref of `labels` (whose hash is `hash`) in the tenant index `idx`.
    fn lookup_hashed(&self, idx: &TenantIndex, hash: u64, labels: &Labels) -> Option<u64> {
        idx.refs_with_hash(hash).find(|r| {
            self.series
                .get(r)
                .is_some_and(|s| same_labels(&s.labels, labels))
        })
    }

    /// Hashes and looks up every series of `batch` (under the read lock), so
    /// the WAL record can name known series by ref and the apply can skip
    /// the look-up. Series without samples get a default hint (they are skipped).
    pub(crate) fn resolve(&self, batch: &WriteBatch) -> Vec<SeriesHint> {
        let mut hints: Vec<SeriesHint> = batch
            .series
            .iter()
            .map(|s| SeriesHint {
                hash: if s.samples.is_empty() { 0 } else { labels_hash(&s.labels) },
                r: None,
            })
            .collect();
        let Some(idx) = self.tenants.get(batch.tenant.as_str()) else {
            return hints;
        };
        // Separate short passes (probe every hash, then check every
        // candidate) let the CPU overlap the cache misses of many series
        // instead of waiting for each series' misses in turn.
        for h in hints.iter_mut() {
            h.r = idx.first_with_hash(h.hash);
        }
        for (h, s) in hints.iter_mut().zip(&batch.series) {
            let Some(r) = h.r else { continue };
            if s.samples.is_empty() {
                h.r = None;
            } else if !self.series.get(&r).is_some_and(|m| same_labels(&m.labels, &s.labels)) {
                h.r = self.lookup_hashed(idx, h.hash, &s.labels);
            }
        }
        hints
    }

    /// The ref of `labels` (hash `hash`) for `tenant`, creating the series
    /// (ref `next_ref`) when it does not exist yet.
    fn get_or_create(
        &mut self,
        tenant: &str,
        hash: u64,
        labels: &Labels,
        writes: &mut ApplyWrites,
    ) -> u64 {
        if let Some(r) = self
            .tenants
            .get(tenant)
            .and_then(|idx| self.lookup_hashed(idx, hash, labels))
        {
            return r;
        }
        let r = self.next_ref;
        self.next_ref += 1;
        let tenant = self.interner.intern(tenant);
        let packed = PackedLabels::new(labels);
        let idx = self.tenants.entry(tenant.clone()).or_default();
        idx.add_series(r, hash);
        idx.add_postings(&mut self.interner, labels, r);
        self.series.insert(
            r,
            MemSeries {
                tenant,
                labels: packed,
                state: HeadState::default(),
            },
        );
        writes.new_series.push(r);
        r
    }

    /// Applies `batch` deterministically: creates missing series (refs in
    /// batch order), appends each sample under the ordering rules, and cuts
    /// full chunks into `writes`. `hints` (from [`Head::resolve`] on this
    /// head, one per series) save the look-ups; without them series are
    /// looked up by labels.
    pub(crate) fn apply(
        &mut self,
        batch: &WriteBatch,
        hints: Option<&[SeriesHint]>,
        writes: &mut ApplyWrites,
    ) -> AppendOutcome {
        let mut out = AppendOutcome::default();
        let tenant = batch.tenant.as_str();
        for (i, s) in batch.series.iter().enumerate() {
            if s.samples.is_empty() {
                continue;
            }
            let hint = hints.and_then(|h| h.get(i));
            let r = match hint {
                Some(SeriesHint { r: Some(r), .. }) if self.series.contains_key(r) => *r,
                Some(h) => self.get_or_create(tenant, h.hash, &s.labels, writes),
                None => self.get_or_create(tenant, labels_hash(&s.labels), &s.labels, writes),
            };
            self.append_samples(r, s.samples.iter().copied(), &mut out, writes);
        }
        out
    }

    /// The refs of the series of the tenant index `idx` whose packed labels
    /// are `packed` (`None`: no such series), found in passes (hash all,
    /// probe all, then compare) so the CPU overlaps the cache misses of many
    /// series instead of waiting for each in turn.
    pub(crate) fn lookup_packed_many(&self, idx: &TenantIndex, packed: &[&[u8]]) -> Vec<Option<u64>> {
        let mut scratch = Vec::with_capacity(256);
        let hashes: Vec<u64> = packed.iter().map(|p| packed_hash(p, &mut scratch)).collect();
        let mut out: Vec<Option<u64>> = hashes.iter().map(|&h| idx.first_with_hash(h)).collect();
        for ((o, p), &h) in out.iter_mut().zip(packed).zip(&hashes) {
            let Some(r) = *o else { continue };
            if self.series.get(&r).is_none_or(|s| s.labels.as_bytes() != *p) {
                *o = idx
                    .refs_with_hash(h)
                    .find(|r| self.series.get(r).is_some_and(|s| s.labels.as_bytes() == *p));
            }
        }
        out
    }

    /// Applies a batch of `tenant` whose series come as labels in the packed
    /// form ([`PackedLabels`]: sorted, unique, UTF-8, as a validated Raft
    /// batch holds them) or as refs, with their samples. Same result as
    /// [`Head::apply`] of the owned batch, but a known series costs a hash
    /// and a byte comparison, and a ref a table look-up: only a new series
    /// materialises its labels. A ref that does not exist or belongs to
    /// another tenant stores none of its samples (counted in
    /// [`ApplyWrites::bad_ref_samples`]); that depends only on the state,
    /// so every replica decides alike.
    pub(crate) fn apply_packed<'a, S: ExactSizeIterator<Item = Sample>>(
        &mut self,
        tenant: &str,
        series: impl Iterator<Item = (SeriesKey<'a>, S)>,
        writes: &mut ApplyWrites,
    ) -> AppendOutcome {
        let mut out = AppendOutcome::default();
        let mut scratch = std::mem::take(&mut self.hash_scratch);
        for (key, samples) in series {
            if samples.len() == 0 {
                continue;
            }
            let packed = match key {
                SeriesKey::Ref(r) => {
                    if self.series.get(&r).is_some_and(|s| &*s.tenant == tenant) {
                        self.append_samples(r, samples, &mut out, writes);
                    } else {
                        writes.bad_ref_samples += samples.len() as u64;
                    }
                    continue;
                }
                SeriesKey::Packed(p) => p,
            };
            let hash = packed_hash(packed, &mut scratch);
            let known = self.tenants.get(tenant).and_then(|idx| {
                idx.refs_with_hash(hash).find(|r| {
                    self.series
                        .get(r)
                        .is_some_and(|s| s.labels.as_bytes() == packed)
                })
            });
            let r = match known {
                Some(r) => r,
                None => {
                    let labels = packed_to_labels_lossy(packed);
                    self.get_or_create(tenant, hash, &labels, writes)
                }
            };
            self.append_samples(r, samples, &mut out, writes);
        }
        self.hash_scratch = scratch;
        out
    }

    /// Appends `samples` to series `r`, counting into `out`.
    fn append_samples(
        &mut self,
        r: u64,
        samples: impl IntoIterator<Item = Sample>,
        out: &mut AppendOutcome,
        writes: &mut ApplyWrites,
    ) {
        let series = self
            .series
            .get_mut(&r)
            .expect("BUG: series just looked up or created");
        let had_chunk = series.state.chunk_len > 0;
        for sample in samples {
            let (verdict, closed) = series.state.append(r, sample, self.max_per_chunk);
            writes.closed.extend(closed);
            match verdict {
                Verdict::Appended => {
                    out.appended += 1;
                    self.max_t = Some(self.max_t.map_or(sample.t, |m| m.max(sample.t)));
                }
                Verdict::Duplicate => out.duplicates_ignored += 1,
                Verdict::Rejected(reason) => out.rejected.push(SampleRejection {
                    labels: to_labels(&series.labels),
                    t: sample.t,
                    reason,
                }),
            }
        }
        if !had_chunk && series.state.chunk_len > 0 {
            self.head_chunks += 1;
        }
    }

    /// Labels of series `r`, rebuilt as an owned set (WAL replay of records
    /// that name series by ref).
    pub(crate) fn labels_of(&self, r: u64) -> Option<Labels> {
        self.series.get(&r).map(|s| to_labels(&s.labels))
    }

    /// Retention: drops open chunks in blocks before `cut_block`. Returns how many.
    pub(crate) fn drop_before(&mut self, cut_block: i64) -> usize {
        let mut dropped = 0;
        for s in self.series.values_mut() {
            if s.state.drop_before(cut_block) {
                dropped += 1;
            }
        }
        self.head_chunks -= dropped;
        dropped
    }

    /// Encodes the head record of every series changed since the last call
    /// and clears their dirty flags. Needs only `&self`: callers hold the read
    /// lock, which keeps appliers out while queries go on.
    #[cfg(test)]
    pub(crate) fn take_dirty(&self) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        for (r, s) in self.series.iter() {
            if s.state.dirty.swap(false, Ordering::Relaxed) {
                let mut buf = Vec::with_capacity(48 + s.state.chunk.bytes().len());
                s.state.encode(&mut buf);
                out.push((r, buf));
            }
        }
        out
    }

    /// Marks every series dirty again (after a failed checkpoint write).
    pub(crate) fn mark_all_dirty(&self) {
        for (_, s) in self.series.iter() {
            s.state.dirty.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aion_model::sample::Sample;
    use aion_model::storage::{RejectReason, SeriesSamples};
    use aion_model::tenant::TenantId;

    fn batch(tenant: &str, name: &str, samples: &[(i64, f64)]) -> WriteBatch {
        WriteBatch {
            tenant: TenantId::new(tenant).unwrap(),
            series: vec![SeriesSamples {
                labels: Labels::from_pairs([("__name__", name)]),
                samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
            }],
        }
    }

    #[test]
    fn apply_assigns_refs_per_tenant_and_keeps_valid_samples() {
        let mut h = Head::new(2);
        let mut w = ApplyWrites::default();
        let o = h.apply(
            &batch(
                "a",
                "up",
                &[(1, 1.0), (2, 1.0), (2, 1.0), (2, 3.0), (0, 1.0), (3, 1.0)],
            ),
            None,
            &mut w,
        );
        assert_eq!((o.appended, o.duplicates_ignored), (3, 1));
        let reasons: Vec<_> = o.rejected.iter().map(|r| (r.t, r.reason)).collect();
        assert_eq!(
            reasons,
            vec![
                (2, RejectReason::DuplicateTimestamp),
                (0, RejectReason::OutOfOrder)
            ]
        );
        assert_eq!(w.new_series, vec![1]);
        assert_eq!(w.closed.len(), 1);
        h.apply(&batch("b", "up", &[(1, 1.0)]), None, &mut w);
        assert_eq!(w.new_series, vec![1, 2]);
        let l = Labels::from_pairs([("__name__", "up")]);
        assert_eq!(
            (h.lookup("a", &l), h.lookup("b", &l), h.lookup("c", &l)),
            (Some(1), Some(2), None)
        );
        assert_eq!((h.head_chunks, h.max_t), (2, Some(3)));
        assert_eq!(h.take_dirty().len(), 2);
        assert!(h.take_dirty().is_empty());
    }

    #[test]
    fn resolve_finds_known_series_and_apply_uses_the_hints() {
        let mut h = Head::new(120);
        let mut w = ApplyWrites::default();
        let first = batch("a", "up", &[(1, 1.0)]);
        let hints = h.resolve(&first);
        assert_eq!(hints[0].r, None);
        assert_eq!(hints[0].hash, labels_hash(&first.series[0].labels));
        h.apply(&first, Some(&hints), &mut w);
        assert_eq!(w.new_series, vec![1]);

        let second = batch("a", "up", &[(2, 2.0)]);
        let hints = h.resolve(&second);
        assert_eq!(hints[0].r, Some(1));
        let o = h.apply(&second, Some(&hints), &mut w);
        assert_eq!((o.appended, w.new_series.len()), (1, 1), "no new series for a known ref");
        assert_eq!(h.series.get(&1).unwrap().state.last, Some(aion_model::sample::Sample::new(2, 2.0)));
        assert_eq!(h.labels_of(1), Some(first.series[0].labels.clone()));
        assert!(h.resolve(&batch("b", "up", &[(1, 1.0)]))[0].r.is_none(), "refs are per tenant");
    }

    #[test]
    fn packed_apply_matches_the_owned_apply() {
        let labels = |i: u32| Labels::from_pairs([("__name__", "m".to_string()), ("i", i.to_string())]);
        let mut owned = Head::new(3);
        let mut packed = Head::new(3);
        let mut scratch = Vec::new();
        for step in 0..5i64 {
            let series: Vec<SeriesSamples> = (0..4)
                .map(|i| SeriesSamples {
                    labels: labels(i),
                    // Series 3 re-sends an old sample from step 2 on (rejected).
                    samples: vec![Sample::new(if i == 3 && step > 1 { 0 } else { step * 10 }, i as f64)],
                })
                .collect();
            let b = WriteBatch { tenant: TenantId::new("t").unwrap(), series };
            let packs: Vec<PackedLabels> = b.series.iter().map(|s| PackedLabels::new(&s.labels)).collect();
            for (p, s) in packs.iter().zip(&b.series) {
                assert_eq!(packed_hash(p.as_bytes(), &mut scratch), labels_hash(&s.labels));
            }
            let (mut w1, mut w2) = (ApplyWrites::default(), ApplyWrites::default());
            let o1 = owned.apply(&b, None, &mut w1);
            let iter = packs
                .iter()
                .zip(&b.series)
                .map(|(p, s)| (SeriesKey::Packed(p.as_bytes()), s.samples.clone().into_iter()));
            let o2 = packed.apply_packed("t", iter, &mut w2);
            assert_eq!(o1, o2, "step {step}");
            assert_eq!((w1.new_series, w1.closed.len()), (w2.new_series, w2.closed.len()));
        }
        assert_eq!(packed.series.len(), 4);
        assert_eq!(packed.labels_of(4), Some(labels(3)));
        assert_eq!((packed.head_chunks, packed.max_t), (owned.head_chunks, owned.max_t));
    }

    #[test]
    fn refs_apply_directly_and_bad_refs_store_nothing() {
        let mut h = Head::new(120);
        let mut w = ApplyWrites::default();
        h.apply(&batch("a", "up", &[(1, 1.0)]), None, &mut w);
        h.apply(&batch("b", "up", &[(1, 1.0)]), None, &mut w);
        let up = PackedLabels::new(&Labels::from_pairs([("__name__", "up")]));
        let idx = h.tenants.get("a").unwrap();
        let down = PackedLabels::new(&Labels::from_pairs([("__name__", "down")]));
        assert_eq!(h.lookup_packed_many(idx, &[down.as_bytes(), up.as_bytes()]), vec![None, Some(1)]);
        let one = |t| std::iter::once(Sample::new(t, 2.0));
        let mut w = ApplyWrites::default();
        let keys = [(SeriesKey::Ref(1), one(5)), (SeriesKey::Ref(2), one(5)), (SeriesKey::Ref(99), one(5))];
        let o = h.apply_packed("a", keys.into_iter(), &mut w);
        assert_eq!((o.appended, w.bad_ref_samples, w.new_series.len()), (1, 2, 0), "ref 2 is tenant b's");
        assert_eq!(h.series.get(&1).unwrap().state.last, Some(Sample::new(5, 2.0)));
        assert_eq!(h.series.get(&2).unwrap().state.last, Some(Sample::new(1, 1.0)));
    }
}
