//! Functions over range vectors (`rate`, `*_over_time`, ...): each output
//! series is computed from one input series, window by window, without
//! copying samples per step.

use super::aggregate::go_g;
use super::extended::{anchored_change, anchored_window, smoothed_change, ExtMode};
use super::selector::{decode_points, RangeInput};
use super::{Evaluator, Ser, Val};
use crate::engine::functions::range as k;
use crate::engine::EngineError;
use aion_model::chunk::ChunkSeries;
use aion_model::{Labels, Sample};
use promql_parser::parser::{Call, Expr};
use std::time::Instant;

/// True when `name` takes a range vector.
pub(crate) fn is_range_function(name: &str) -> bool {
    matches!(
        name,
        "rate"
            | "irate"
            | "increase"
            | "delta"
            | "idelta"
            | "deriv"
            | "predict_linear"
            | "resets"
            | "changes"
            | "avg_over_time"
            | "sum_over_time"
            | "min_over_time"
            | "max_over_time"
            | "count_over_time"
            | "last_over_time"
            | "first_over_time"
            | "present_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "mad_over_time"
            | "quantile_over_time"
            | "ts_of_min_over_time"
            | "ts_of_max_over_time"
            | "ts_of_last_over_time"
            | "ts_of_first_over_time"
            | "absent_over_time"
            | "double_exponential_smoothing"
            | "holt_winters"
    )
}

/// What a kernel sees besides the window's samples.
pub(super) struct KernelArgs {
    pub range_start: i64,
    pub range_end: i64,
    pub t: i64,
    pub s0: f64,
    pub s1: f64,
}

pub(super) type Kernel = fn(&[Sample], &KernelArgs) -> Result<Option<f64>, EngineError>;

/// The kernel of a range function, resolved once per call rather than per window.
pub(super) fn resolve_kernel(name: &str) -> Result<Kernel, EngineError> {
    Ok(match name {
        "rate" => |w, a| Ok(k::extrapolated_rate(w, a.range_start, a.range_end, true, true)),
        "increase" => |w, a| Ok(k::extrapolated_rate(w, a.range_start, a.range_end, true, false)),
        "delta" => |w, a| Ok(k::extrapolated_rate(w, a.range_start, a.range_end, false, false)),
        "irate" => |w, _| Ok(k::instant_rate(w, true)),
        "idelta" => |w, _| Ok(k::instant_rate(w, false)),
        "deriv" => |w, _| Ok(k::deriv(w)),
        "predict_linear" => |w, a| Ok(k::predict_linear(w, a.t, a.s0)),
        "resets" => |w, _| Ok(k::resets(w)),
        "changes" => |w, _| Ok(k::changes(w)),
        "avg_over_time" => |w, _| Ok(k::avg_over_time(w)),
        "sum_over_time" => |w, _| Ok(k::sum_over_time(w)),
        "min_over_time" => |w, _| Ok(k::min_over_time(w)),
        "max_over_time" => |w, _| Ok(k::max_over_time(w)),
        "count_over_time" => |w, _| Ok(k::count_over_time(w)),
        "last_over_time" => |w, _| Ok(k::last_over_time(w)),
        "first_over_time" => |w, _| Ok(k::first_over_time(w)),
        "present_over_time" => |w, _| Ok(k::present_over_time(w)),
        "stddev_over_time" => |w, _| Ok(k::stddev_over_time(w)),
        "stdvar_over_time" => |w, _| Ok(k::stdvar_over_time(w)),
        "mad_over_time" => |w, _| Ok(k::mad_over_time(w)),
        "quantile_over_time" => |w, a| Ok(k::quantile_over_time(a.s0, w)),
        "ts_of_min_over_time" => |w, _| Ok(k::ts_of_min_over_time(w)),
        "ts_of_max_over_time" => |w, _| Ok(k::ts_of_max_over_time(w)),
        "ts_of_last_over_time" => |w, _| Ok(k::ts_of_last_over_time(w)),
        "ts_of_first_over_time" => |w, _| Ok(k::ts_of_first_over_time(w)),
        "double_exponential_smoothing" | "holt_winters" => {
            |w, a| k::double_exponential_smoothing(w, a.s0, a.s1).map_err(|e| EngineError::Execution(e.to_string()))
        }
        other => return Err(EngineError::Execution(format!("function {other} is not supported"))),
    })
}

