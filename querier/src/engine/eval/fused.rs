//! Aggregations straight over a range function of a selector, the shape of
//! most dashboard panels (`sum by (job) (rate(x[5m]))`): each group's member
//! series are decoded and swept one after the other and every window's value
//! goes straight into the group's per-step accumulator, so the function's
//! per-series output (as many points as the selection has samples) is never
//! materialised. Groups are folded in parallel; within a group, members are
//! added in input order, so every step sums in the same order as the
//! unfused evaluation and results are bit-identical.
//!
//! Too few groups to keep every core busy (`sum by (region)` into 3): for
//! `sum`, `count`, `min`, `max` and `group` each group's members are cut
//! into runs folded in parallel and merged in order (exact but for a sum's
//! last bit, like a sum pushed down over shards); the others sweep the
//! series in parallel and aggregate after, unfused.

use super::aggregate::group_key;
use super::call_range::{is_range_function, resolve_kernel, KernelArgs, WindowSweep};
use super::selector::{decode_points, ext_mode, RangeInput};
use super::step_cells::StepCells;
use super::{Evaluator, Ser, Val};
use crate::engine::functions::range as k;
use crate::engine::EngineError;
use aion_model::chunk::ChunkSeries;
use aion_model::{Labels, Sample};
use promql_parser::parser::token::*;
use promql_parser::parser::{AggregateExpr, Call, Expr, MatrixSelector};
use std::collections::HashMap;

mod pair;

pub(crate) use pair::shares_read;

/// Range functions whose only argument is the range vector.
fn fusable_function(name: &str) -> bool {
    is_range_function(name)
        && !matches!(
            name,
            "quantile_over_time" | "predict_linear" | "double_exponential_smoothing" | "holt_winters" | "absent_over_time"
        )
}

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

/// One group's result.
struct Folded {
    /// (first step with a value, first member with a value there): output order.
    first: (usize, usize),
    drop_name: bool,
    points: Vec<Sample>,
    /// Samples decoded for its members.
    decoded: usize,
    /// Members that had a value at some step, ascending.
    present: Vec<usize>,
}

impl Folded {
    /// A group with no member folded.
    fn empty() -> Self {
        Folded { first: (usize::MAX, usize::MAX), drop_name: false, points: Vec::new(), decoded: 0, present: Vec::new() }
    }
}

/// Sweeps and folds one group at a time.
struct GroupSweep<'a> {
    op: TokenId,
    sweep: WindowSweep<'a>,
    series: &'a [Ser],
    encoded: &'a [Option<ChunkSeries>],
    /// Whether the function drops the metric name (all but `last_over_time`/`first_over_time`).
    drop_name: bool,
}

