//! The evaluator's side of aggregation pushdown (see `crate::pushdown`):
//! asks the storage to evaluate a pushable aggregation on its parts and
//! turns the merged parts into the aggregation's output series.

use super::{Evaluator, Ser, Val};
use crate::engine::EngineError;
use aion_model::storage::{PartialSeries, PushdownAnswer, PushdownRequest, StorageError};
use crate::pushdown::MergeOp;
use promql_parser::parser::token::T_AVG;
use promql_parser::parser::{AggregateExpr, BinaryExpr, Expr};
use std::collections::HashMap;

type Parts = Option<Result<PushdownAnswer, StorageError>>;

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

/// A failed pushdown as the engine's error: a part over the sample limit
/// exactly as the limit hit here.
fn answer_error(e: StorageError) -> EngineError {
    match e {
        StorageError::LimitExceeded { limit: "max_samples_per_query", .. } => EngineError::TooManySamples("query execution".into()),
        e => e.into(),
    }
}

/// The merged parts as the aggregation's output series.
fn merged(op: MergeOp, parts: Vec<PartialSeries>) -> Vec<Ser> {
    let merged = crate::pushdown::merge(op, vec![parts]);
    merged.into_iter().map(|s| Ser { labels: s.labels, drop_name: false, points: s.points }).collect()
}