/// One series' output of a sweep.
struct Swept {
    labels: Labels,
    drop_name: bool,
    points: Result<Vec<Sample>, EngineError>,
    /// Samples decoded from chunks for it (0 when it came decoded).
    decoded: usize,
}

/// A range function's window geometry over every step, swept one series at
/// a time; holds no evaluator state, so series can be swept on several threads.
pub(super) struct WindowSweep<'a> {
    pub input: &'a RangeInput,
    pub scalars: &'a [Vec<f64>],
    pub start: i64,
    pub interval: i64,
    pub steps: usize,
    pub deadline: Instant,
}

impl WindowSweep<'_> {
    /// Applies `kernel` to every series (in parallel when `work` is large),
    /// freeing each input series as soon as its output is computed. An
    /// encoded series is decoded right there into the thread's buffer; the
    /// samples it decoded are returned with its output.
    /// `make` gives the kernel for one series' samples (a kernel may keep
    /// state from window to window of a series).
    fn all<K, M>(&self, series: Vec<(Ser, Option<ChunkSeries>)>, work: usize, make: M) -> Vec<Swept>
    where
        M: Fn(&[Sample]) -> K + Sync,
        K: FnMut(&[Sample], &KernelArgs) -> Result<Option<f64>, EngineError>,
    {
        super::parallel::par_map_with(series, work, Vec::new, |buf, (s, encoded)| {
            let (points, decoded) = match &encoded {
                None => (self.series(&s.points, &mut make(&s.points)), 0),
                Some(c) => match decode_points(c, buf) {
                    Ok(n) => (self.series(buf, &mut make(buf)), n),
                    Err(e) => (Err(e), 0),
                },
            };
            Swept { labels: s.labels, drop_name: s.drop_name, points, decoded }
        })
    }

    /// [`WindowSweep::all`] for a function computed over many windows of a
    /// series at once (`many(samples, windows, out)` appends one value per
    /// window; windows are never empty).
    fn all_many<F>(&self, series: Vec<(Ser, Option<ChunkSeries>)>, work: usize, many: F) -> Vec<Swept>
    where
        F: Fn(&[Sample], &[(usize, usize)], &mut Vec<f64>) + Sync,
    {
        let scratch = || (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        super::parallel::par_map_with(series, work, scratch, |(buf, steps, windows, values), (s, encoded)| {
            let (pts, decoded) = match &encoded {
                None => (&s.points, 0),
                Some(c) => match decode_points(c, buf) {
                    Ok(n) => (&*buf, n),
                    Err(e) => return Swept { labels: s.labels, drop_name: s.drop_name, points: Err(e), decoded: 0 },
                },
            };
            let points = self.windows(pts, steps, windows).map(|()| {
                values.clear();
                many(pts, windows, values);
                steps.iter().zip(values.iter()).map(|(&t, &v)| Sample { t, v }).collect()
            });
            Swept { labels: s.labels, drop_name: s.drop_name, points, decoded }
        })
    }

    /// The non-empty windows of `pts` over the steps: their step times into
    /// `steps` and their index ranges into `windows` (both cleared first).
    fn windows(&self, pts: &[Sample], steps: &mut Vec<i64>, windows: &mut Vec<(usize, usize)>) -> Result<(), EngineError> {
        steps.clear();
        windows.clear();
        self.each_window(pts, |_, t, lo, hi| {
            steps.push(t);
            windows.push((lo, hi));
            Ok(())
        })
    }

    /// The function's value at every step where the series `pts` has one.
    #[inline]
    fn series<K>(&self, pts: &[Sample], kernel: &mut K) -> Result<Vec<Sample>, EngineError>
    where
        K: FnMut(&[Sample], &KernelArgs) -> Result<Option<f64>, EngineError>,
    {
        // Each sample is in at most range / interval + 1 windows.
        let per_sample = (self.input.range / self.interval.max(1)).max(0) as usize + 1;
        let mut points = Vec::with_capacity(self.steps.min(pts.len().saturating_mul(per_sample)));
        self.each(pts, kernel, |_, t, v| points.push(Sample { t, v }))?;
        Ok(points)
    }

    /// Calls `sink(step index, step time, value)` for every step where the
    /// series `pts` has a value, in step order.
    #[inline]
    pub(super) fn each<K, S>(&self, pts: &[Sample], kernel: &mut K, mut sink: S) -> Result<(), EngineError>
    where
        K: FnMut(&[Sample], &KernelArgs) -> Result<Option<f64>, EngineError>,
        S: FnMut(usize, i64, f64),
    {
        let input = self.input;
        let sc = |j: usize, i: usize| self.scalars.get(j).map_or(0.0, |v| v[i]);
        self.each_window(pts, |i, t, lo, hi| {
            let end = input.window_end(t);
            let args = KernelArgs { range_start: end - input.range, range_end: end, t, s0: sc(0, i), s1: sc(1, i) };
            if let Some(v) = kernel(&pts[lo..hi], &args)? {
                sink(i, t, v);
            }
            Ok(())
        })
    }

    /// Calls `f(step index, step time, lo, hi)` for every step whose window
    /// `pts[lo..hi]` is not empty, in step order.
    #[inline]
    fn each_window<F>(&self, pts: &[Sample], mut f: F) -> Result<(), EngineError>
    where
        F: FnMut(usize, i64, usize, usize) -> Result<(), EngineError>,
    {
        if Instant::now() >= self.deadline {
            return Err(EngineError::Timeout("query execution".into()));
        }
        let input = self.input;
        let (mut lo, mut hi) = (0usize, 0usize);
        for i in 0..self.steps {
            let t = self.start + i as i64 * self.interval;
            let end = input.window_end(t);
            if input.at.is_some() {
                // The same window at every step.
                let start = pts.partition_point(|p| p.t <= end - input.range);
                hi = pts.partition_point(|p| p.t <= end);
                lo = start.min(hi);
            } else {
                // Window ends only move forward: slide instead of searching.
                while hi < pts.len() && pts[hi].t <= end {
                    hi += 1;
                }
                while lo < hi && pts[lo].t <= end - input.range {
                    lo += 1;
                }
            }
            if lo < hi {
                f(i, t, lo, hi)?;
            }
        }
        Ok(())
    }
}

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

