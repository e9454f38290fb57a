//! Aggregation operators, evaluated step by step over groups computed once
//! per input series.

use super::fused::FusedAgg;
use super::step_cells::StepCells;
use super::{Evaluator, Out, Ser, Val};
use crate::engine::functions::aggregate::{kahan_add, quantile, MeanAccumulator, VarianceAccumulator};
use crate::engine::EngineError;
use aion_model::{Labels, Sample};
use promql_parser::parser::token::*;
use promql_parser::parser::{AggregateExpr, LabelModifier};
use std::cmp::Ordering;
use std::collections::HashMap;

/// Below this many points, fewer groups than twice the cores are folded on one thread.
const FEW_GROUPS_SERIAL_POINTS: usize = 1 << 20;

/// Running state of one group at one step.
pub(super) enum Acc {
    Sum(f64, f64),
    Mean(MeanAccumulator),
    Min(f64),
    Max(f64),
    Count(f64),
    Group,
    Var(VarianceAccumulator, bool),
}

impl Acc {
    pub(super) fn new(op: TokenId, v: f64) -> Acc {
        let mut a = match op {
            T_SUM => Acc::Sum(0.0, 0.0),
            T_AVG => Acc::Mean(MeanAccumulator::new()),
            T_MIN => return Acc::Min(v),
            T_MAX => return Acc::Max(v),
            T_COUNT => Acc::Count(0.0),
            T_STDDEV => Acc::Var(VarianceAccumulator::new(), true),
            T_STDVAR => Acc::Var(VarianceAccumulator::new(), false),
            _ => Acc::Group,
        };
        a.add(v);
        a
    }

    #[inline]
    pub(super) fn add(&mut self, v: f64) {
        match self {
            Acc::Sum(s, c) => (*s, *c) = kahan_add(*s, *c, v),
            Acc::Mean(m) => m.add(v),
            Acc::Min(m) => {
                if *m > v || m.is_nan() {
                    *m = v
                }
            }
            Acc::Max(m) => {
                if *m < v || m.is_nan() {
                    *m = v
                }
            }
            Acc::Count(c) => *c += 1.0,
            Acc::Group => {}
            Acc::Var(a, _) => a.add(v),
        }
    }

    pub(super) fn value(&self) -> f64 {
        match self {
            Acc::Sum(s, c) => {
                if s.is_infinite() {
                    *s
                } else {
                    s + c
                }
            }
            Acc::Mean(m) => m.value().unwrap_or(f64::NAN),
            Acc::Min(m) | Acc::Max(m) | Acc::Count(m) => *m,
            Acc::Group => 1.0,
            Acc::Var(a, sd) => {
                let v = a.stdvar().unwrap_or(f64::NAN);
                if *sd {
                    v.sqrt()
                } else {
                    v
                }
            }
        }
    }
}

/// Folds the member series of one group into one value per step.
struct GroupFold<'a> {
    op: TokenId,
    input: &'a [Ser],
    start: i64,
    interval: i64,
}

impl GroupFold<'_> {
    /// For the members `ms` (input indexes, ascending, each with points):
    /// where the group first appears (step, member), whether any member
    /// drops its name, and the aggregated points.
    fn group(&self, ms: &[usize]) -> ((usize, usize), bool, Vec<Sample>) {
        let step_of = |t: i64| ((t - self.start) / self.interval) as usize;
        // Cells only over the steps the members span (points are in step order).
        let (mut lo, mut hi, mut first) = (usize::MAX, 0usize, (usize::MAX, usize::MAX));
        for &si in ms {
            let pts = &self.input[si].points;
            if let (Some(a), Some(b)) = (pts.first(), pts.last()) {
                if step_of(a.t) < first.0 {
                    first = (step_of(a.t), si);
                }
                lo = lo.min(step_of(a.t));
                hi = hi.max(step_of(b.t));
            }
        }
        if lo > hi {
            return (first, false, Vec::new());
        }
        let mut cells = StepCells::new(self.op, hi - lo + 1);
        let mut drop = false;
        for &si in ms {
            let s = &self.input[si];
            drop |= s.drop_name;
            let Some(first) = s.points.first() else { continue };
            // Points sit on steps in time order: walk the step index instead
            // of dividing for every point.
            let mut k = step_of(first.t);
            for p in &s.points {
                while self.start + k as i64 * self.interval < p.t {
                    k += 1;
                }
                cells.add(k - lo, p.v);
            }
        }
        let points = cells.points(self.start + lo as i64 * self.interval, self.interval);
        (first, drop, points)
    }
}

