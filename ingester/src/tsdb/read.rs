//! The read path. Under the head's read lock: postings give the matching
//! series, their open chunks are copied and a RocksDB snapshot is taken (so
//! head and persisted chunks are one consistent view). Outside the lock:
//! persisted chunks of the blocks in range are read by seeking
//! `block | ref` per series, and everything is decoded.

use super::{Inner, Tsdb};
use crate::error::{IngesterError, Result};
use crate::head::{Head, MemSeries};
use crate::keys::{
    block_start, chunk_prefix, parse_chunk_key, prefix_upper_bound, ts_bytes, BLOCK_MS, CF_CHUNKS,
    VALUE_VERSION,
};
use crate::series::{label_value, to_labels};
use aion_model::chunk::{ChunkSeries, XorIter};
use aion_model::labels::Labels;
use aion_model::matcher::Matcher;
use aion_model::sample::Sample;
use aion_model::storage::{Queryable, SelectHints, SelectedSeries, Series, StorageError};
use aion_model::tenant::TenantId;
use rocksdb::{ReadOptions, SnapshotWithThreadMode, DB};
use std::collections::{BTreeSet, HashMap};

/// A matching series with what is needed to read its samples.
struct Candidate {
    r: u64,
    labels: Labels,
    min_t: i64,
    max_t: i64,
    /// Open chunk (mint, bytes) when it may overlap the range.
    head: Option<(i64, Vec<u8>)>,
}

