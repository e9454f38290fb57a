//! Subqueries: the inner expression is evaluated once over the whole outer
//! range at steps aligned to absolute multiples of the subquery step.

use super::selector::RangeInput;
use super::{Evaluator, Ser, Val, DEFAULT_SUBQUERY_STEP_MS};
use crate::engine::EngineError;
use aion_model::{Labels, Sample};
use promql_parser::parser::SubqueryExpr;

impl Evaluator<'_> {
    /// Evaluates a subquery's inner expression for every window the outer steps need.
    pub(crate) fn range_input_subquery(&self, sq: &SubqueryExpr) -> Result<RangeInput, EngineError> {
        let step = sq.step.map(|d| d.as_millis() as i64).filter(|s| *s > 0).unwrap_or(DEFAULT_SUBQUERY_STEP_MS);
        let range = sq.range.as_millis() as i64;
        let at = self.at_ms(&sq.at);
        let offset = Self::offset_ms(&sq.offset);
        let (lo, hi) = match at {
            Some(a) => (a - offset, a - offset),
            None => (self.start - offset, self.end - offset),
        };
        let first = lo - range;
        // Go's truncating division, as Prometheus aligns.
        let mut start = step * (first / step);
        if start < first {
            start += step;
        }
        let mut input = RangeInput { series: Vec::new(), encoded: Vec::new(), range, offset, at, mode: None };
        if start > hi {
            return Ok(input);
        }
        let sub = Evaluator { start, end: hi, interval: step, ..*self };
        // Every step costs memory even without data: bound them like samples.
        if sub.steps() > self.shared.max_samples {
            return Err(EngineError::TooManySamples("subquery evaluation".into()));
        }
        input.series = match sub.eval(&sq.expr)? {
            Val::Vector(v) => v,
            Val::Scalar(vals) => {
                let points = vals.iter().enumerate().map(|(i, v)| Sample::new(sub.ts(i), *v)).collect();
                vec![Ser { labels: Labels::empty(), drop_name: false, points }]
            }
            _ => return Err(EngineError::Execution("subquery is only allowed on instant vector or scalar".into())),
        };
        Ok(input)
    }
}