/// The grouping labels of `l` under `by`/`without`.
pub(crate) fn group_key(l: &Labels, m: Option<&LabelModifier>) -> Labels {
    match m {
        Some(LabelModifier::Include(names)) => l.keep_only(&names.labels),
        Some(LabelModifier::Exclude(names)) => l.without_metric_name().drop_names(&names.labels),
        None => Labels::empty(),
    }
}

/// Input series mapped to groups (in order of first appearance).
struct Groups {
    labels: Vec<Labels>,
    of_series: Vec<usize>,
}

fn groups(input: &[Ser], m: Option<&LabelModifier>) -> Groups {
    let mut idx: HashMap<Labels, usize> = HashMap::new();
    let mut labels = Vec::new();
    let of_series = input
        .iter()
        .map(|s| {
            let k = group_key(&s.labels, m);
            *idx.entry(k.clone()).or_insert_with(|| {
                labels.push(k);
                labels.len() - 1
            })
        })
        .collect();
    Groups { labels, of_series }
}

impl Evaluator<'_> {
    /// Evaluates an aggregation.
    pub(crate) fn eval_aggregate(&self, a: &AggregateExpr) -> Result<Val, EngineError> {
        if let Some(out) = self.pushed_down(a)? {
            return Ok(Val::Vector(out));
        }
        let inner = match self.fused_range_agg(a)? {
            FusedAgg::Done(out) => return Ok(Val::Vector(out)),
            FusedAgg::Inner(v) => Some(v),
            FusedAgg::No => None,
        };
        self.aggregate_of(a, inner)
    }

    /// `a` over `inner`, the value of its expression when already evaluated
    /// (else it is evaluated here).
    pub(super) fn aggregate_of(&self, a: &AggregateExpr, inner: Option<Val>) -> Result<Val, EngineError> {
        let op = a.op.id();
        let param = match &a.param {
            Some(p) => Some(self.eval(p)?),
            None => None,
        };
        let input = match inner {
            Some(Val::Vector(v)) => v,
            Some(_) => return Err(EngineError::Execution(format!("expected an instant vector expression, got {}", a.expr))),
            None => self.eval_vector(&a.expr)?,
        };
        let g = groups(&input, a.modifier.as_ref());
        let scalar_param = |name: &str| -> Result<Vec<f64>, EngineError> {
            match &param {
                Some(Val::Scalar(v)) => Ok(v.clone()),
                _ => Err(EngineError::Execution(format!("{name} needs a scalar parameter"))),
            }
        };
        let out = match op {
            T_TOPK | T_BOTTOMK | T_LIMITK => {
                let k = scalar_param("k")?;
                if k.iter().any(|x| x.is_nan()) {
                    return Err(EngineError::Execution("Parameter value is NaN".into()));
                }
                self.select_k(op, &input, &g, &k)?
            }
            T_LIMIT_RATIO => {
                let r = scalar_param("ratio")?;
                if r.iter().any(|x| x.is_nan()) {
                    return Err(EngineError::Execution("Ratio value is NaN".into()));
                }
                self.limit_ratio(&input, &r, &self.pos(a, Some(0)))
            }
            T_QUANTILE => {
                let q = scalar_param("quantile")?;
                self.quantile_agg(&input, &g, &q, &self.pos(a, Some(0)))?
            }
            T_COUNT_VALUES => {
                let label = match &param {
                    Some(Val::String(s)) => s.clone(),
                    _ => return Err(EngineError::Execution("count_values needs a string parameter".into())),
                };
                self.count_values(&input, a.modifier.as_ref(), &label)?
            }
            _ => self.simple_agg(op, &input, &g)?,
        };
        Ok(Val::Vector(out))
    }

    /// `sum`, `avg`, `min`, `max`, `count`, `group`, `stddev`, `stdvar`:
    /// group by group (groups in parallel when there is much to fold), each
    /// member series folded into one accumulator per step. Members are
    /// visited in input order, so every step adds its values in the same
    /// order as a step-by-step pass; output series are in order of first
    /// appearance (first step, then first member).
    fn simple_agg(&self, op: TokenId, input: &[Ser], g: &Groups) -> Result<Vec<Ser>, EngineError> {
        let mut members: Vec<(usize, Vec<usize>)> = (0..g.labels.len()).map(|gi| (gi, Vec::new())).collect();
        for (si, s) in input.iter().enumerate() {
            if !s.points.is_empty() {
                members[g.of_series[si]].1.push(si);
            }
        }
        members.retain(|(_, ms)| !ms.is_empty());
        self.check_deadline()?;
        let points: usize = input.iter().map(|s| s.points.len()).sum();
        // A few groups of a moderate input fold in well under a millisecond:
        // not worth another fork and join (which, on busy cores, can wait a
        // scheduler tick for the second thread).
        let few = members.len() < 2 * super::parallel::cores() && points < FEW_GROUPS_SERIAL_POINTS;
        let work = if few { 0 } else { points };
        let fold = GroupFold { op, input, start: self.start, interval: self.interval.max(1) };
        let mut out = super::parallel::par_map(members, work, |(gi, ms)| {
            let (first, drop_name, points) = fold.group(&ms);
            (first, Ser { labels: g.labels[gi].clone(), drop_name, points })
        });
        out.sort_by_key(|(first, _)| *first);
        Ok(out.into_iter().map(|(_, s)| s).collect())
    }

    fn select_k(&self, op: TokenId, input: &[Ser], g: &Groups, k: &[f64]) -> Result<Vec<Ser>, EngineError> {
        let steps = self.by_step(input);
        let mut out = Out::default();
        let mut slots: Vec<Option<usize>> = vec![None; input.len()];
        for (step, pts) in steps.iter().enumerate() {
            let kk = k[step];
            if kk < 1.0 {
                continue;
            }
            let kk = if kk >= usize::MAX as f64 { usize::MAX } else { kk as usize };
            let mut members: Vec<Vec<(usize, f64)>> = vec![Vec::new(); g.labels.len()];
            let mut order: Vec<usize> = Vec::new();
            for &(si, v) in pts {
                let gi = g.of_series[si];
                if members[gi].is_empty() {
                    order.push(gi);
                }
                members[gi].push((si, v));
            }
            let t = self.ts(step);
            // Members are in input order (ascending series index), so value
            // then index is the order a stable sort by value gives: the k
            // first are picked in linear time, then only they are sorted.
            let by_value = |a: &(usize, f64), b: &(usize, f64)| {
                let v = if op == T_TOPK { cmp_desc_nan_last(a.1, b.1) } else { cmp_asc_nan_last(a.1, b.1) };
                v.then(a.0.cmp(&b.0))
            };
            for gi in order {
                let m = &mut members[gi];
                if matches!(op, T_TOPK | T_BOTTOMK) {
                    if kk < m.len() {
                        m.select_nth_unstable_by(kk - 1, by_value);
                        m.truncate(kk);
                    }
                    m.sort_unstable_by(by_value);
                }
                for &(si, v) in m.iter().take(kk) {
                    let slot = *slots[si].get_or_insert_with(|| out.slot(&input[si].labels));
                    out.push_at(slot, input[si].drop_name, t, v)?;
                }
            }
        }
        Ok(out.series)
    }

    fn limit_ratio(&self, input: &[Ser], r: &[f64], pos: &str) -> Vec<Ser> {
        let mut out: Vec<Ser> = Vec::new();
        for s in input {
            let off = ratio_offset(&s.labels);
            let points: Vec<_> = s
                .points
                .iter()
                .filter(|p| {
                    let ratio = r[self.step_of(p.t)].clamp(-1.0, 1.0);
                    if ratio >= 0.0 {
                        off < ratio
                    } else {
                        off >= 1.0 + ratio
                    }
                })
                .copied()
                .collect();
            if !points.is_empty() {
                out.push(Ser { labels: s.labels.clone(), drop_name: s.drop_name, points });
            }
        }
        if r.iter().any(|x| !(-1.0..=1.0).contains(x)) {
            let bad = r.iter().find(|x| !(-1.0..=1.0).contains(*x)).copied().unwrap_or(0.0);
            self.warn(format!(
                "ratio value should be between -1 and 1, got {}, capping to {}{pos}",
                go_g(bad),
                go_g(bad.clamp(-1.0, 1.0))
            ));
        }
        out
    }

    fn quantile_agg(&self, input: &[Ser], g: &Groups, q: &[f64], pos: &str) -> Result<Vec<Ser>, EngineError> {
        let steps = self.by_step(input);
        let mut out = Out::default();
        for (step, pts) in steps.iter().enumerate() {
            if pts.is_empty() {
                continue;
            }
            let qq = q[step];
            if !(0.0..=1.0).contains(&qq) {
                self.warn(format!("quantile value should be between 0 and 1, got {}{pos}", go_g(qq)));
            }
            let mut members: Vec<Vec<f64>> = vec![Vec::new(); g.labels.len()];
            let mut order = Vec::new();
            let mut drops = vec![false; g.labels.len()];
            for &(si, v) in pts {
                let gi = g.of_series[si];
                if members[gi].is_empty() {
                    order.push(gi);
                }
                members[gi].push(v);
                drops[gi] |= input[si].drop_name;
            }
            for gi in order {
                out.push(g.labels[gi].clone(), drops[gi], self.ts(step), quantile(qq, &mut members[gi]))?;
            }
        }
        Ok(out.series)
    }

    fn count_values(&self, input: &[Ser], m: Option<&LabelModifier>, label: &str) -> Result<Vec<Ser>, EngineError> {
        self.check_label_name(label)?;
        let keys: Vec<Labels> = input.iter().map(|s| group_key(&s.labels, m)).collect();
        let steps = self.by_step(input);
        let mut out = Out::default();
        for (step, pts) in steps.iter().enumerate() {
            let mut counts: Vec<(Labels, f64)> = Vec::new();
            let mut idx: HashMap<Labels, usize> = HashMap::new();
            for &(si, v) in pts {
                let mut l = keys[si].clone();
                l.set(label, &go_float(v));
                match idx.get(&l) {
                    Some(&i) => counts[i].1 += 1.0,
                    None => {
                        idx.insert(l.clone(), counts.len());
                        counts.push((l, 1.0));
                    }
                }
            }
            for (l, c) in counts {
                out.push(l, false, self.ts(step), c)?;
            }
        }
        Ok(out.series)
    }
}

fn cmp_desc_nan_last(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
    }
}

fn cmp_asc_nan_last(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Position of a series in `[0, 1)` for `limit_ratio`: its label hash over the hash space.
fn ratio_offset(l: &Labels) -> f64 {
    let mut b = Vec::new();
    for x in l.iter() {
        b.extend_from_slice(x.name.as_bytes());
        b.push(0xff);
        b.extend_from_slice(x.value.as_bytes());
        b.push(0xff);
    }
    xxhash_rust::xxh64::xxh64(&b, 0) as f64 / u64::MAX as f64
}

/// Formats like Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
pub(crate) fn go_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// Formats like Go's `%g` for the values annotations mention.
pub(crate) fn go_g(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        go_float(v)
    } else if v != 0.0 && (v.abs() >= 1e21 || v.abs() < 1e-4) {
        format!("{v:e}").replace('e', "e+").replace("e+-", "e-")
    } else {
        format!("{v}")
    }
}
