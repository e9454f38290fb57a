//! Function calls on instant vectors and scalars; range-vector functions are
//! in `call_range`, classic-histogram functions in `call_hist`.

use super::call_range::is_range_function;
use super::{dup_labelset, Evaluator, Ser, Val};
use crate::engine::functions::labels::{LabelJoin, LabelReplace};
use crate::engine::functions::{date, math};
use crate::engine::EngineError;
use aion_model::{Labels, Sample};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{Call, Expr, VectorSelector};
use std::cmp::Ordering;
use std::collections::HashMap;

/// Labels `absent()` reports for a selector: its `=` matchers except the name.
pub(crate) fn absent_labels(vs: &VectorSelector) -> Labels {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut dup: Vec<String> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == "__name__" {
            continue;
        }
        if matches!(m.op, PMatchOp::Equal) && !pairs.iter().any(|(n, _)| *n == m.name) {
            pairs.push((m.name.clone(), m.value.clone()));
        } else if pairs.iter().any(|(n, _)| *n == m.name) {
            dup.push(m.name.clone());
        }
    }
    pairs.retain(|(n, _)| !dup.contains(n));
    Labels::from_pairs(pairs)
}

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

/// Merges series that share labels (after a relabelling function), failing
/// when two of them have a sample at the same step.
pub(crate) fn merge_same_labels(v: Vec<Ser>) -> Result<Vec<Ser>, EngineError> {
    let mut idx: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<Ser> = Vec::with_capacity(v.len());
    for s in v {
        match idx.get(&s.labels) {
            Some(&i) => {
                let o = &mut out[i];
                o.points.extend(s.points);
                o.points.sort_by_key(|p| p.t);
                if o.points.windows(2).any(|w| w[0].t == w[1].t) {
                    return Err(dup_labelset());
                }
            }
            None => {
                idx.insert(s.labels.clone(), out.len());
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// Natural ordering of strings: runs of digits compare by number.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (da, db) = (&a[..na], &b[..nb]);
                let ta = da.iter().skip_while(|c| **c == b'0').count();
                let tb = db.iter().skip_while(|c| **c == b'0').count();
                let ord = ta.cmp(&tb).then_with(|| da[na - ta..].cmp(&db[nb - tb..]));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

impl Evaluator<'_> {
    /// Evaluates a function call.
    pub(crate) fn eval_call(&self, c: &Call) -> Result<Val, EngineError> {
        let name = c.func.name;
        let args = &c.args.args;
        if is_range_function(name) {
            return self.eval_range_call(c);
        }
        match name {
            "time" => Ok(Val::Scalar((0..self.steps()).map(|i| self.ts(i) as f64 / 1000.0).collect())),
            "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; self.steps()])),
            "step" => Ok(Val::Scalar(vec![self.query_step as f64 / 1000.0; self.steps()])),
            "range" => Ok(Val::Scalar(vec![(self.query_end - self.query_start) as f64 / 1000.0; self.steps()])),
            "start" => Ok(Val::Scalar(vec![self.query_start as f64 / 1000.0; self.steps()])),
            "end" => Ok(Val::Scalar(vec![self.query_end as f64 / 1000.0; self.steps()])),
            "min_of" | "max_of" => {
                let mut acc = self.eval_scalar(&args[0])?;
                for a in &args[1..] {
                    let b = self.eval_scalar(a)?;
                    for (x, y) in acc.iter_mut().zip(b) {
                        *x = if name == "min_of" { math::go_min(*x, y) } else { math::go_max(*x, y) };
                    }
                }
                Ok(Val::Scalar(acc))
            }
            "vector" => {
                let s = self.eval_scalar(&args[0])?;
                let points = s.iter().enumerate().map(|(i, v)| Sample::new(self.ts(i), *v)).collect();
                Ok(Val::Vector(vec![Ser { labels: Labels::empty(), drop_name: false, points }]))
            }
            "scalar" => self.fn_scalar(&args[0]),
            "absent" => self.fn_absent(&args[0]),
            "timestamp" => self.fn_timestamp(&args[0]),
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => self.fn_sort(c, args),
            "label_replace" | "label_join" => self.fn_label(name, args),
            "histogram_quantile" | "histogram_quantiles" | "histogram_fraction" => self.eval_hist_call(c),
            "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev" | "histogram_stdvar" => {
                self.eval_vector(&args[0])?;
                Ok(Val::Vector(Vec::new()))
            }
            "info" => self.fn_info(args),
            n if date::is_date_function(n) => self.fn_date(n, args),
            _ => self.fn_elementwise(name, args),
        }
    }

    fn fn_scalar(&self, arg: &Expr) -> Result<Val, EngineError> {
        let v = self.eval_vector(arg)?;
        let mut out = vec![f64::NAN; self.steps()];
        let mut count = vec![0u32; self.steps()];
        for s in &v {
            for p in &s.points {
                let i = self.step_of(p.t);
                count[i] += 1;
                out[i] = p.v;
            }
        }
        for (o, c) in out.iter_mut().zip(count) {
            if c != 1 {
                *o = f64::NAN;
            }
        }
        Ok(Val::Scalar(out))
    }

    fn fn_absent(&self, arg: &Expr) -> Result<Val, EngineError> {
        let v = self.eval_vector(arg)?;
        let mut present = vec![false; self.steps()];
        for s in &v {
            for p in &s.points {
                present[self.step_of(p.t)] = true;
            }
        }
        let labels = match unwrap_parens(arg) {
            Expr::VectorSelector(vs) => absent_labels(vs),
            _ => Labels::empty(),
        };
        let points: Vec<Sample> =
            (0..self.steps()).filter(|i| !present[*i]).map(|i| Sample::new(self.ts(i), 1.0)).collect();
        if points.is_empty() {
            return Ok(Val::Vector(Vec::new()));
        }
        Ok(Val::Vector(vec![Ser { labels, drop_name: false, points }]))
    }

    fn fn_timestamp(&self, arg: &Expr) -> Result<Val, EngineError> {
        let mut v = match unwrap_parens(arg) {
            Expr::VectorSelector(vs) => self.eval_selector_timestamps(vs)?,
            other => {
                let mut v = self.eval_vector(other)?;
                for s in &mut v {
                    s.points.iter_mut().for_each(|p| p.v = p.t as f64 / 1000.0);
                }
                v
            }
        };
        v.iter_mut().for_each(|s| s.drop_name = true);
        Ok(Val::Vector(v))
    }

    fn fn_sort(&self, c: &Call, args: &[Box<Expr>]) -> Result<Val, EngineError> {
        let name = c.func.name;
        let mut v = self.eval_vector(&args[0])?;
        if self.start != self.end {
            {
                self.warn(format!(
                    "sort is ineffective for range queries since results are always ordered by labels{}",
                    self.pos(c, None)
                ));
            }
            return Ok(Val::Vector(v));
        }
        let val = |s: &Ser| s.points.first().map_or(f64::NAN, |p| p.v);
        match name {
            "sort" => v.sort_by(|a, b| {
                let (x, y) = (val(a), val(b));
                match (x.is_nan(), y.is_nan()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    _ => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
                }
            }),
            "sort_desc" => v.sort_by(|a, b| {
                let (x, y) = (val(a), val(b));
                match (x.is_nan(), y.is_nan()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    _ => y.partial_cmp(&x).unwrap_or(Ordering::Equal),
                }
            }),
            _ => {
                let mut names = Vec::new();
                for a in &args[1..] {
                    match self.eval(a)? {
                        Val::String(s) => names.push(s),
                        _ => return Err(EngineError::Execution(format!("{name} needs label names as strings"))),
                    }
                }
                let desc = name == "sort_by_label_desc";
                v.sort_by(|a, b| {
                    let mut ord = Ordering::Equal;
                    for n in &names {
                        ord = natural_cmp(a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
                        if ord != Ordering::Equal {
                            break;
                        }
                    }
                    let ord = ord.then_with(|| a.labels.cmp(&b.labels));
                    if desc {
                        ord.reverse()
                    } else {
                        ord
                    }
                });
            }
        }
        Ok(Val::Vector(v))
    }

    fn string_arg(&self, e: &Expr) -> Result<String, EngineError> {
        match self.eval(e)? {
            Val::String(s) => Ok(s),
            _ => Err(EngineError::Execution(format!("expected a string, got {e}"))),
        }
    }

    fn fn_label(&self, name: &str, args: &[Box<Expr>]) -> Result<Val, EngineError> {
        let mut strs = Vec::new();
        for a in &args[1..] {
            strs.push(self.string_arg(a)?);
        }
        let exec = |e: crate::engine::functions::FunctionError| EngineError::Execution(e.to_string());
        self.check_label_name(&strs[0])?;
        if name == "label_join" {
            strs[2..].iter().try_for_each(|s| self.check_label_name(s))?;
        }
        let mut v = self.eval_vector(&args[0])?;
        if name == "label_replace" {
            let op = LabelReplace::new(&strs[0], &strs[1], &strs[2], &strs[3]).map_err(exec)?;
            for s in &mut v {
                if let Some(l) = op.apply(&s.labels) {
                    s.labels = l;
                    if op.dst() == "__name__" {
                        s.drop_name = false;
                    }
                }
            }
        } else {
            let op = LabelJoin::new(&strs[0], &strs[1], &strs[2..]).map_err(exec)?;
            for s in &mut v {
                s.labels = op.apply(&s.labels);
                if op.dst() == "__name__" {
                    s.drop_name = false;
                }
            }
        }
        Ok(Val::Vector(merge_same_labels(v)?))
    }

    fn fn_date(&self, name: &str, args: &[Box<Expr>]) -> Result<Val, EngineError> {
        let mut v = match args.first() {
            Some(a) => self.eval_vector(a)?,
            None => {
                let points = (0..self.steps()).map(|i| Sample::new(self.ts(i), self.ts(i) as f64 / 1000.0)).collect();
                vec![Ser { labels: Labels::empty(), drop_name: false, points }]
            }
        };
        for s in &mut v {
            s.drop_name = true;
            s.points.iter_mut().for_each(|p| p.v = date::apply_date(name, p.v).unwrap_or(f64::NAN));
        }
        Ok(Val::Vector(v))
    }

    fn fn_elementwise(&self, name: &str, args: &[Box<Expr>]) -> Result<Val, EngineError> {
        if args.is_empty() {
            return Err(EngineError::Execution(format!("function {name} is not supported")));
        }
        let mut scalars = Vec::new();
        for a in &args[1..] {
            scalars.push(self.eval_scalar(a)?);
        }
        let mut v = self.eval_vector(&args[0])?;
        if math::apply_math(name, 0.0).is_none() && !matches!(name, "round" | "clamp" | "clamp_min" | "clamp_max") {
            return Err(EngineError::Execution(format!("function {name} is not supported")));
        }
        for s in &mut v {
            s.drop_name = true;
            s.points.retain_mut(|p| {
                let i = self.step_of(p.t);
                let r = match name {
                    "round" => Some(math::round(p.v, scalars.first().map_or(1.0, |x| x[i]))),
                    "clamp" => math::clamp(p.v, scalars[0][i], scalars[1][i]),
                    "clamp_min" => Some(math::clamp_min(p.v, scalars[0][i])),
                    "clamp_max" => Some(math::clamp_max(p.v, scalars[0][i])),
                    n => math::apply_math(n, p.v),
                };
                match r {
                    Some(x) => {
                        p.v = x;
                        true
                    }
                    None => false,
                }
            });
        }
        v.retain(|s| !s.points.is_empty());
        Ok(Val::Vector(v))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_compares_numbers() {
        assert_eq!(natural_cmp("a2", "a10"), Ordering::Less);
        assert_eq!(natural_cmp("b", "a10"), Ordering::Greater);
        assert_eq!(natural_cmp("x", "x"), Ordering::Equal);
    }
}
