//! The evaluator's side of aggregation pushdown (see `crate::pushdown`):
//! asks the storage to evaluate a pushable aggregation on its parts and
//! turns the merged parts into the aggregation's output series.

use super::{Evaluator, Ser};
use crate::engine::EngineError;
use promql_parser::parser::AggregateExpr;

impl Evaluator<'_> {
    /// The aggregation's output if the storage evaluated it by pushdown;
    /// `None` to evaluate it here (not pushable, not supported, or a part
    /// raised annotations).
    pub(crate) fn pushed_down(&self, a: &AggregateExpr) -> Result<Option<Vec<Ser>>, EngineError> {
        let step = if self.start == self.end { 0 } else { self.interval };
        let Some((req, op)) = crate::pushdown::plan(a, self.start, self.end, step, self.shared.lookback) else {
            return Ok(None);
        };
        let Some(parts) = self.storage.pushdown(self.tenant, &req) else {
            return Ok(None);
        };
        let merged = crate::pushdown::merge(op, vec![parts?]);
        Ok(Some(merged.into_iter().map(|s| Ser { labels: s.labels, drop_name: false, points: s.points }).collect()))
    }
}
