//! A binary operation between two aggregations of one range function whose
//! selections nest — one selector has every matcher of the other, and more
//! (`sum by (job) (rate(x{code=~"5.."}[5m])) / sum by (job) (rate(x[5m]))`,
//! the error-ratio panel): the wider selection is read, decoded and swept
//! once, and every window value goes to its group on each side whose
//! selection holds the series. Both sides group by the same labels, so a
//! series' group is the same on both; each side's groups add their members
//! in input order (the narrower selection is the wider one filtered, in the
//! same label order), exactly as evaluating the sides apart does, so the
//! results are bit-identical.

use super::super::selector::{decode_points, matcher_sets};
use super::super::step_cells::StepCells;
use super::super::{Evaluator, Val};
use super::{fusable_shape, group_members, sweep_work, too_few_groups, unwrap_parens, Folded, GroupSweep};
use crate::engine::eval::call_range::{resolve_kernel, KernelArgs, WindowSweep};
use crate::engine::functions::range as k;
use crate::engine::EngineError;
use aion_model::matcher::Matcher;
use aion_model::Sample;
use promql_parser::parser::token::TokenId;
use promql_parser::parser::{AggregateExpr, BinaryExpr, Call, Expr};

/// Two nested fusable aggregations: which side reads, and what the other adds.
struct Plan<'e> {
    /// `[lhs, rhs]`.
    aggs: [&'e AggregateExpr; 2],
    calls: [&'e Call; 2],
    /// Index (0 = lhs) of the side with the wider selection.
    base: usize,
    /// The narrower side's matchers that the wider one lacks.
    extra: Vec<Matcher>,
}

/// The single matcher set of a selector (`None` for `or` sets).
fn one_set(e: &Expr) -> Result<Option<Vec<Matcher>>, EngineError> {
    let Expr::MatrixSelector(ms) = unwrap_parens(e) else { return Ok(None) };
    let mut sets = matcher_sets(&ms.vs)?;
    Ok((sets.len() == 1).then(|| sets.remove(0)))
}

fn plan(b: &BinaryExpr) -> Result<Option<Plan<'_>>, EngineError> {
    let (Expr::Aggregate(la), Expr::Aggregate(ra)) = (unwrap_parens(&b.lhs), unwrap_parens(&b.rhs)) else {
        return Ok(None);
    };
    let (Some((lc, lms)), Some((rc, rms))) = (fusable_shape(la), fusable_shape(ra)) else { return Ok(None) };
    let same = lc.func.name == rc.func.name
        && lms.range == rms.range
        && lms.vs.offset == rms.vs.offset
        && lms.vs.at == rms.vs.at
        && la.modifier == ra.modifier;
    if !same {
        return Ok(None);
    }
    let (Some(lm), Some(rm)) = (one_set(&lc.args.args[0])?, one_set(&rc.args.args[0])?) else { return Ok(None) };
    let has_all = |wide: &[Matcher], narrow: &[Matcher]| wide.iter().all(|m| narrow.contains(m));
    let (base, extra) = if has_all(&lm, &rm) {
        (0, rm.into_iter().filter(|m| !lm.contains(m)).collect())
    } else if has_all(&rm, &lm) {
        (1, lm.into_iter().filter(|m| !rm.contains(m)).collect())
    } else {
        return Ok(None);
    };
    Ok(Some(Plan { aggs: [la, ra], calls: [lc, rc], base, extra }))
}

/// True when `b`'s operands are two aggregations of one range function
/// over nested selections, which one read answers ([`Evaluator::fused_pair`]).
pub(crate) fn shares_read(b: &BinaryExpr) -> bool {
    matches!(plan(b), Ok(Some(_)))
}

/// Both sides' results of one group.
struct PairFolded {
    base: Folded,
    other: Folded,
}

