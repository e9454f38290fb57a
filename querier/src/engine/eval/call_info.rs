//! `info(v, {selector})`: enriches series with the data labels of info
//! metrics (default `target_info`) that share their identifying labels
//! (`instance`, `job`), looked up at each sample's reference time (the step
//! time moved by the `@`/`offset` of the base expression).

use super::selector::convert_matcher;
use super::{Evaluator, Out, Ser, Val};
use crate::engine::EngineError;
use aion_model::sample::is_stale_nan;
use aion_model::storage::{SelectHints, Series};
use aion_model::{Labels, MatchOp, Matcher, Sample};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::Expr;
use std::collections::HashMap;

const IDENTIFYING: [&str; 2] = ["instance", "job"];

/// The info-series selector split into `__name__` and data-label matchers.
struct InfoSelector {
    names: Vec<Matcher>,
    data: Vec<Matcher>,
}

impl Evaluator<'_> {
    /// Evaluates `info()`.
    pub(crate) fn fn_info(&self, args: &[Box<Expr>]) -> Result<Val, EngineError> {
        let base = self.eval_vector(&args[0])?;
        let sel = self.info_selector(args.get(1).map(|a| &**a))?;
        let refs: Vec<i64> = (0..self.steps()).map(|i| self.ref_time(&args[0], self.ts(i))).collect();
        let positive = sel.names.iter().any(|m| matches!(m.op, MatchOp::Equal | MatchOp::Regex));
        let mut matchers = sel.names.clone();
        if sel.names.is_empty() {
            matchers.push(Matcher::equal("__name__", "target_info"));
        } else if !positive {
            matchers.push(
                Matcher::new(MatchOp::Regex, "__name__", ".+_info")
                    .map_err(|e| EngineError::Execution(e.to_string()))?,
            );
        }
        matchers.extend(sel.data.iter().cloned());
        let lo = refs.iter().copied().min().unwrap_or(self.start);
        let hi = refs.iter().copied().max().unwrap_or(self.end);
        let hints = SelectHints { start: lo - self.shared.lookback + 1, end: hi };
        let infos = self.storage.select(self.tenant, &hints, &matchers)?;
        self.add_samples(infos.iter().map(|s| s.samples.len()).sum())?;
        let mut by_id: HashMap<[&str; 2], Vec<usize>> = HashMap::new();
        for (i, s) in infos.iter().enumerate() {
            by_id.entry(IDENTIFYING.map(|n| s.labels.get(n).unwrap_or(""))).or_default().push(i);
        }
        let must_match = sel.data.iter().any(|m| !m.matches_empty());
        let mut out = Out::default();
        for s in &base {
            let is_info = positive && sel.names.iter().all(|m| m.matches_labels(&s.labels));
            let id = IDENTIFYING.map(|n| s.labels.get(n).unwrap_or(""));
            let cands: &[usize] = match by_id.get(&id) {
                Some(c) if !is_info && id.iter().any(|v| !v.is_empty()) => c,
                _ => &[],
            };
            for p in &s.points {
                let r = refs[self.step_of(p.t)];
                match self.info_labels(s, cands, &infos, r, &sel)? {
                    Some(l) => out.push(l, s.drop_name, p.t, p.v)?,
                    None if must_match && !is_info => {}
                    None => out.push(s.labels.clone(), s.drop_name, p.t, p.v)?,
                }
            }
        }
        Ok(Val::Vector(out.series))
    }

    fn info_selector(&self, e: Option<&Expr>) -> Result<InfoSelector, EngineError> {
        let mut sel = InfoSelector { names: Vec::new(), data: Vec::new() };
        let Some(e) = e else { return Ok(sel) };
        let Expr::VectorSelector(vs) = e else {
            return Err(EngineError::Execution("info() needs a label selector as its second argument".into()));
        };
        if let Some(n) = &vs.name {
            sel.names.push(Matcher::equal("__name__", n));
        }
        for m in vs.matchers.matchers.iter().filter(|m| m.name != crate::engine::plan::INFO_MARKER) {
            let c = convert_matcher(m)?;
            if c.name == "__name__" {
                sel.names.push(c);
            } else {
                sel.data.push(c);
            }
        }
        Ok(sel)
    }

    /// Labels of `s` enriched at reference time `r`; `None` when no info series is current.
    fn info_labels(
        &self,
        s: &Ser,
        cands: &[usize],
        infos: &[Series],
        r: i64,
        sel: &InfoSelector,
    ) -> Result<Option<Labels>, EngineError> {
        // The newest current series of each info metric name.
        let mut chosen: Vec<(&str, i64, usize)> = Vec::new();
        for &ci in cands {
            let Some(t) = current_sample(&infos[ci].samples, r, self.shared.lookback).map(|p| p.t) else { continue };
            let name = infos[ci].labels.metric_name().unwrap_or("");
            match chosen.iter_mut().find(|c| c.0 == name) {
                Some(c) if c.1 < t => *c = (name, t, ci),
                Some(_) => {}
                None => chosen.push((name, t, ci)),
            }
        }
        if chosen.is_empty() {
            return Ok(None);
        }
        let mut l = s.labels.clone();
        let mut added: Vec<(&str, &str)> = Vec::new();
        for &(_, _, ci) in &chosen {
            for lab in infos[ci].labels.iter() {
                let n = lab.name.as_str();
                if n == "__name__" || IDENTIFYING.contains(&n) || s.labels.get(n).is_some() {
                    continue;
                }
                if !sel.data.is_empty() && !sel.data.iter().any(|m| m.name == n) {
                    continue;
                }
                match added.iter().find(|(an, _)| *an == n) {
                    Some((_, v)) if *v != lab.value => {
                        return Err(EngineError::Execution(format!(
                            "conflicting label: {n} has values {v:?} and {:?} in info series",
                            lab.value
                        )))
                    }
                    Some(_) => {}
                    None => added.push((n, &lab.value)),
                }
            }
        }
        for (n, v) in added {
            l.set(n, v);
        }
        Ok(Some(l))
    }

    /// The time `e`'s samples are read at for evaluation time `t` (`@`/`offset` applied).
    fn ref_time(&self, e: &Expr, t: i64) -> i64 {
        match e {
            Expr::VectorSelector(vs) => self.at_ms(&vs.at).unwrap_or(t) - Self::offset_ms(&vs.offset),
            Expr::MatrixSelector(ms) => self.at_ms(&ms.vs.at).unwrap_or(t) - Self::offset_ms(&ms.vs.offset),
            Expr::Subquery(sq) => {
                self.ref_time(&sq.expr, self.at_ms(&sq.at).unwrap_or(t) - Self::offset_ms(&sq.offset))
            }
            Expr::Paren(p) => self.ref_time(&p.expr, t),
            Expr::Unary(u) => self.ref_time(&u.expr, t),
            Expr::Aggregate(a) => self.ref_time(&a.expr, t),
            Expr::Binary(b) if b.lhs.value_type() == ValueType::Vector => self.ref_time(&b.lhs, t),
            Expr::Binary(b) => self.ref_time(&b.rhs, t),
            Expr::Call(c) => c
                .args
                .args
                .iter()
                .find(|a| matches!(a.value_type(), ValueType::Vector | ValueType::Matrix))
                .map_or(t, |a| self.ref_time(a, t)),
            _ => t,
        }
    }
}

/// The newest non-stale sample within the lookback window ending at `r`.
fn current_sample(s: &[Sample], r: i64, lookback: i64) -> Option<Sample> {
    let i = s.partition_point(|p| p.t <= r);
    let p = *s.get(i.checked_sub(1)?)?;
    (p.t > r - lookback && !is_stale_nan(p.v)).then_some(p)
}
