//! Functions over range vectors (`rate`, `*_over_time`, ...): each output
//! series is computed from one input series, window by window, without
//! copying samples per step.

use super::aggregate::go_g;
use super::selector::RangeInput;
use super::{Evaluator, Ser, Val};
use crate::engine::functions::range as k;
use crate::engine::EngineError;
use aion_model::{Labels, Sample};
use promql_parser::parser::{Call, Expr};

/// True when `name` takes a range vector.
pub(crate) fn is_range_function(name: &str) -> bool {
    matches!(
        name,
        "rate" | "irate" | "increase" | "delta" | "idelta" | "deriv" | "predict_linear" | "resets" | "changes"
            | "avg_over_time" | "sum_over_time" | "min_over_time" | "max_over_time" | "count_over_time"
            | "last_over_time" | "first_over_time" | "present_over_time" | "stddev_over_time"
            | "stdvar_over_time" | "mad_over_time" | "quantile_over_time" | "ts_of_min_over_time"
            | "ts_of_max_over_time" | "ts_of_last_over_time" | "ts_of_first_over_time" | "absent_over_time"
            | "double_exponential_smoothing" | "holt_winters"
    )
}

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

impl Evaluator<'_> {
    /// Evaluates a range-vector function call.
    #[allow(clippy::needless_range_loop)]
    pub(crate) fn eval_range_call(&self, c: &Call) -> Result<Val, EngineError> {
        let name = c.func.name;
        let args = &c.args.args;
        let (matrix_idx, scalar_idx): (usize, Vec<usize>) = match name {
            "quantile_over_time" => (1, vec![0]),
            "predict_linear" => (0, vec![1]),
            "double_exponential_smoothing" | "holt_winters" => (0, vec![1, 2]),
            _ => (0, vec![]),
        };
        let scalars: Vec<Vec<f64>> = scalar_idx.iter().map(|&i| self.eval_scalar(&args[i])).collect::<Result<_, _>>()?;
        let marg = unwrap_parens(&args[matrix_idx]);
        let input = self.range_input(marg)?;
        if name == "absent_over_time" {
            return Ok(self.absent_over_time(&input, marg));
        }
        if name == "quantile_over_time" {
            if let Some(q) = scalars[0].iter().find(|q| !(0.0..=1.0).contains(*q)) {
                self.warn(format!("quantile value should be between 0 and 1, got {}", go_g(*q)));
            }
        }
        if matches!(name, "double_exponential_smoothing" | "holt_winters") && !input.series.is_empty() {
            for (sf, tf) in scalars[0].iter().zip(&scalars[1]) {
                k::check_smoothing_factors(*sf, *tf).map_err(|e| EngineError::Execution(e.to_string()))?;
            }
        }
        let keep_name = matches!(name, "last_over_time" | "first_over_time");
        let steps = self.steps();
        let mut out = Vec::with_capacity(input.series.len());
        for s in &input.series {
            let mut points = Vec::new();
            for i in 0..steps {
                let t = self.ts(i);
                let end = input.window_end(t);
                let w = input.window(&s.points, end);
                if w.is_empty() {
                    continue;
                }
                let sc = |j: usize| scalars[j][i];
                if let Some(v) = self.range_kernel(name, w, end - input.range, end, t, &sc)? {
                    points.push(Sample::new(t, v));
                }
            }
            if matches!(name, "rate" | "increase") && !points.is_empty() {
                self.non_counter_info(&s.labels);
            }
            if !points.is_empty() {
                out.push(Ser { labels: s.labels.clone(), drop_name: !keep_name || s.drop_name, points });
            }
        }
        Ok(Val::Vector(out))
    }

    fn non_counter_info(&self, l: &Labels) {
        if let Some(n) = l.metric_name() {
            if !["_total", "_sum", "_count", "_bucket"].iter().any(|s| n.ends_with(s)) {
                self.info(format!(
                    "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {n:?}"
                ));
            }
        }
    }

    fn range_kernel(
        &self,
        name: &str,
        w: &[Sample],
        range_start: i64,
        range_end: i64,
        t: i64,
        sc: &dyn Fn(usize) -> f64,
    ) -> Result<Option<f64>, EngineError> {
        Ok(match name {
            "rate" => k::extrapolated_rate(w, range_start, range_end, true, true),
            "increase" => k::extrapolated_rate(w, range_start, range_end, true, false),
            "delta" => k::extrapolated_rate(w, range_start, range_end, false, false),
            "irate" => k::instant_rate(w, true),
            "idelta" => k::instant_rate(w, false),
            "deriv" => k::deriv(w),
            "predict_linear" => k::predict_linear(w, t, sc(0)),
            "resets" => k::resets(w),
            "changes" => k::changes(w),
            "avg_over_time" => k::avg_over_time(w),
            "sum_over_time" => k::sum_over_time(w),
            "min_over_time" => k::min_over_time(w),
            "max_over_time" => k::max_over_time(w),
            "count_over_time" => k::count_over_time(w),
            "last_over_time" => k::last_over_time(w),
            "first_over_time" => k::first_over_time(w),
            "present_over_time" => k::present_over_time(w),
            "stddev_over_time" => k::stddev_over_time(w),
            "stdvar_over_time" => k::stdvar_over_time(w),
            "mad_over_time" => k::mad_over_time(w),
            "quantile_over_time" => k::quantile_over_time(sc(0), w),
            "ts_of_min_over_time" => k::ts_of_min_over_time(w),
            "ts_of_max_over_time" => k::ts_of_max_over_time(w),
            "ts_of_last_over_time" => k::ts_of_last_over_time(w),
            "ts_of_first_over_time" => k::ts_of_first_over_time(w),
            "double_exponential_smoothing" | "holt_winters" => {
                k::double_exponential_smoothing(w, sc(0), sc(1)).map_err(|e| EngineError::Execution(e.to_string()))?
            }
            other => return Err(EngineError::Execution(format!("function {other} is not supported"))),
        })
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