impl GroupSweep<'_> {
    /// [`GroupSweep::group`] for both sides at once: `in_other[si]` says
    /// whether series `si` is in the narrower selection too.
    fn group_pair<K, M>(
        &self,
        buf: &mut Vec<Sample>,
        members: &[usize],
        make: &M,
        in_other: &[bool],
        other_op: TokenId,
    ) -> Result<PairFolded, EngineError>
    where
        M: Fn(&[Sample]) -> K,
        K: FnMut(&[Sample], &KernelArgs) -> Result<Option<f64>, EngineError>,
    {
        let steps = self.sweep.steps;
        let mut cells = [StepCells::new(self.op, steps), StepCells::new(other_op, steps)];
        let empty = || Folded { first: (usize::MAX, usize::MAX), drop_name: false, points: Vec::new(), decoded: 0, present: Vec::new() };
        let mut out = [empty(), empty()];
        for &si in members {
            let (pts, decoded): (&[Sample], usize) = match self.encoded.get(si).and_then(Option::as_ref) {
                Some(c) => {
                    let n = decode_points(c, buf)?;
                    (buf, n)
                }
                None => (&self.series[si].points, 0),
            };
            let sides = if in_other[si] { 2 } else { 1 };
            let mut first_step = None;
            self.sweep.each(pts, &mut make(pts), |i, _, v| {
                first_step.get_or_insert(i);
                for side in cells.iter_mut().take(sides) {
                    side.add(i, v);
                }
            })?;
            for o in out.iter_mut().take(sides) {
                o.decoded += decoded;
                if let Some(step) = first_step {
                    o.first = o.first.min((step, si));
                    o.drop_name |= self.drop_name || self.series[si].drop_name;
                    o.present.push(si);
                }
            }
        }
        for (o, c) in out.iter_mut().zip(&cells) {
            o.points = c.points(self.sweep.start, self.sweep.interval);
        }
        let [base, other] = out;
        Ok(PairFolded { base, other })
    }
}

/// Every group of both sides (groups in parallel when `work` is large), in group order.
fn fold_all<K, M>(
    gs: &GroupSweep<'_>,
    members: Vec<Vec<usize>>,
    work: usize,
    in_other: &[bool],
    other_op: TokenId,
    make: M,
) -> Vec<Result<PairFolded, EngineError>>
where
    M: Fn(&[Sample]) -> K + Sync,
    K: FnMut(&[Sample], &KernelArgs) -> Result<Option<f64>, EngineError>,
{
    super::super::parallel::par_map_with(members, work, Vec::new, |buf, ms| gs.group_pair(buf, &ms, &make, in_other, other_op))
}

