//! Classic-histogram functions: `histogram_quantile`, `histogram_quantiles`
//! and `histogram_fraction` over `le` buckets grouped per step.

use super::aggregate::go_g;
use super::{Evaluator, Out, Ser, Val};
use crate::engine::functions::histogram::{
    bucket_fraction, format_quantile_label, histogram_quantile, parse_bucket_bound, Bucket,
};
use crate::engine::EngineError;
use aion_model::Labels;
use promql_parser::parser::Call;
use std::collections::HashMap;

/// What to compute from one histogram's buckets.
enum HistFn {
    Quantile(Vec<f64>),
    Quantiles(String, Vec<Vec<f64>>),
    Fraction(Vec<f64>, Vec<f64>),
}

impl Evaluator<'_> {
    /// Evaluates `histogram_quantile`, `histogram_quantiles` or `histogram_fraction`.
    pub(crate) fn eval_hist_call(&self, c: &Call) -> Result<Val, EngineError> {
        let (name, args) = (c.func.name, &c.args.args);
        let (f, input) = match name {
            "histogram_quantile" => (HistFn::Quantile(self.eval_scalar(&args[0])?), &args[1]),
            "histogram_quantiles" => {
                let label = match self.eval(&args[1])? {
                    Val::String(s) => s,
                    _ => return Err(EngineError::Execution("histogram_quantiles needs a label name".into())),
                };
                let qs = args[2..].iter().map(|a| self.eval_scalar(a)).collect::<Result<Vec<_>, _>>()?;
                (HistFn::Quantiles(label, qs), &args[0])
            }
            _ => (HistFn::Fraction(self.eval_scalar(&args[0])?, self.eval_scalar(&args[1])?), &args[2]),
        };
        let qcheck = |q: f64, arg: usize| {
            if !(0.0..=1.0).contains(&q) {
                let pos = self.pos(c, Some(arg));
                self.warn(format!("quantile value should be between 0 and 1, got {}{pos}", go_g(q)));
            }
        };
        match &f {
            HistFn::Quantile(q) => q.iter().for_each(|q| qcheck(*q, 0)),
            HistFn::Quantiles(_, qs) => {
                qs.iter().enumerate().for_each(|(j, q)| q.iter().for_each(|q| qcheck(*q, j + 2)))
            }
            HistFn::Fraction(..) => {}
        }
        let v = self.eval_vector(input)?;
        let input_arg = match name {
            "histogram_quantile" => 1,
            "histogram_quantiles" => 0,
            _ => 2,
        };
        Ok(Val::Vector(self.hist_apply(&f, &v, &self.pos(c, Some(input_arg)))?))
    }

    fn hist_apply(&self, f: &HistFn, v: &[Ser], pos: &str) -> Result<Vec<Ser>, EngineError> {
        // Group series by labels without `le`; skip series with a bad `le`.
        let mut gidx: HashMap<Labels, usize> = HashMap::new();
        let mut glabels: Vec<Labels> = Vec::new();
        let mut of_series: Vec<Option<(usize, f64)>> = Vec::with_capacity(v.len());
        for s in v {
            let le = s.labels.get("le").unwrap_or("");
            let Some(bound) = parse_bucket_bound(le) else {
                let n = s.labels.metric_name().unwrap_or("");
                self.warn(format!(
                    "bucket label \"le\" is missing or has a malformed value of {le:?} for metric name {n:?}{pos}"
                ));
                of_series.push(None);
                continue;
            };
            let mut key = s.labels.clone();
            key.remove("le");
            let next = glabels.len();
            let gi = *gidx.entry(key.clone()).or_insert(next);
            if gi == next {
                glabels.push(key);
            }
            of_series.push(Some((gi, bound)));
        }
        let steps = self.by_step(v);
        let mut out = Out::default();
        // Reused across steps: per-group buckets and output slots.
        let mut buckets: Vec<Vec<Bucket>> = vec![Vec::new(); glabels.len()];
        let mut slots: Vec<Option<usize>> = vec![None; glabels.len()];
        let mut order: Vec<usize> = Vec::new();
        for (step, pts) in steps.iter().enumerate() {
            for gi in order.drain(..) {
                buckets[gi].clear();
            }
            for &(si, val) in pts {
                if let Some((gi, bound)) = of_series[si] {
                    if buckets[gi].is_empty() {
                        order.push(gi);
                    }
                    buckets[gi].push(Bucket::new(bound, val));
                }
            }
            let t = self.ts(step);
            for &gi in &order {
                let b = &mut buckets[gi];
                let l = &glabels[gi];
                match f {
                    HistFn::Quantile(q) => {
                        let r = self.quantile_with_info(q[step], b, l, pos);
                        let slot = *slots[gi].get_or_insert_with(|| out.slot(l));
                        out.push_at(slot, true, t, r)?;
                    }
                    HistFn::Quantiles(label, qs) => {
                        for q in qs {
                            let r = self.quantile_with_info(q[step], &mut b.clone(), l, pos);
                            let mut ol = l.clone();
                            ol.set(label, &format_quantile_label(q[step]));
                            out.push(ol, true, t, r)?;
                        }
                    }
                    HistFn::Fraction(lo, hi) => {
                        let slot = *slots[gi].get_or_insert_with(|| out.slot(l));
                        out.push_at(slot, true, t, bucket_fraction(lo[step], hi[step], b))?;
                    }
                }
            }
        }
        Ok(out.series)
    }

    fn quantile_with_info(&self, q: f64, b: &mut Vec<Bucket>, l: &Labels, pos: &str) -> f64 {
        let r = histogram_quantile(q, b);
        if r.forced_monotonicity {
            let n = l.metric_name().unwrap_or("");
            self.info(format!(
                "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {n:?}{pos}"
            ));
        }
        r.value
    }
}
