//! The persisted side of a read: walking the chunks column family span by
//! span for a sorted set of series refs (stepping over other series' keys
//! where that is cheaper than a seek), and decoding what was read — on two
//! threads when the read is large.

use super::{Candidate, Inner};
use crate::error::{IngesterError, Result};
use crate::keys::{
    block_start, chunk_key, chunk_prefix, parse_chunk_key, prefix_upper_bound, span_start,
    ts_bytes, CF_CHUNKS, VALUE_VERSION,
};
use aion_model::chunk::{decode_chunks_range_into, ChunkSeries, XorIter};
use aion_model::labels::Labels;
use aion_model::sample::Sample;
use aion_model::storage::SelectHints;
use rocksdb::{DBRawIteratorWithThreadMode, ReadOptions, SnapshotWithThreadMode, DB};
use std::collections::HashMap;

/// A persisted chunk read from the chunks CF.
struct StoredChunk {
    mint: i64,
    bytes: Vec<u8>,
}

/// Keys of other series stepped over before seeking to the next wanted one
/// (a `next` costs a small fraction of a seek); after a seek was needed,
/// only [`MIN_SKIP_BEFORE_SEEK`] until stepping succeeds again.
const MAX_SKIP_BEFORE_SEEK: usize = 8;
const MIN_SKIP_BEFORE_SEEK: usize = 2;

/// Encoded selections of at least this many series read RocksDB on two threads.
const PARALLEL_READ_REFS: usize = 32;

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
    decode_chunks_range_into(all.iter().map(|(_, b, _)| *b), hints.start, hints.end, &mut samples).map_err(|(i, e)| {
        let (mint, open) = all.get(i).map_or((0, false), |(m, _, open)| (*m, *open));
        let kind = if open { "open chunk" } else { "chunk" };
        IngesterError::corrupt(format!("{kind} of series {} at {mint}", c.r), e.to_string())
    })?;
    merge_overlaps(&mut samples);
    Ok(samples)
}

/// Runs `f` over `items[..mid]` on this thread and over `items[mid..]` on
/// a thread of rayon's pool (long-lived: no thread is created per read); a
/// panic in the second is resumed here once both are done.
fn on_two_threads<T: Sync, R: Send>(
    items: &[T],
    mid: usize,
    f: impl Fn(&[T]) -> Result<R> + Sync,
) -> Result<(R, R)> {
    let (a, b) = items.split_at(mid.min(items.len()));
    let mut second = None;
    let first = rayon::in_place_scope(|scope| {
        scope.spawn(|_| second = Some(f(b)));
        f(a)
    });
    let rest = second.expect("BUG: a rayon scope returns only after its spawned jobs ran");
    Ok((first?, rest?))
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

/// True when the open chunk holds every sample of the candidate in `hints`:
/// it starts at or before `hints.start`, and samples arrive in time order,
/// so all later ones are in it (persisted chunks hold older samples, or
/// copies of its own after a replay).
fn head_covers(c: &Candidate, hints: &SelectHints) -> bool {
    c.head.as_ref().is_some_and(|(mint, _)| *mint <= hints.start)
}

/// The sorted refs of `cands` whose persisted chunks are needed, and the
/// time span those are read over.
pub(super) fn refs_and_span(cands: &[Candidate], hints: &SelectHints) -> (Vec<u64>, i64, i64) {
    let cands: Vec<&Candidate> = cands.iter().filter(|c| !head_covers(c, hints)).collect();
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

/// From the iterator's position: the chunks of series `r` in `span`
/// that overlap `hints`, until its first chunk starting after them.
fn read_series_chunks(
    it: &mut DBRawIteratorWithThreadMode<'_, DB>,
    span: i64,
    r: u64,
    hints: &SelectHints,
    sink: &mut impl FnMut(u64, i64, &[u8]),
) -> Result<()> {
    let prefix = chunk_prefix(span, r);
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if !k.starts_with(&prefix) {
            break;
        }
        let Some((_, _, mint)) = parse_chunk_key(k) else {
            break;
        };
        if mint > hints.end {
            break;
        }
        if v.len() < 9 || v[0] != VALUE_VERSION {
            return Err(IngesterError::corrupt(
                format!("chunk of series {r} at {mint}"),
                format!("bad header ({} bytes)", v.len()),
            ));
        }
        let maxt = i64::from_le_bytes(v[1..9].try_into().expect("BUG: slice of 8"));
        if maxt >= hints.start {
            sink(r, mint, &v[9..]);
        }
        it.next();
    }
    Ok(())
}

impl Inner {
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
    /// `refs` (sorted) overlapping `hints`: span by span (see
    /// `keys::chunk_span_for`), within a span in ref order, each series'
    /// chunks in time order — one seek per series and span at most.
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
        let width = self.chunk_span();
        let hi_span = span_start(hi, width);
        let mut ro = ReadOptions::default();
        if let Some(ub) = prefix_upper_bound(&ts_bytes(hi_span)) {
            ro.set_iterate_upper_bound(ub);
        }
        // With an upper bound RocksDB by default sizes a readahead on every
        // seek by probing the block cache for the blocks that follow; reads
        // here seek from series to series (and the blocks are cached), so
        // that probing is wasted work.
        ro.set_auto_readahead_size(false);
        let mut it = snap.raw_iterator_cf_opt(self.cf(CF_CHUNKS), ro);
        // Chunks never cross a 2 h block: those of blocks before `lo`'s end
        // before `lo`, so a series' chunks are read from this block on.
        let first_block = block_start(lo);
        let mut span = span_start(lo, width);
        loop {
            // Jump over empty spans: land on the first key at or after `span`.
            it.seek(ts_bytes(span));
            let Some((s, _, _)) = it.key().and_then(parse_chunk_key) else {
                break;
            };
            if s > hi_span {
                break;
            }
            span = s;
            let from = first_block.max(span);
            let mut skip_budget = MAX_SKIP_BEFORE_SEEK;
            let mut prev: Option<u64> = None;
            for &r in refs {
                let target = chunk_key(span, r, from);
                // The iterator is on the first key after the previous ref's
                // chunks; a few `next`s usually reach `r` (or show it has no
                // chunks here) far cheaper than a seek. When more series than
                // the budget lie between the two refs, seek at once.
                let far = prev.is_some_and(|p| r - p > MAX_SKIP_BEFORE_SEEK as u64);
                prev = Some(r);
                let budget = if far { 0 } else { skip_budget };
                let mut skipped = 0;
                // Stepping reached `r`: allow the full budget again.
                skip_budget = MAX_SKIP_BEFORE_SEEK;
                while it.key().is_some_and(|k| k < &target[..]) {
                    if skipped == budget {
                        it.seek(target);
                        // Sparse refs: step less before seeking next time.
                        skip_budget = MIN_SKIP_BEFORE_SEEK;
                        break;
                    }
                    it.next();
                    skipped += 1;
                }
                read_series_chunks(&mut it, span, r, hints, &mut sink)?;
            }
            match span.checked_add(width) {
                Some(n) if n <= hi_span => span = n,
                _ => break,
            }
        }
        it.status()
            .map_err(IngesterError::rocks("reading chunks"))
    }

    /// Decoded samples in `hints` for each candidate (in candidate order).
    pub(super) fn read_samples(
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

    /// The persisted chunks of `refs` (sorted) overlapping `hints`, as one
    /// [`ChunkSeries`] per ref that has any (labels left empty). Many refs
    /// are read by two threads, each over half of them with its own
    /// iterator on the same snapshot: seeking and stepping through RocksDB is
    /// most of a large selection's storage time.
    pub(super) fn chunks_by_ref(
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
}
