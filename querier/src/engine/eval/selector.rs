//! Vector and matrix selectors: one storage fetch per selector for the whole
//! query range, then per-step lookups over the fetched samples.

use super::extended::{smoothed_value, ExtMode, EXT_MARKER};
use super::{Evaluator, Ser, Val};
use crate::engine::EngineError;
use aion_model::sample::{is_stale_nan, STALE_NAN_BITS};
use aion_model::chunk::ChunkSeries;
use aion_model::storage::{SelectHints, SelectedSeries, Series, StorageError};
use aion_model::{MatchOp, Matcher, Sample};
use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher};
use promql_parser::parser::{Expr, VectorSelector};
use std::collections::BTreeMap;

/// Series of a range input with the window geometry for every step.
pub(crate) struct RangeInput {
    /// Series with their samples (stale markers removed), sorted by time.
    pub series: Vec<Ser>,
    /// Only from [`Evaluator::range_input_lazy`]: where `encoded[i]` is set,
    /// series `i`'s samples are still these chunks (its `points` are empty)
    /// and are decoded with [`decode_points`] where they are swept. Empty
    /// when every series is decoded.
    pub encoded: Vec<Option<ChunkSeries>>,
    /// Window length, ms.
    pub range: i64,
    /// Offset, ms.
    pub offset: i64,
    /// `@` time, ms.
    pub at: Option<i64>,
    /// `anchored` / `smoothed`, for matrix selectors.
    pub mode: Option<ExtMode>,
}

impl RangeInput {
    /// Window end for evaluation step time `t`.
    pub fn window_end(&self, t: i64) -> i64 {
        self.at.unwrap_or(t) - self.offset
    }

    /// The samples of `s` in the left-open window ending at `end`.
    pub fn window<'s>(&self, s: &'s [Sample], end: i64) -> &'s [Sample] {
        let lo = s.partition_point(|p| p.t <= end - self.range);
        let hi = s.partition_point(|p| p.t <= end);
        &s[lo..hi.max(lo)]
    }
}

/// Decodes `c` into `buf` without staleness markers (a range input's
/// points); returns how many samples were decoded (markers included), which
/// is what counts against the samples limit.
pub(crate) fn decode_points(c: &ChunkSeries, buf: &mut Vec<Sample>) -> Result<usize, EngineError> {
    c.decode_into(buf).map_err(|e| EngineError::Storage(StorageError::Corruption(e.to_string())))?;
    let n = buf.len();
    drop_stale(buf);
    Ok(n)
}

/// Removes staleness markers; they are rare, so only a series that has
/// one is rewritten.
fn drop_stale(points: &mut Vec<Sample>) {
    if points.iter().any(|p| p.v.to_bits() == STALE_NAN_BITS) {
        points.retain(|p| p.v.to_bits() != STALE_NAN_BITS);
    }
}

pub(crate) fn convert_matcher(m: &PMatcher) -> Result<Matcher, EngineError> {
    let op = match m.op {
        PMatchOp::Equal => MatchOp::Equal,
        PMatchOp::NotEqual => MatchOp::NotEqual,
        PMatchOp::Re(_) => MatchOp::Regex,
        PMatchOp::NotRe(_) => MatchOp::NotRegex,
    };
    Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| EngineError::Parse(e.to_string()))
}

