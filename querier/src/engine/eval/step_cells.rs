//! A group's per-step accumulators in an aggregation. `sum` and `count`
//! (the dashboard aggregations, and the two halves of a pushed-down `avg`)
//! keep plain arrays: a value is then one compensated add or one increment,
//! with no per-cell enum to inspect and three times less memory to walk;
//! `avg` keeps one mean accumulator per step. The others keep one [`Acc`]
//! per step. Every form computes exactly what [`Acc`] computes for its
//! operator, in the same order.

use super::aggregate::Acc;
use crate::engine::functions::aggregate::{kahan_add, MeanAccumulator};
use aion_model::Sample;
use promql_parser::parser::token::{TokenId, T_AVG, T_COUNT, T_SUM};

/// Per-step accumulators of one group.
pub(crate) enum StepCells {
    /// `sum`: Kahan–Neumaier sum and compensation, and whether any value came.
    Sum { sum: Vec<f64>, c: Vec<f64>, seen: Vec<bool> },
    /// `count`: values seen (0 = none).
    Count(Vec<f64>),
    /// `avg`: one running mean per step (count 0 = none).
    Mean(Vec<MeanAccumulator>),
    /// Any other operator.
    Any { op: TokenId, cells: Vec<Option<Acc>> },
}

impl StepCells {
    /// Empty accumulators of `op` for `steps` steps.
    pub(crate) fn new(op: TokenId, steps: usize) -> Self {
        match op {
            T_SUM => StepCells::Sum { sum: vec![0.0; steps], c: vec![0.0; steps], seen: vec![false; steps] },
            T_COUNT => StepCells::Count(vec![0.0; steps]),
            T_AVG => StepCells::Mean(vec![MeanAccumulator::new(); steps]),
            _ => StepCells::Any { op, cells: (0..steps).map(|_| None).collect() },
        }
    }

    /// Adds `v` at step `i`.
    #[inline(always)]
    pub(crate) fn add(&mut self, i: usize, v: f64) {
        match self {
            StepCells::Sum { sum, c, seen } => {
                if let (Some(s), Some(k), Some(seen)) = (sum.get_mut(i), c.get_mut(i), seen.get_mut(i)) {
                    (*s, *k) = kahan_add(*s, *k, v);
                    *seen = true;
                }
            }
            StepCells::Count(n) => {
                if let Some(n) = n.get_mut(i) {
                    *n += 1.0;
                }
            }
            StepCells::Mean(m) => {
                if let Some(m) = m.get_mut(i) {
                    m.add(v);
                }
            }
            StepCells::Any { op, cells } => match cells.get_mut(i) {
                Some(Some(acc)) => acc.add(v),
                Some(cell) => *cell = Some(Acc::new(*op, v)),
                None => {}
            },
        }
    }

    /// Folds in `other`, the same operator's accumulators of members that
    /// come after this one's (see `fused.rs`, `splits`): counts add, `min`,
    /// `max` and `group` take `other`'s value as one more member's, and a
    /// sum adds `other`'s sum and compensation to its own.
    pub(crate) fn merge(&mut self, other: StepCells) {
        match (self, other) {
            (StepCells::Sum { sum, c, seen }, StepCells::Sum { sum: s2, c: c2, seen: seen2 }) => {
                let theirs = s2.into_iter().zip(c2).zip(seen2);
                for (((s, k), seen), ((s2, c2), seen2)) in sum.iter_mut().zip(c.iter_mut()).zip(seen.iter_mut()).zip(theirs) {
                    if seen2 {
                        (*s, *k) = kahan_add(*s, *k, s2);
                        *k += c2;
                        *seen = true;
                    }
                }
            }
            (StepCells::Count(n), StepCells::Count(n2)) => n.iter_mut().zip(n2).for_each(|(a, b)| *a += b),
            (StepCells::Any { cells, .. }, StepCells::Any { cells: more, .. }) => {
                for (cell, m) in cells.iter_mut().zip(more) {
                    let Some(m) = m else { continue };
                    match cell {
                        Some(acc) => acc.add(m.value()),
                        None => *cell = Some(m),
                    }
                }
            }
            _ => debug_assert!(false, "BUG: merging accumulators of different operators"),
        }
    }