impl GroupSweep<'_> {
    fn group<K, M>(&self, buf: &mut Vec<Sample>, members: &[usize], make: &M) -> Result<Folded, EngineError>
    where
        M: Fn(&[Sample]) -> K,
        K: FnMut(&[Sample], &KernelArgs) -> Result<Option<f64>, EngineError>,
    {
        let (cells, mut out) = self.fold(buf, members, make)?;
        out.points = cells.points(self.sweep.start, self.sweep.interval);
        Ok(out)
    }

    /// Folds `members` (one group's, or a contiguous run of them) into
    /// per-step accumulators; the [`Folded`] has no points yet.
    fn fold<K, M>(&self, buf: &mut Vec<Sample>, members: &[usize], make: &M) -> Result<(StepCells, Folded), EngineError>
    where
        M: Fn(&[Sample]) -> K,
        K: FnMut(&[Sample], &KernelArgs) -> Result<Option<f64>, EngineError>,
    {
        let mut cells = StepCells::new(self.op, self.sweep.steps);
        let mut out = Folded::empty();
        for &si in members {
            let pts: &[Sample] = match self.encoded.get(si).and_then(Option::as_ref) {
                Some(c) => {
                    out.decoded += decode_points(c, buf)?;
                    buf
                }
                None => &self.series[si].points,
            };
            let mut first_step = None;
            self.sweep.each(pts, &mut make(pts), |i, _, v| {
                first_step.get_or_insert(i);
                cells.add(i, v);
            })?;
            if let Some(step) = first_step {
                out.first = out.first.min((step, si));
                out.drop_name |= self.drop_name || self.series[si].drop_name;
                out.present.push(si);
            }
        }
        Ok((cells, out))
    }

    /// Every group (in parallel when `work` is large), in group order.
    fn all<K, M>(&self, members: Vec<Vec<usize>>, work: usize, make: M) -> Vec<Result<Folded, EngineError>>
    where
        M: Fn(&[Sample]) -> K + Sync,
        K: FnMut(&[Sample], &KernelArgs) -> Result<Option<f64>, EngineError>,
    {
        super::parallel::par_map_with(members, work, Vec::new, |buf, ms| self.group(buf, &ms, &make))
    }

    /// [`GroupSweep::all_split`] when `split`, else [`GroupSweep::all`].
    fn fold_groups<K, M>(&self, split: bool, members: Vec<Vec<usize>>, work: usize, make: M) -> Vec<Result<Folded, EngineError>>
    where
        M: Fn(&[Sample]) -> K + Sync,
        K: FnMut(&[Sample], &KernelArgs) -> Result<Option<f64>, EngineError>,
    {
        if split {
            self.all_split(members, work, make)
        } else {
            self.all(members, work, make)
        }
    }

    /// [`GroupSweep::all`] for groups too few to keep every core busy:
    /// each group's members are cut into contiguous runs, the runs of all
    /// groups are folded in parallel, and each group's runs are then merged
    /// in member order ([`StepCells::merge`]). Only for operators whose
    /// partial results merge ([`splits`]).
    fn all_split<K, M>(&self, members: Vec<Vec<usize>>, work: usize, make: M) -> Vec<Result<Folded, EngineError>>
    where
        M: Fn(&[Sample]) -> K + Sync,
        K: FnMut(&[Sample], &KernelArgs) -> Result<Option<f64>, EngineError>,
    {
        let groups = members.len();
        let runs = member_runs(members, SPLIT_RUNS_PER_CORE * super::parallel::cores());
        let folded = super::parallel::par_map_with(runs, work, Vec::new, |buf, (gi, ms)| (gi, self.fold(buf, &ms, &make)));
        let mut merged: Vec<Option<Result<(StepCells, Folded), EngineError>>> = (0..groups).map(|_| None).collect();
        for (gi, run) in folded {
            let Some(slot) = merged.get_mut(gi) else { continue };
            *slot = Some(match (slot.take(), run) {
                (None, run) => run,
                (Some(Err(e)), _) | (Some(Ok(_)), Err(e)) => Err(e),
                (Some(Ok((mut cells, mut f))), Ok((more, g))) => {
                    cells.merge(more);
                    f.first = f.first.min(g.first);
                    f.drop_name |= g.drop_name;
                    f.decoded += g.decoded;
                    f.present.extend(g.present);
                    Ok((cells, f))
                }
            });
        }
        let (start, interval) = (self.sweep.start, self.sweep.interval);
        merged
            .into_iter()
            .map(|m| {
                let (cells, mut f) = m.unwrap_or_else(|| Ok((StepCells::new(self.op, 0), Folded::empty())))?;
                f.points = cells.points(start, interval);
                Ok(f)
            })
            .collect()
    }
}

/// Runs of members folded per core when groups are split ([`GroupSweep::all_split`]).
const SPLIT_RUNS_PER_CORE: usize = 8;

/// True when `op`'s per-step results of runs of members merge into the
/// result of all of them: exactly for `count`, `min`, `max` and `group`;
/// `sum` as a compensated sum of the runs' compensated sums (the same to
/// within rounding of the last bit, as a pushed-down sum over shards).
fn splits(op: TokenId) -> bool {
    matches!(op, T_SUM | T_COUNT | T_MIN | T_MAX | T_GROUP)
}

/// Each group's members (ascending) cut into contiguous runs of about the
/// same length, about `runs` of them in all: (group index, run), in group
/// then member order.
fn member_runs(members: Vec<Vec<usize>>, runs: usize) -> Vec<(usize, Vec<usize>)> {
    let total: usize = members.iter().map(Vec::len).sum();
    let len = total.div_ceil(runs.max(1)).max(1);
    let mut out = Vec::new();
    for (gi, ms) in members.into_iter().enumerate() {
        out.extend(ms.chunks(len).map(|run| (gi, run.to_vec())));
    }
    out
}

/// What [`Evaluator::fused_range_agg`] did.
pub(crate) enum FusedAgg {
    /// The aggregation's result.
    Done(Vec<Ser>),
    /// Too few groups to fold in parallel: the aggregated expression's
    /// value, computed series-parallel from the selection already read (so
    /// the caller aggregates it the usual way without reading it again).
    Inner(Val),
    /// Not this shape: evaluate the usual way.
    No,
}

/// `f(selector[range])` of a fusable aggregation `a`: the call and its selector.
fn fusable_shape(a: &AggregateExpr) -> Option<(&Call, &MatrixSelector)> {
    let op = a.op.id();
    if a.param.is_some() || !matches!(op, T_SUM | T_AVG | T_MIN | T_MAX | T_COUNT | T_GROUP | T_STDDEV | T_STDVAR) {
        return None;
    }
    let Expr::Call(c) = unwrap_parens(&a.expr) else { return None };
    if !fusable_function(c.func.name) || c.args.args.len() != 1 {
        return None;
    }
    let Expr::MatrixSelector(ms) = unwrap_parens(&c.args.args[0]) else { return None };
    ext_mode(&ms.vs).is_none().then_some((c, ms))
}