/// The matcher sets of a selector (several when it uses `or`).
pub(super) fn matcher_sets(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, EngineError> {
    let base: Vec<Matcher> = match &vs.name {
        Some(n) if !vs.matchers.matchers.iter().any(|m| m.name == "__name__") => vec![Matcher::equal("__name__", n)],
        _ => Vec::new(),
    };
    let conv = |ms: &[PMatcher]| -> Result<Vec<Matcher>, EngineError> {
        let mut out = base.clone();
        for m in ms.iter().filter(|m| m.name != EXT_MARKER) {
            out.push(convert_matcher(m)?);
        }
        Ok(out)
    };
    if vs.matchers.or_matchers.is_empty() {
        Ok(vec![conv(&vs.matchers.matchers)?])
    } else {
        vs.matchers.or_matchers.iter().map(|g| conv(g)).collect()
    }
}

/// The `anchored`/`smoothed` modifier of a selector, if any.
pub(crate) fn ext_mode(vs: &VectorSelector) -> Option<ExtMode> {
    vs.matchers.matchers.iter().find(|m| m.name == EXT_MARKER).and_then(|m| ExtMode::from_marker(&m.value))
}

impl Evaluator<'_> {
    /// Fetches the series of `vs` with samples in `lo..=hi`.
    pub(crate) fn fetch(&self, vs: &VectorSelector, lo: i64, hi: i64) -> Result<Vec<Series>, EngineError> {
        self.check_deadline()?;
        let hints = SelectHints { start: lo, end: hi };
        let sets = matcher_sets(vs)?;
        let mut out: Vec<Series> = Vec::new();
        if sets.len() == 1 {
            out = self.storage.select(self.tenant, &hints, &sets[0])?;
        } else {
            let mut merged: BTreeMap<aion_model::Labels, Vec<Sample>> = BTreeMap::new();
            for set in &sets {
                for s in self.storage.select(self.tenant, &hints, set)? {
                    merged.entry(s.labels).or_insert(s.samples);
                }
            }
            out.extend(merged.into_iter().map(|(labels, samples)| Series { labels, samples }));
        }
        self.add_samples(out.iter().map(|s| s.samples.len()).sum())?;
        Ok(out)
    }

    /// Like [`Evaluator::fetch`], but series may stay encoded (see
    /// [`aion_model::storage::Queryable::select_chunks`]); only the decoded
    /// ones are counted against the samples limit here.
    fn fetch_chunks(&self, vs: &VectorSelector, lo: i64, hi: i64) -> Result<Vec<SelectedSeries>, EngineError> {
        let sets = matcher_sets(vs)?;
        if sets.len() != 1 {
            return Ok(self.fetch(vs, lo, hi)?.into_iter().map(SelectedSeries::Decoded).collect());
        }
        self.check_deadline()?;
        let out = self.storage.select_chunks(self.tenant, &SelectHints { start: lo, end: hi }, &sets[0])?;
        let decoded = out.iter().map(|s| match s {
            SelectedSeries::Decoded(s) => s.samples.len(),
            SelectedSeries::Encoded(_) => 0,
        });
        self.add_samples(decoded.sum())?;
        Ok(out)
    }

    /// Range of reference times (`@`/offset applied) over all steps.
    fn ref_range(&self, at: Option<i64>, offset: i64) -> (i64, i64) {
        match at {
            Some(a) => (a - offset, a - offset),
            None => (self.start - offset, self.end - offset),
        }
    }

    /// An instant vector selector: the newest sample within the lookback window of each step.
    pub(crate) fn eval_vector_selector(&self, vs: &VectorSelector) -> Result<Val, EngineError> {
        Ok(Val::Vector(self.select_instant(vs, false)?))
    }

    /// Like a vector selector, but each value is its sample's timestamp in seconds.
    pub(crate) fn eval_selector_timestamps(&self, vs: &VectorSelector) -> Result<Vec<Ser>, EngineError> {
        self.select_instant(vs, true)
    }

    fn select_instant(&self, vs: &VectorSelector, want_ts: bool) -> Result<Vec<Ser>, EngineError> {
        let at = self.at_ms(&vs.at);
        let offset = Self::offset_ms(&vs.offset);
        let (lo, hi) = self.ref_range(at, offset);
        let lookback = self.shared.lookback;
        if ext_mode(vs) == Some(ExtMode::Smoothed) {
            return self.select_smoothed(vs, at, offset);
        }
        let fetched = self.fetch(vs, lo - lookback + 1, hi)?;
        let (steps, start, interval, deadline) = (self.steps(), self.start, self.interval, self.shared.deadline);
        let work = fetched.iter().map(|s| s.samples.len()).sum::<usize>() + fetched.len() * steps;
        let per_series = |s: Series| -> Result<Option<Ser>, EngineError> {
            if std::time::Instant::now() >= deadline {
                return Err(EngineError::Timeout("query execution".into()));
            }
            let mut points = Vec::with_capacity(steps.min(s.samples.len().saturating_mul(2)));
            let mut j = 0usize; // first sample with t > ref (when refs increase)
            for i in 0..steps {
                let t = start + i as i64 * interval;
                let r = at.unwrap_or(t) - offset;
                if at.is_some() {
                    j = s.samples.partition_point(|p| p.t <= r);
                } else {
                    while j < s.samples.len() && s.samples[j].t <= r {
                        j += 1;
                    }
                }
                if j == 0 {
                    continue;
                }
                let p = s.samples[j - 1];
                if p.t > r - lookback && !is_stale_nan(p.v) {
                    points.push(Sample::new(t, if want_ts { p.t as f64 / 1000.0 } else { p.v }));
                }
            }
            Ok((!points.is_empty()).then_some(Ser { labels: s.labels, drop_name: false, points }))
        };
        let results = super::parallel::par_map(fetched, work, per_series);
        let mut out = Vec::with_capacity(results.len());
        for s in results {
            out.extend(s?);
        }
        Ok(out)
    }

    /// A `smoothed` instant selector: values interpolated at each step.
    fn select_smoothed(&self, vs: &VectorSelector, at: Option<i64>, offset: i64) -> Result<Vec<Ser>, EngineError> {
        let (lo, hi) = self.ref_range(at, offset);
        let lookback = self.shared.lookback;
        let mut out = Vec::new();
        for s in self.fetch(vs, lo - lookback + 1, hi + lookback)? {
            let mut samples = s.samples;
            samples.retain(|p| !is_stale_nan(p.v));
            let points: Vec<Sample> = (0..self.steps())
                .filter_map(|i| {
                    let t = self.ts(i);
                    smoothed_value(&samples, at.unwrap_or(t) - offset, lookback).map(|v| Sample::new(t, v))
                })
                .collect();
            if !points.is_empty() {
                out.push(Ser { labels: s.labels, drop_name: false, points });
            }
        }
        Ok(out)
    }

    /// Fetches a matrix selector's data for every step of this evaluator;
    /// with `lazy`, series may stay encoded (see [`RangeInput::encoded`]).
    pub(crate) fn range_input_selector(&self, vs: &VectorSelector, range: i64, lazy: bool) -> Result<RangeInput, EngineError> {
        let at = self.at_ms(&vs.at);
        let offset = Self::offset_ms(&vs.offset);
        let (lo, hi) = self.ref_range(at, offset);
        let mode = ext_mode(vs);
        // Extended windows look one lookback beyond their edges.
        let ext = if mode.is_some() { self.shared.lookback } else { 0 };
        let (lo, hi) = (lo - range - ext + 1, hi + ext);
        let mut input = RangeInput { series: Vec::new(), encoded: Vec::new(), range, offset, at, mode };
        if !lazy || mode.is_some() {
            input.series = self
                .fetch(vs, lo, hi)?
                .into_iter()
                .map(|s| {
                    let mut points = s.samples;
                    drop_stale(&mut points);
                    Ser { labels: s.labels, drop_name: false, points }
                })
                .collect();
            return Ok(input);
        }
        let fetched = self.fetch_chunks(vs, lo, hi)?;
        input.series.reserve(fetched.len());
        for s in fetched {
            match s {
                SelectedSeries::Decoded(s) => {
                    let mut points = s.samples;
                    drop_stale(&mut points);
                    input.series.push(Ser { labels: s.labels, drop_name: false, points });
                    input.encoded.push(None);
                }
                SelectedSeries::Encoded(mut c) => {
                    let labels = std::mem::take(&mut c.labels);
                    input.series.push(Ser { labels, drop_name: false, points: Vec::new() });
                    input.encoded.push(Some(c));
                }
            }
        }
        if input.encoded.iter().all(Option::is_none) {
            input.encoded.clear();
        }
        Ok(input)
    }

    /// The data of a range argument (matrix selector or subquery), all steps.
    pub(crate) fn range_input(&self, e: &Expr) -> Result<RangeInput, EngineError> {
        match e {
            Expr::MatrixSelector(ms) => self.range_input_selector(&ms.vs, ms.range.as_millis() as i64, false),
            Expr::Subquery(sq) => self.range_input_subquery(sq),
            Expr::Paren(p) => self.range_input(&p.expr),
            other => Err(EngineError::Execution(format!("expected a range vector, got {other}"))),
        }
    }

    /// [`Evaluator::range_input`] for a caller that sweeps it with
    /// [`decode_points`]: a matrix selector's series may stay encoded.
    pub(crate) fn range_input_lazy(&self, e: &Expr) -> Result<RangeInput, EngineError> {
        match e {
            Expr::MatrixSelector(ms) => self.range_input_selector(&ms.vs, ms.range.as_millis() as i64, true),
            Expr::Paren(p) => self.range_input_lazy(&p.expr),
            other => self.range_input(other),
        }
    }

    /// A range vector as a value: only at a single step (instant queries).
    pub(crate) fn eval_matrix_at_step(&self, e: &Expr) -> Result<Val, EngineError> {
        if self.start != self.end {
            return Err(EngineError::Execution(
                "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
            ));
        }
        let input = self.range_input(e)?;
        let end = input.window_end(self.start);
        let series = input
            .series
            .iter()
            .filter_map(|s| {
                let w = input.window(&s.points, end);
                (!w.is_empty()).then(|| Ser { labels: s.labels.clone(), drop_name: s.drop_name, points: w.to_vec() })
            })
            .collect();
        Ok(Val::Matrix(series))
    }
}