/// A persisted chunk read from the chunks CF.
struct StoredChunk {
    mint: i64,
    bytes: Vec<u8>,
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

fn decode_chunk(
    bytes: &[u8],
    what: impl Fn() -> String,
    hints: &SelectHints,
    out: &mut Vec<Sample>,
) -> Result<()> {
    XorIter::new(bytes)
        .decode_range_into(hints.start, hints.end, out)
        .map_err(|e| IngesterError::corrupt(what(), e.to_string()))
}

/// Keys of other series stepped over before seeking to the next wanted one
/// (a `next` costs a small fraction of a seek); after a seek was needed,
/// only [`MIN_SKIP_BEFORE_SEEK`] until stepping succeeds again.
const MAX_SKIP_BEFORE_SEEK: usize = 8;
const MIN_SKIP_BEFORE_SEEK: usize = 2;

/// Encoded selections of at least this many series read RocksDB on two threads.
const PARALLEL_READ_REFS: usize = 256;

/// Reads decoding at least this many chunk bytes use a second thread.
const PARALLEL_DECODE_BYTES: usize = 256 * 1024;

/// All samples in `hints` of one candidate: its persisted chunks, then its
/// open chunk, overlaps merged.
fn decode_series(c: &Candidate, stored: &[StoredChunk], hints: &SelectHints) -> Result<Vec<Sample>> {
    let head = c.head.as_ref().map(|(mint, bytes)| (*mint, bytes.as_slice()));
    let chunks = stored.iter().map(|ch| (ch.mint, ch.bytes.as_slice()));
    let all: Vec<(i64, &[u8], bool)> = chunks
        .map(|(m, b)| (m, b, false))
        .chain(head.map(|(m, b)| (m, b, true)))
        .collect();
    let capacity = all.iter().map(|(_, b, _)| XorIter::new(b).remaining()).sum();
    let mut samples = Vec::with_capacity(capacity);
    for (mint, bytes, open) in all {
        let what = || {
            let kind = if open { "open chunk" } else { "chunk" };
            format!("{kind} of series {} at {mint}", c.r)
        };
        decode_chunk(bytes, what, hints, &mut samples)?;
    }
    merge_overlaps(&mut samples);
    Ok(samples)
}

/// Runs `f` over `items[..mid]` on this thread and over `items[mid..]` on a
/// scoped second thread; a panic in the second is resumed here.
fn on_two_threads<T: Sync, R: Send>(
    items: &[T],
    mid: usize,
    f: impl Fn(&[T]) -> Result<R> + Sync,
) -> Result<(R, R)> {
    let (a, b) = items.split_at(mid.min(items.len()));
    std::thread::scope(|scope| {
        let second = scope.spawn(|| f(b));
        let first = f(a)?;
        match second.join() {
            Ok(rest) => Ok((first, rest?)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Chunks of one series normally follow each other in time. They overlap
/// when a restart replayed the WAL with other chunk boundaries than the run
/// that persisted them (e.g. `max_samples_per_chunk` changed): the replayed
/// chunk then repeats samples of persisted ones. Same timestamp means the same
/// sample (both come from the same WAL records), so sort by time and keep one.
fn merge_overlaps(samples: &mut Vec<Sample>) {
    if samples.windows(2).all(|w| w[0].t < w[1].t) {
        return;
    }
    samples.sort_by_key(|s| s.t);
    samples.dedup_by_key(|s| s.t);
}

/// The sorted refs of `cands` and the time span their chunks are read over.
fn refs_and_span(cands: &[Candidate], hints: &SelectHints) -> (Vec<u64>, i64, i64) {
    let mut refs: Vec<u64> = cands.iter().map(|c| c.r).collect();
    refs.sort_unstable();
    let lo = cands
        .iter()
        .map(|c| c.min_t)
        .min()
        .unwrap_or(i64::MAX)
        .max(hints.start);
    let hi = cands
        .iter()
        .map(|c| c.max_t)
        .max()
        .unwrap_or(i64::MIN)
        .min(hints.end);
    (refs, lo, hi)
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

    /// Persisted chunks of `refs` (sorted) overlapping `hints`, per series in time order.
    fn read_chunks(
        &self,
        snap: &SnapshotWithThreadMode<'_, DB>,
        refs: &[u64],
        lo: i64,
        hi: i64,
        hints: &SelectHints,
    ) -> Result<HashMap<u64, Vec<StoredChunk>>> {
        let mut out: HashMap<u64, Vec<StoredChunk>> = HashMap::new();
        self.visit_chunks(snap, refs, lo, hi, hints, |r, mint, bytes| {
            out.entry(r).or_default().push(StoredChunk {
                mint,
                bytes: bytes.to_vec(),
            })
        })?;
        Ok(out)
    }

    /// Calls `sink(ref, mint, chunk bytes)` for every persisted chunk of
    /// `refs` (sorted) overlapping `hints`: block by block, within a block
    /// in ref order, each series' chunks in time order.
    fn visit_chunks(
        &self,
        snap: &SnapshotWithThreadMode<'_, DB>,
        refs: &[u64],
        lo: i64,
        hi: i64,
        hints: &SelectHints,
        mut sink: impl FnMut(u64, i64, &[u8]),
    ) -> Result<()> {
        if refs.is_empty() || lo > hi {
            return Ok(());
        }
        let hi_block = block_start(hi);
        let mut ro = ReadOptions::default();
        if let Some(ub) = prefix_upper_bound(&ts_bytes(hi_block)) {
            ro.set_iterate_upper_bound(ub);
        }
        // With an upper bound RocksDB by default sizes a readahead on every
        // seek by probing the block cache for the blocks that follow; reads
        // here seek from series to series (and the blocks are cached), so
        // that probing is wasted work.
        ro.set_auto_readahead_size(false);
        let mut it = snap.raw_iterator_cf_opt(self.cf(CF_CHUNKS), ro);
        let mut block = block_start(lo);
        loop {
            // Jump over empty blocks: land on the first key at or after `block`.
            it.seek(ts_bytes(block));
            let Some((b, _, _)) = it.key().and_then(parse_chunk_key) else {
                break;
            };
            if b > hi_block {
                break;
            }
            block = b;
            let mut skip_budget = MAX_SKIP_BEFORE_SEEK;
            let mut prev: Option<u64> = None;
            for &r in refs {
                let prefix = chunk_prefix(block, r);
                // The iterator is on the first key after the previous ref's
                // chunks; a few `next`s usually reach `r` (or show it has no
                // chunks here) far cheaper than a seek. When more series than
                // the budget lie between the two refs, seek at once.
                let far = prev.is_some_and(|p| r - p > MAX_SKIP_BEFORE_SEEK as u64);
                prev = Some(r);
                let budget = if far { 0 } else { skip_budget };
                let mut skipped = 0;
                loop {
                    match it.key().map(parse_chunk_key) {
                        Some(Some((b, kr, _))) if b == block && kr < r => {
                            if skipped == budget {
                                it.seek(&prefix);
                                // Sparse refs: step less before seeking next time.
                                skip_budget = MIN_SKIP_BEFORE_SEEK;
                                break;
                            }
                            it.next();
                            skipped += 1;
                        }
                        // Not a chunk key: seek past it as a lookup would.
                        Some(None) => {
                            it.seek(&prefix);
                            break;
                        }
                        _ => {
                            skip_budget = MAX_SKIP_BEFORE_SEEK;
                            break;
                        }
                    }
                }
                while let (Some(k), Some(v)) = (it.key(), it.value()) {
                    if !k.starts_with(&prefix) {
                        break;
                    }
                    let Some((_, _, mint)) = parse_chunk_key(k) else {
                        break;
                    };
                    if v.len() < 9 || v[0] != VALUE_VERSION {
                        return Err(IngesterError::corrupt(
                            format!("chunk of series {r} at {mint}"),
                            format!("bad header ({} bytes)", v.len()),
                        ));
                    }
                    let maxt = i64::from_le_bytes(v[1..9].try_into().expect("BUG: slice of 8"));
                    if maxt >= hints.start && mint <= hints.end {
                        sink(r, mint, &v[9..]);
                    }
                    it.next();
                }
            }
            match block.checked_add(BLOCK_MS) {
                Some(n) if n <= hi_block => block = n,
                _ => break,
            }
        }
        it.status()
            .map_err(IngesterError::rocks("reading chunks"))
    }

    /// Decoded samples in `hints` for each candidate (in candidate order).
    fn read_samples(
        &self,
        snap: &SnapshotWithThreadMode<'_, DB>,
        cands: &[Candidate],
        hints: &SelectHints,
    ) -> Result<Vec<Vec<Sample>>> {
        let (refs, lo, hi) = refs_and_span(cands, hints);
        let mut stored = self.read_chunks(snap, &refs, lo, hi, hints)?;
        let jobs: Vec<(&Candidate, Vec<StoredChunk>)> = cands
            .iter()
            .map(|c| (c, stored.remove(&c.r).unwrap_or_default()))
            .collect();
        let bytes: usize = jobs
            .iter()
            .map(|(c, chunks)| {
                chunks.iter().map(|ch| ch.bytes.len()).sum::<usize>()
                    + c.head.as_ref().map_or(0, |h| h.1.len())
            })
            .sum();
        // Decoding is CPU-bound and independent per series: split big reads
        // over two threads (the order of the output is kept).
        let half = jobs.len().div_ceil(2);
        if bytes < PARALLEL_DECODE_BYTES || half == 0 {
            return jobs.iter().map(|(c, ch)| decode_series(c, ch, hints)).collect();
        }
        let (mut out, rest) = on_two_threads(&jobs, half, |part| {
            part.iter().map(|(c, ch)| decode_series(c, ch, hints)).collect::<Result<Vec<_>>>()
        })?;
        out.extend(rest);
        Ok(out)
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

    /// The persisted chunks of `refs` (sorted) overlapping `hints`, as one
    /// [`ChunkSeries`] per ref that has any (labels left empty). Many refs
    /// are read by two threads, each over half of them with its own
    /// iterator on the same snapshot: seeking and stepping through RocksDB is
    /// most of a large selection's storage time.
    fn chunks_by_ref(
        &self,
        snap: &SnapshotWithThreadMode<'_, DB>,
        refs: &[u64],
        lo: i64,
        hi: i64,
        hints: &SelectHints,
    ) -> Result<HashMap<u64, ChunkSeries>> {
        let read = |part: &[u64]| -> Result<HashMap<u64, ChunkSeries>> {
            let mut out: HashMap<u64, ChunkSeries> = HashMap::with_capacity(part.len());
            self.visit_chunks(snap, part, lo, hi, hints, |r, _, bytes| {
                out.entry(r)
                    .or_insert_with(|| ChunkSeries::new(Labels::empty(), hints.start, hints.end))
                    .push_chunk(bytes)
            })?;
            Ok(out)
        };
        if refs.len() < PARALLEL_READ_REFS {
            return read(refs);
        }
        let (mut out, rest) = on_two_threads(refs, refs.len() / 2, read)?;
        out.extend(rest);
        Ok(out)
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
