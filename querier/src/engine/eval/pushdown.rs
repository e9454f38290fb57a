//! The evaluator's side of aggregation pushdown (see `crate::pushdown`):
//! asks the storage to evaluate a pushable aggregation on its parts and
//! turns the merged parts into the aggregation's output series.

use super::{Evaluator, Ser, Val};
use crate::engine::EngineError;
use aion_model::storage::{PartialSeries, PushdownRequest, StorageError};
use crate::pushdown::MergeOp;
use promql_parser::parser::{AggregateExpr, BinaryExpr, Expr};

type Parts = Option<Result<Vec<PartialSeries>, StorageError>>;

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

/// The merged parts as the aggregation's output series.
fn merged(op: MergeOp, parts: Vec<PartialSeries>) -> Vec<Ser> {
    let merged = crate::pushdown::merge(op, vec![parts]);
    merged.into_iter().map(|s| Ser { labels: s.labels, drop_name: false, points: s.points }).collect()
}

impl Evaluator<'_> {
    /// The pushdown request of `a` and the operator merging its parts.
    fn pushdown_plan(&self, a: &AggregateExpr) -> Option<(PushdownRequest, MergeOp)> {
        let step = if self.start == self.end { 0 } else { self.interval };
        crate::pushdown::plan(a, self.start, self.end, step, self.shared.lookback)
    }

    /// The aggregation's output if the storage evaluated it by pushdown;
    /// `None` to evaluate it here (not pushable, not supported, or a part
    /// raised annotations).
    pub(crate) fn pushed_down(&self, a: &AggregateExpr) -> Result<Option<Vec<Ser>>, EngineError> {
        let Some((req, op)) = self.pushdown_plan(a) else {
            return Ok(None);
        };
        let Some(parts) = self.storage.pushdown(self.tenant, &req) else {
            return Ok(None);
        };
        Ok(Some(merged(op, parts?)))
    }

    /// Both operands of `b` when both are aggregations the store pushes
    /// down: the two requests go out at once (the nodes evaluate both sides
    /// side by side instead of one after the other). A side the store
    /// declines is evaluated here as usual; `None` when `b` has another shape.
    pub(crate) fn pushed_down_pair(&self, b: &BinaryExpr) -> Result<Option<(Val, Val)>, EngineError> {
        if !self.storage.may_push_down() {
            return Ok(None);
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
            Some(parts) => Val::Vector(merged(lop, parts?)),
            None => self.eval(&b.lhs)?,
        };
        let r = match r {
            Some(parts) => Val::Vector(merged(rop, parts?)),
            None => self.eval(&b.rhs)?,
        };
        Ok(Some((l, r)))
    }
}