impl Evaluator<'_> {
    /// The step of a pushdown request: 0 for an instant evaluation.
    fn pushdown_step(&self) -> i64 {
        if self.start == self.end {
            0
        } else {
            self.interval
        }
    }

    /// The pushdown request of `a` and the operator merging its parts.
    fn pushdown_plan(&self, a: &AggregateExpr) -> Option<(PushdownRequest, MergeOp)> {
        let (req, op) = crate::pushdown::plan(a, self.start, self.end, self.pushdown_step(), self.shared.lookback)?;
        Some((self.with_sample_budget(req), op))
    }

    /// `req` allowed the samples the query may still load on each part (its
    /// limit less what it loaded so far); the parts' total is checked when
    /// their answer is taken ([`Self::take_answer`]).
    fn with_sample_budget(&self, req: PushdownRequest) -> PushdownRequest {
        let left = self.shared.max_samples.saturating_sub(self.shared.samples.get()).max(1);
        PushdownRequest { max_samples: u64::try_from(left).unwrap_or(u64::MAX), ..req }
    }

    /// A used pushdown answer's series, the samples its parts loaded counted
    /// against the query's limit (and in its `stats`) as if loaded here; a
    /// part over the sample limit fails the query as the limit does here.
    fn take_answer(&self, r: Result<PushdownAnswer, StorageError>) -> Result<Vec<PartialSeries>, EngineError> {
        let a = r.map_err(answer_error)?;
        self.add_samples(usize::try_from(a.samples).unwrap_or(usize::MAX))?;
        Ok(a.series)
    }

    /// The aggregation's output if the storage evaluated it by pushdown;
    /// `None` to evaluate it here (not pushable, not supported, or a part
    /// raised annotations).
    pub(crate) fn pushed_down(&self, a: &AggregateExpr) -> Result<Option<Vec<Ser>>, EngineError> {
        if a.op.id() == T_AVG {
            return self.pushed_down_avg(a);
        }
        let Some((req, op)) = self.pushdown_plan(a) else {
            return Ok(None);
        };
        let Some(parts) = self.storage.pushdown(self.tenant, &req) else {
            return Ok(None);
        };
        Ok(Some(merged(op, self.take_answer(parts)?)))
    }

    /// Both operands of `b` when both are aggregations the store pushes
    /// down: the two requests go out at once (the nodes evaluate both sides
    /// side by side instead of one after the other). A side the store
    /// declines is evaluated here as usual; `None` when `b` has another shape.
    pub(crate) fn pushed_down_pair(&self, b: &BinaryExpr) -> Result<Option<(Val, Val)>, EngineError> {
        if !self.storage.may_push_down() {
            return Ok(None);
        }
        if let Some(both) = self.pushed_down_shared_read(b)? {
            return Ok(Some(both));
        }
        let (Expr::Aggregate(la), Expr::Aggregate(ra)) = (unwrap_parens(&b.lhs), unwrap_parens(&b.rhs)) else {
            return Ok(None);
        };
        let (Some((lreq, lop)), Some((rreq, rop))) = (self.pushdown_plan(la), self.pushdown_plan(ra)) else {
            return Ok(None);
        };
        let (storage, tenant) = (self.storage, self.tenant);
        let (l, r): (Parts, Parts) = std::thread::scope(|scope| {
            let right = scope.spawn(|| storage.pushdown(tenant, &rreq));
            let left = storage.pushdown(tenant, &lreq);
            match right.join() {
                Ok(right) => (left, right),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        let l = match l {
            Some(parts) => Val::Vector(merged(lop, self.take_answer(parts)?)),
            None => self.eval(&b.lhs)?,
        };
        let r = match r {
            Some(parts) => Val::Vector(merged(rop, self.take_answer(parts)?)),
            None => self.eval(&b.rhs)?,
        };
        Ok(Some((l, r)))
    }

    /// Both operands of `b` from ONE pushed-down request when one read
    /// answers both (`sum by (job) (rate(x{code=~"5.."}[5m])) / sum by
    /// (job) (rate(x[5m]))`): each node reads, decodes and sweeps the wider
    /// selection once for both sides, as a single process does
    /// ([`crate::pushdown::plan_pair`]). `None`: not that shape, or the
    /// store declined.
    fn pushed_down_shared_read(&self, b: &BinaryExpr) -> Result<Option<(Val, Val)>, EngineError> {
        if !super::fused::shares_read(b) {
            return Ok(None);
        }
        let Some((req, lop, rop)) = crate::pushdown::plan_pair(b, self.start, self.end, self.pushdown_step(), self.shared.lookback) else {
            return Ok(None);
        };
        let Some(parts) = self.storage.pushdown(self.tenant, &self.with_sample_budget(req)) else {
            return Ok(None);
        };
        let (l, r) = crate::pushdown::split_sides(self.take_answer(parts)?);
        Ok(Some((Val::Vector(merged(lop, l)), Val::Vector(merged(rop, r)))))
    }

    /// `avg` pushed down as its `sum` and `count` over the same expression,
    /// one request answering both from one read (as a pair, see
    /// [`crate::pushdown::plan_pair`]), divided here per group and step.
    /// `None` (evaluate here) when not pushable or when a sum overflowed:
    /// `avg` then switches to an incremental mean the parts cannot give.
    fn pushed_down_avg(&self, a: &AggregateExpr) -> Result<Option<Vec<Ser>>, EngineError> {
        if !self.storage.may_push_down() || a.param.is_some() {
            return Ok(None);
        }
        let text = Expr::Aggregate(a.clone()).to_string();
        let Some(rest) = text.strip_prefix("avg") else { return Ok(None) };
        let ctx = crate::engine::plan::DurationContext { step_ms: 0, range_ms: 0 };
        let Ok(Expr::Binary(b)) = crate::engine::plan::parse(&format!("sum{rest} / count{rest}"), ctx) else {
            return Ok(None);
        };
        let Some((req, _, _)) = crate::pushdown::plan_pair(&b, self.start, self.end, self.pushdown_step(), self.shared.lookback) else {
            return Ok(None);
        };
        let Some(parts) = self.storage.pushdown(self.tenant, &self.with_sample_budget(req)) else {
            return Ok(None);
        };
        // The parts' samples count only if their answer is used: a fallback
        // below loads them again.
        let answer = parts.map_err(answer_error)?;
        let samples = usize::try_from(answer.samples).unwrap_or(usize::MAX);
        let (sums, counts) = crate::pushdown::split_sides(answer.series);
        let counts: HashMap<_, _> = merged(MergeOp::Sum, counts).into_iter().map(|s| (s.labels, s.points)).collect();
        let mut out = merged(MergeOp::Sum, sums);
        for s in &mut out {
            let Some(n) = counts.get(&s.labels) else { return Ok(None) };
            if n.len() != s.points.len() {
                return Ok(None);
            }
            for (p, c) in s.points.iter_mut().zip(n) {
                if p.t != c.t || p.v.is_infinite() {
                    return Ok(None);
                }
                p.v /= c.v;
            }
        }
        self.add_samples(samples)?;
        Ok(Some(out))
    }

    /// Both operands of `b` when both aggregate the same expression (the
    /// `sum … / count …` a pushed-down `avg` becomes): that expression is
    /// evaluated, and its samples loaded, once, as for the `avg` itself.
    /// `None` when `b` has another shape.
    pub(crate) fn operands_sharing_input(&self, b: &BinaryExpr) -> Result<Option<(Val, Val)>, EngineError> {
        let (Expr::Aggregate(la), Expr::Aggregate(ra)) = (unwrap_parens(&b.lhs), unwrap_parens(&b.rhs)) else {
            return Ok(None);
        };
        if la.param.is_some() || ra.param.is_some() || la.expr != ra.expr {
            return Ok(None);
        }
        let input = self.eval(&la.expr)?;
        let l = self.aggregate_of(la, Some(input.clone()))?;
        Ok(Some((l, self.aggregate_of(ra, Some(input))?)))
    }
}