/// Estimated cost of sweeping `input`: samples to look at plus steps per series.
fn sweep_work(input: &RangeInput, steps: usize) -> usize {
    let samples = |i: usize| match input.encoded.get(i).and_then(Option::as_ref) {
        Some(c) => c.max_samples(),
        None => input.series[i].points.len(),
    };
    (0..input.series.len()).map(samples).sum::<usize>() + input.series.len() * steps
}

/// True when `groups` are too few to fold in parallel for this much work
/// (runs of members are then folded in parallel, or series swept in
/// parallel, unless the query prefers folding group by group: see
/// `EngineOptions::prefer_fused`).
fn too_few_groups(prefer_fused: bool, groups: usize, work: usize) -> bool {
    !prefer_fused && groups < 4 * super::parallel::cores() && work >= super::parallel::MIN_PARALLEL_WORK
}

impl Evaluator<'_> {
    /// `op by|without (…) (f(selector[range]))` evaluated fused (see the
    /// module doc); see [`FusedAgg`] for the other outcomes.
    pub(crate) fn fused_range_agg(&self, a: &AggregateExpr) -> Result<FusedAgg, EngineError> {
        let op = a.op.id();
        let Some((c, _)) = fusable_shape(a) else { return Ok(FusedAgg::No) };
        let name = c.func.name;
        let mut input = self.range_input_lazy(&c.args.args[0])?;
        let (groups, members) = group_members(&input.series, a);
        let steps = self.steps();
        let work = sweep_work(&input, steps);
        let split = too_few_groups(self.shared.prefer_fused, groups.len(), work);
        if split && !splits(op) {
            return Ok(FusedAgg::Inner(self.sweep_range_call(c, &[], input)?));
        }
        let encoded = std::mem::take(&mut input.encoded);
        let series = std::mem::take(&mut input.series);
        let input = RangeInput { series: Vec::new(), encoded: Vec::new(), ..input };
        let gs = GroupSweep {
            op,
            sweep: WindowSweep {
                input: &input,
                scalars: &[],
                start: self.start,
                interval: self.interval,
                steps,
                deadline: self.shared.deadline,
            },
            series: &series,
            encoded: &encoded,
            drop_name: !matches!(name, "last_over_time" | "first_over_time"),
        };
        let folded = match name {
            "rate" | "increase" | "delta" => {
                let (is_counter, is_rate) = (name != "delta", name == "rate");
                gs.fold_groups(split, members, work, |pts| {
                    let mut r = k::RateSweep::new(pts, is_counter, is_rate);
                    move |w: &[Sample], a: &KernelArgs| Ok(r.window(w, a.range_start, a.range_end))
                })
            }
            _ => {
                let kernel = resolve_kernel(name)?;
                gs.fold_groups(split, members, work, |_| kernel)
            }
        };
        self.finish_fused(name, c, &series, groups, folded).map(FusedAgg::Done)
    }

    /// Accounts decoded samples, adds the annotations the unfused path
    /// gives, and orders the groups by first appearance.
    fn finish_fused(
        &self,
        name: &str,
        c: &Call,
        series: &[Ser],
        groups: Vec<Labels>,
        folded: Vec<Result<Folded, EngineError>>,
    ) -> Result<Vec<Ser>, EngineError> {
        let folded: Vec<Folded> = folded.into_iter().collect::<Result<_, _>>()?;
        self.add_samples(folded.iter().map(|f| f.decoded).sum())?;
        if matches!(name, "rate" | "increase") {
            let pos = self.pos(c, Some(0));
            let mut present: Vec<usize> = folded.iter().flat_map(|f| f.present.iter().copied()).collect();
            present.sort_unstable();
            for si in present {
                self.non_counter_info(&series[si].labels, &pos);
            }
        }
        let mut out: Vec<((usize, usize), Ser)> = groups
            .into_iter()
            .zip(folded)
            .filter(|(_, f)| !f.points.is_empty())
            .map(|(labels, f)| (f.first, Ser { labels, drop_name: f.drop_name, points: f.points }))
            .collect();
        out.sort_by_key(|(first, _)| *first);
        Ok(out.into_iter().map(|(_, s)| s).collect())
    }
}

/// The groups of `series` under `a`'s grouping (in order of first
/// appearance) and each group's members, ascending.
fn group_members(series: &[Ser], a: &AggregateExpr) -> (Vec<Labels>, Vec<Vec<usize>>) {
    let mut idx: HashMap<Labels, usize> = HashMap::new();
    let mut labels = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (si, s) in series.iter().enumerate() {
        let key = group_key(&s.labels, a.modifier.as_ref());
        let gi = *idx.entry(key).or_insert_with_key(|k| {
            labels.push(k.clone());
            members.push(Vec::new());
            labels.len() - 1
        });
        members[gi].push(si);
    }
    (labels, members)
}