    /// The steps with a value, as points at `start + i * interval`.
    pub(crate) fn points(&self, start: i64, interval: i64) -> Vec<Sample> {
        let at = |i: usize| start + i as i64 * interval;
        match self {
            StepCells::Sum { sum, c, seen } => (0..seen.len())
                .filter(|&i| seen[i])
                // As `Acc::Sum`'s value: an infinite sum is not compensated.
                .map(|i| Sample { t: at(i), v: if sum[i].is_infinite() { sum[i] } else { sum[i] + c[i] } })
                .collect(),
            StepCells::Count(n) => n.iter().enumerate().filter(|(_, n)| **n > 0.0).map(|(i, &n)| Sample { t: at(i), v: n }).collect(),
            // As `Acc::Mean`'s value: a mean of nothing is NaN (never reached here).
            StepCells::Mean(m) => m
                .iter()
                .enumerate()
                .filter(|(_, m)| m.count() > 0.0)
                .map(|(i, m)| Sample { t: at(i), v: m.value().unwrap_or(f64::NAN) })
                .collect(),
            StepCells::Any { cells, .. } => cells
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.as_ref().map(|acc| Sample { t: at(i), v: acc.value() }))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::parser::token::T_MAX;

    /// Folding members in runs and merging the runs in order gives what
    /// folding them one by one gives: bit for bit for `count`, `min`, `max`
    /// and `group` (NaNs and signed zeros included), to the last bit for `sum`.
    #[test]
    fn merged_runs_match_one_fold() {
        use promql_parser::parser::token::{T_GROUP, T_MIN};
        let values = [f64::NAN, 0.0, -0.0, 3.5, 1e16, 1.0, -1e16, f64::NAN, 2.25, -7.0, 0.1, 0.2, 0.3];
        for op in [T_SUM, T_COUNT, T_MIN, T_MAX, T_GROUP] {
            for run in 1..values.len() {
                let steps = 3;
                let mut one = StepCells::new(op, steps);
                let mut merged = StepCells::new(op, steps);
                for chunk in values.chunks(run) {
                    let mut part = StepCells::new(op, steps);
                    for (n, &v) in chunk.iter().enumerate() {
                        // Step 2 never gets a value.
                        one.add(n % 2, v);
                        part.add(n % 2, v);
                    }
                    merged.merge(part);
                }
                let (a, b) = (one.points(0, 1), merged.points(0, 1));
                assert_eq!(a.len(), b.len(), "op {op} run {run}");
                for (x, y) in a.iter().zip(&b) {
                    let close = op == T_SUM && (x.v - y.v).abs() <= x.v.abs() * 4.0 * f64::EPSILON;
                    assert!(x.t == y.t && (x.v.to_bits() == y.v.to_bits() || close), "op {op} run {run}: {x:?} vs {y:?}");
                }
            }
        }
    }

    /// Each form gives, step by step, what one `Acc` per step gives.
    #[test]
    fn every_form_matches_one_acc_per_step() {
        let values = [1e16, 1.0, -1e16, 3.5, f64::INFINITY, 2.0, f64::NAN, -0.0, 7.25, 1e308, 1e308];
        for op in [T_SUM, T_COUNT, T_AVG, T_MAX] {
            let steps = 5;
            let mut cells = StepCells::new(op, steps);
            let mut want: Vec<Option<Acc>> = (0..steps).map(|_| None).collect();
            for (n, &v) in values.iter().enumerate() {
                // Step 3 never gets a value; the others get several.
                let i = [0, 1, 2, 4][n % 4];
                cells.add(i, v);
                match &mut want[i] {
                    Some(acc) => acc.add(v),
                    cell => *cell = Some(Acc::new(op, v)),
                }
            }
            let got = cells.points(1000, 10);
            let want: Vec<Sample> = want
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.as_ref().map(|a| Sample { t: 1000 + 10 * i as i64, v: a.value() }))
                .collect();
            assert_eq!(got.len(), want.len(), "op {op}");
            for (g, w) in got.iter().zip(&want) {
                assert!(g.t == w.t && g.v.to_bits() == w.v.to_bits(), "op {op}: {g:?} vs {w:?}");
            }
        }
    }
}