impl Evaluator<'_> {
    /// Evaluates a range-vector function call.
    pub(crate) fn eval_range_call(&self, c: &Call) -> Result<Val, EngineError> {
        let name = c.func.name;
        let args = &c.args.args;
        let (matrix_idx, scalar_idx): (usize, Vec<usize>) = match name {
            "quantile_over_time" => (1, vec![0]),
            "predict_linear" => (0, vec![1]),
            "double_exponential_smoothing" | "holt_winters" => (0, vec![1, 2]),
            _ => (0, vec![]),
        };
        let scalars: Vec<Vec<f64>> =
            scalar_idx.iter().map(|&i| self.eval_scalar(&args[i])).collect::<Result<_, _>>()?;
        let marg = unwrap_parens(&args[matrix_idx]);
        let input = if name == "absent_over_time" { self.range_input(marg)? } else { self.range_input_lazy(marg)? };
        if let Some(mode) = input.mode {
            mode.check_function(name)?;
            return Ok(self.extended_range_call(name, mode, &input));
        }
        if name == "absent_over_time" {
            return Ok(self.absent_over_time(&input, marg));
        }
        self.check_range_args(c, &scalars, &input)?;
        self.sweep_range_call(c, &scalars, input)
    }

    /// The sweep of [`Evaluator::eval_range_call`] over an input already
    /// read (plain windows, arguments checked): one output series per input
    /// series with a value at some step.
    pub(super) fn sweep_range_call(&self, c: &Call, scalars: &[Vec<f64>], input: RangeInput) -> Result<Val, EngineError> {
        let name = c.func.name;
        let matrix_idx = usize::from(name == "quantile_over_time");
        let keep_name = matches!(name, "last_over_time" | "first_over_time");
        let mut input = input;
        let mut encoded = std::mem::take(&mut input.encoded).into_iter();
        let series: Vec<(Ser, Option<ChunkSeries>)> =
            std::mem::take(&mut input.series).into_iter().map(|s| (s, encoded.next().flatten())).collect();
        let sweep = WindowSweep {
            input: &input,
            scalars,
            start: self.start,
            interval: self.interval,
            steps: self.steps(),
            deadline: self.shared.deadline,
        };
        let samples = |(s, c): &(Ser, Option<ChunkSeries>)| c.as_ref().map_or(s.points.len(), ChunkSeries::max_samples);
        let work = series.iter().map(samples).sum::<usize>() + series.len() * sweep.steps;
        // The common functions get a sweep with the kernel inlined.
        let results = match name {
            "rate" | "increase" | "delta" => {
                let (is_counter, is_rate) = (name != "delta", name == "rate");
                sweep.all(series, work, |pts| {
                    let mut r = k::RateSweep::new(pts, is_counter, is_rate);
                    move |w: &[Sample], a: &KernelArgs| Ok(r.window(w, a.range_start, a.range_end))
                })
            }
            "avg_over_time" => sweep.all_many(series, work, k::avg_over_time_many),
            "max_over_time" => sweep.all(series, work, |_| |w: &[Sample], _: &KernelArgs| Ok(k::max_over_time(w))),
            _ => {
                let kernel = resolve_kernel(name)?;
                sweep.all(series, work, |_| kernel)
            }
        };
        self.add_samples(results.iter().map(|r| r.decoded).sum())?;
        let mut out = Vec::with_capacity(results.len());
        for Swept { labels, drop_name, points, .. } in results {
            let points = points?;
            if points.is_empty() {
                continue;
            }
            if matches!(name, "rate" | "increase") {
                self.non_counter_info(&labels, &self.pos(c, Some(matrix_idx)));
            }
            out.push(Ser { labels, drop_name: !keep_name || drop_name, points });
        }
        Ok(Val::Vector(out))
    }

    /// Warnings and errors about the scalar arguments of range functions.
    fn check_range_args(&self, c: &Call, scalars: &[Vec<f64>], input: &RangeInput) -> Result<(), EngineError> {
        let name = c.func.name;
        if name == "quantile_over_time" {
            if let Some(q) = scalars[0].iter().find(|q| !(0.0..=1.0).contains(*q)) {
                let pos = self.pos(c, Some(0));
                self.warn(format!("quantile value should be between 0 and 1, got {}{pos}", go_g(*q)));
            }
        }
        if matches!(name, "double_exponential_smoothing" | "holt_winters") && !input.series.is_empty() {
            for (sf, tf) in scalars[0].iter().zip(&scalars[1]) {
                k::check_smoothing_factors(*sf, *tf).map_err(|e| EngineError::Execution(e.to_string()))?;
            }
        }
        Ok(())
    }

    pub(super) fn non_counter_info(&self, l: &Labels, pos: &str) {
        if let Some(n) = l.metric_name() {
            if !["_total", "_sum", "_count", "_bucket"].iter().any(|s| n.ends_with(s)) {
                self.info(format!(
                    "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {n:?}{pos}"
                ));
            }
        }
    }

    /// `rate`, `increase`, `delta`, `changes`, `resets` over `anchored` or `smoothed` windows.
    fn extended_range_call(&self, name: &str, mode: ExtMode, input: &RangeInput) -> Val {
        let lookback = self.shared.lookback;
        let secs = input.range as f64 / 1000.0;
        let mut out = Vec::new();
        for s in &input.series {
            let mut points = Vec::new();
            for i in 0..self.steps() {
                let t = self.ts(i);
                let end = input.window_end(t);
                let start = end - input.range;
                let v = match mode {
                    ExtMode::Anchored => anchored_window(&s.points, start, end, lookback).and_then(|w| match name {
                        "rate" => Some(anchored_change(w, true) / secs),
                        "increase" => Some(anchored_change(w, true)),
                        "delta" => Some(anchored_change(w, false)),
                        "changes" => k::changes(w),
                        _ => k::resets(w),
                    }),
                    ExtMode::Smoothed => {
                        let counter = name != "delta";
                        smoothed_change(&s.points, start, end, lookback, counter).map(|d| {
                            if name == "rate" {
                                d / secs
                            } else {
                                d
                            }
                        })
                    }
                };
                if let Some(v) = v {
                    points.push(Sample::new(t, v));
                }
            }
            if !points.is_empty() {
                out.push(Ser { labels: s.labels.clone(), drop_name: true, points });
            }
        }
        Val::Vector(out)
    }

    /// `absent_over_time`: 1 at steps where no series has a sample in its window.
    fn absent_over_time(&self, input: &RangeInput, arg: &Expr) -> Val {
        let labels = match arg {
            Expr::MatrixSelector(ms) => super::call::absent_labels(&ms.vs),
            _ => Labels::empty(),
        };
        let mut points = Vec::new();
        for i in 0..self.steps() {
            let t = self.ts(i);
            let end = input.window_end(t);
            if !input.series.iter().any(|s| !input.window(&s.points, end).is_empty()) {
                points.push(Sample::new(t, 1.0));
            }
        }
        if points.is_empty() {
            return Val::Vector(Vec::new());
        }
        Val::Vector(vec![Ser { labels, drop_name: false, points }])
    }
}