impl Evaluator<'_> {
    /// Both operands of `b` from one read when they are two aggregations of
    /// one range function over nested selections (see the module doc);
    /// `None` when `b` has another shape.
    pub(crate) fn fused_pair(&self, b: &BinaryExpr) -> Result<Option<(Val, Val)>, EngineError> {
        let Some(p) = plan(b)? else { return Ok(None) };
        // A store that pushes aggregations down answers a side for less
        // than any evaluation here: then evaluate as usual.
        if let Some(l) = self.pushed_down(p.aggs[0])? {
            return Ok(Some((Val::Vector(l), self.eval(&b.rhs)?)));
        }
        if let Some(r) = self.pushed_down(p.aggs[1])? {
            return Ok(Some((self.eval(&b.lhs)?, Val::Vector(r))));
        }
        let (base, other) = (p.base, 1 - p.base);
        let bc = p.calls[base];
        let mut input = self.range_input_lazy(&bc.args.args[0])?;
        let steps = self.steps();
        let work = sweep_work(&input, steps);
        let (groups, members) = group_members(&input.series, p.aggs[base]);
        if too_few_groups(self.shared.prefer_fused, groups.len(), work) {
            // Series-parallel sweeps instead: the wide side from what was
            // read, the narrow side as usual (lhs first, as always).
            let wide = |input| -> Result<Val, EngineError> {
                let v = self.sweep_range_call(bc, &[], input)?;
                self.aggregate_of(p.aggs[base], Some(v))
            };
            return Ok(Some(if base == 0 {
                let l = wide(input)?;
                (l, self.eval(&b.rhs)?)
            } else {
                let l = self.eval(&b.lhs)?;
                (l, wide(input)?)
            }));
        }
        let in_other: Vec<bool> =
            input.series.iter().map(|s| p.extra.iter().all(|m| m.matches_labels(&s.labels))).collect();
        // Samples the narrow side's read would have counted as it read them.
        let other_read: usize = input
            .series
            .iter()
            .zip(&in_other)
            .enumerate()
            .filter(|(i, (_, o))| **o && input.encoded.get(*i).is_none_or(Option::is_none))
            .map(|(_, (s, _))| s.points.len())
            .sum();
        self.add_samples(other_read)?;
        let encoded = std::mem::take(&mut input.encoded);
        let series = std::mem::take(&mut input.series);
        let input = super::RangeInput { series: Vec::new(), encoded: Vec::new(), ..input };
        let name = bc.func.name;
        let gs = GroupSweep {
            op: p.aggs[base].op.id(),
            sweep: WindowSweep { input: &input, scalars: &[], start: self.start, interval: self.interval, steps, deadline: self.shared.deadline },
            series: &series,
            encoded: &encoded,
            drop_name: !matches!(name, "last_over_time" | "first_over_time"),
        };
        let other_op = p.aggs[other].op.id();
        let folded = match name {
            "rate" | "increase" | "delta" => {
                let (is_counter, is_rate) = (name != "delta", name == "rate");
                fold_all(&gs, members, work, &in_other, other_op, |pts| {
                    let mut r = k::RateSweep::new(pts, is_counter, is_rate);
                    move |w: &[Sample], a: &KernelArgs| Ok(r.window(w, a.range_start, a.range_end))
                })
            }
            _ => {
                let kernel = resolve_kernel(name)?;
                fold_all(&gs, members, work, &in_other, other_op, |_| kernel)
            }
        };
        let mut sides: [Vec<Result<Folded, EngineError>>; 2] = [Vec::new(), Vec::new()];
        for f in folded {
            match f {
                Ok(PairFolded { base: fb, other: fo }) => {
                    sides[base].push(Ok(fb));
                    sides[other].push(Ok(fo));
                }
                Err(e) => return Err(e),
            }
        }
        let [ls, rs] = sides;
        let l = self.finish_fused(name, p.calls[0], &series, groups.clone(), ls)?;
        let r = self.finish_fused(name, p.calls[1], &series, groups, rs)?;
        Ok(Some((Val::Vector(l), Val::Vector(r))))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::engine::{Engine, Value};
    use aion_model::memstore::MemStore;
    use aion_model::storage::{Appender, SeriesSamples, WriteBatch};
    use aion_model::{Labels, Sample, TenantId};
    use std::collections::HashMap;

    /// 12 jobs x 3 codes x 2 instances of a counter growing by uneven steps
    /// (so sums round differently in another order).
    fn store() -> MemStore {
        let s = MemStore::new();
        let mut series = Vec::new();
        for job in 0..12 {
            for code in ["200", "500", "503"] {
                for inst in 0..2 {
                    let name = format!("j{job}");
                    let labels = Labels::from_pairs([("__name__", "x_total"), ("code", code), ("inst", &format!("i{inst}")), ("job", &name)]);
                    let mut v = 0.0;
                    let samples = (0..80)
                        .map(|i| {
                            v += 0.1 + ((i * 7 + job * 3 + inst) % 11) as f64 / 3.0;
                            Sample::new(i * 15_000, v)
                        })
                        .collect();
                    series.push(SeriesSamples { labels, samples });
                }
            }
        }
        s.append(WriteBatch { tenant: TenantId::anonymous(), series }).unwrap();
        s
    }

    fn by_labels(v: Value) -> HashMap<Labels, Vec<Sample>> {
        let Value::Matrix(m) = v else { panic!("not a matrix") };
        m.into_iter().map(|s| (s.labels, s.samples)).collect()
    }

    /// `l op r` evaluated as one expression (the shared read) equals the
    /// two sides evaluated apart and combined here, bit for bit.
    fn check(l: &str, r: &str, op: &str, f: fn(f64, f64) -> f64) {
        let (s, e, t) = (store(), Engine::default(), TenantId::anonymous());
        let run = |q: &str| by_labels(e.range_query(&s, &t, q, 0, 1_200_000, 30_000).unwrap().value);
        let (lv, rv, both) = (run(l), run(r), run(&format!("{l} {op} {r}")));
        assert!(!both.is_empty(), "{l} {op} {r}: empty");
        for (labels, pts) in &both {
            let (a, b) = (&lv[labels], &rv[labels]);
            for p in pts {
                let x = a.iter().find(|s| s.t == p.t).unwrap().v;
                let y = b.iter().find(|s| s.t == p.t).unwrap().v;
                assert_eq!(p.v.to_bits(), f(x, y).to_bits(), "{labels} at {}", p.t);
            }
        }
    }

    #[test]
    fn shared_read_matches_separate_sides() {
        let narrow = r#"sum by (job) (rate(x_total{code=~"5.."}[2m]))"#;
        let wide = "sum by (job) (rate(x_total[2m]))";
        check(narrow, wide, "/", |a, b| a / b);
        // The wide side on the left, another aggregation on the right.
        let avg = r#"avg by (job) (rate(x_total{code="500",inst="i1"}[2m]))"#;
        check(wide, avg, "-", |a, b| a - b);
        // Same selector on both sides.
        check(wide, "count by (job) (rate(x_total[2m]))", "/", |a, b| a / b);
    }
}
