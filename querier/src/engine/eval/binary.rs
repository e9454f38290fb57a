//! Binary operators: arithmetic, comparisons (filtering or `bool`), set
//! operators, with `on`/`ignoring` matching and `group_left`/`group_right`.

use super::{Evaluator, Out, Ser, Val};
use crate::engine::EngineError;
use aion_model::Labels;
use promql_parser::parser::token::*;
use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};
use std::collections::HashMap;

/// Applies an operator to two floats: `(value, keep)`; comparisons keep when true.
pub(crate) fn apply_op(op: TokenId, l: f64, r: f64) -> (f64, bool) {
    match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_POW => (l.powf(r), true),
        T_MOD => (l % r, true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => (f64::NAN, false),
    }
}

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Matching signature of `l`: `on` keeps the listed labels; otherwise drops
/// them and always `__name__`.
pub(crate) fn signature(l: &Labels, m: Option<&LabelModifier>) -> Labels {
    match m {
        Some(LabelModifier::Include(names)) => l.keep_only(&names.labels),
        Some(LabelModifier::Exclude(names)) => l.without_metric_name().drop_names(&names.labels),
        None => l.without_metric_name(),
    }
}

impl Evaluator<'_> {
    /// Evaluates a binary expression.
    pub(crate) fn eval_binary(&self, b: &BinaryExpr) -> Result<Val, EngineError> {
        let op = b.op.id();
        let ret_bool = b.return_bool();
        let lhs = self.eval(&b.lhs)?;
        let rhs = self.eval(&b.rhs)?;
        match (lhs, rhs) {
            (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
                l.iter()
                    .zip(&r)
                    .map(|(a, b)| {
                        let (v, keep) = apply_op(op, *a, *b);
                        if is_comparison(op) {
                            if keep { 1.0 } else { 0.0 }
                        } else {
                            v
                        }
                    })
                    .collect(),
            )),
            (Val::Vector(v), Val::Scalar(s)) => Ok(Val::Vector(self.vector_scalar(op, v, &s, false, ret_bool))),
            (Val::Scalar(s), Val::Vector(v)) => Ok(Val::Vector(self.vector_scalar(op, v, &s, true, ret_bool))),
            (Val::Vector(l), Val::Vector(r)) => {
                let m = b.modifier.as_ref();
                match op {
                    T_LAND | T_LOR | T_LUNLESS => Ok(Val::Vector(self.set_op(op, l, r, m))),
                    _ => Ok(Val::Vector(self.vector_vector(op, l, r, m, ret_bool)?)),
                }
            }
            _ => Err(EngineError::Execution(format!("binary operator not supported on these operand types in {b}"))),
        }
    }

    fn vector_scalar(&self, op: TokenId, mut v: Vec<Ser>, s: &[f64], swap: bool, ret_bool: bool) -> Vec<Ser> {
        let cmp = is_comparison(op);
        for ser in &mut v {
            ser.points.retain_mut(|p| {
                let sv = s[self.step_of(p.t)];
                let (l, r) = if swap { (sv, p.v) } else { (p.v, sv) };
                let (mut val, keep) = apply_op(op, l, r);
                if cmp && swap {
                    val = p.v;
                }
                if ret_bool {
                    p.v = if keep { 1.0 } else { 0.0 };
                    return true;
                }
                p.v = val;
                keep
            });
            if !cmp || ret_bool {
                ser.drop_name = true;
            }
        }
        v.retain(|s| !s.points.is_empty());
        v
    }

    fn set_op(&self, op: TokenId, l: Vec<Ser>, r: Vec<Ser>, m: Option<&BinModifier>) -> Vec<Ser> {
        let matching = m.and_then(|m| m.matching.as_ref());
        let lsig: Vec<Labels> = l.iter().map(|s| signature(&s.labels, matching)).collect();
        let rsig: Vec<Labels> = r.iter().map(|s| signature(&s.labels, matching)).collect();
        let steps = self.steps();
        // Per step: which signatures each side has.
        fn present<'s>(ev: &Evaluator<'_>, v: &[Ser], sigs: &'s [Labels], steps: usize) -> Vec<std::collections::HashSet<&'s Labels>> {
            let mut per: Vec<std::collections::HashSet<&'s Labels>> = vec![Default::default(); steps];
            for (s, sig) in v.iter().zip(sigs) {
                for p in &s.points {
                    per[ev.step_of(p.t)].insert(sig);
                }
            }
            per
        }
        match op {
            T_LAND | T_LUNLESS => {
                let rp = present(self, &r, &rsig, steps);
                let want = op == T_LAND;
                let mut out = l;
                for (s, sig) in out.iter_mut().zip(&lsig) {
                    s.points.retain(|p| rp[self.step_of(p.t)].contains(sig) == want);
                }
                out.retain(|s| !s.points.is_empty());
                out
            }
            _ => {
                let lp = present(self, &l, &lsig, steps);
                let mut extra = r;
                for (s, sig) in extra.iter_mut().zip(&rsig) {
                    s.points.retain(|p| !lp[self.step_of(p.t)].contains(sig));
                }
                let mut out = l;
                out.extend(extra.into_iter().filter(|s| !s.points.is_empty()));
                out
            }
        }
    }

    fn vector_vector(
        &self,
        op: TokenId,
        l: Vec<Ser>,
        r: Vec<Ser>,
        m: Option<&BinModifier>,
        ret_bool: bool,
    ) -> Result<Vec<Ser>, EngineError> {
        let card = m.map(|m| m.card.clone()).unwrap_or(VectorMatchCardinality::OneToOne);
        let matching = m.and_then(|m| m.matching.as_ref());
        // The "one" side is the rhs unless group_right.
        let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
        let (many, one) = if one_to_many { (&r, &l) } else { (&l, &r) };
        let msig: Vec<Labels> = many.iter().map(|s| signature(&s.labels, matching)).collect();
        let osig: Vec<Labels> = one.iter().map(|s| signature(&s.labels, matching)).collect();
        let include: Vec<String> = card.labels().map(|l| l.labels.clone()).unwrap_or_default();
        let cmp = is_comparison(op);
        let drop = !cmp || ret_bool;
        // `fill_left` fills a missing "many" side, `fill_right` a missing "one" side.
        let fill_many = m.and_then(|m| m.fill_values.lhs);
        let fill_one = m.and_then(|m| m.fill_values.rhs);
        let many_steps = self.by_step(many);
        let one_steps = self.by_step(one);
        let mut out = Out::default();
        let mut label_cache: HashMap<(usize, usize), Labels> = HashMap::new();
        for (step, (ms, os)) in many_steps.iter().zip(&one_steps).enumerate() {
            let t = self.ts(step);
            let mut one_by_sig: HashMap<&Labels, (usize, f64)> = HashMap::with_capacity(os.len());
            for &(oi, ov) in os {
                if let Some(&(prev, _)) = one_by_sig.get(&osig[oi]) {
                    let side = if one_to_many { "left" } else { "right" };
                    return Err(EngineError::Execution(format!(
                        "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                        match_group(&one[oi].labels, matching),
                        show(&one[prev].labels),
                        show(&one[oi].labels)
                    )));
                }
                one_by_sig.insert(&osig[oi], (oi, ov));
            }
            let mut matched: HashMap<&Labels, Vec<Labels>> = HashMap::new();
            for &(mi, mv) in ms {
                let Some(&(oi, ov)) = one_by_sig.get(&msig[mi]) else {
                    if let Some(f) = fill_one {
                        let (lv, rv) = if one_to_many { (f, mv) } else { (mv, f) };
                        if let Some(v) = fill_value(op, lv, rv, ret_bool) {
                            let labels = result_labels(&many[mi].labels, &Labels::empty(), &card, matching, &include);
                            out.push(labels, drop || many[mi].drop_name, t, v)?;
                        }
                    }
                    continue;
                };
                let (lv, rv) = if one_to_many { (ov, mv) } else { (mv, ov) };
                let (mut v, keep) = apply_op(op, lv, rv);
                let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
                // Matching errors count every match, also those filtered away below.
                if !one_to_one {
                    matched.entry(&msig[mi]).or_default();
                } else if matched.insert(&msig[mi], Vec::new()).is_some() {
                    return Err(EngineError::Execution(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                            .into(),
                    ));
                }
                if ret_bool {
                    v = if keep { 1.0 } else { 0.0 };
                } else if !keep {
                    continue;
                }
                let labels = label_cache
                    .entry((mi, oi))
                    .or_insert_with(|| result_labels(&many[mi].labels, &one[oi].labels, &card, matching, &include))
                    .clone();
                let seen = matched.entry(&msig[mi]).or_default();
                if one_to_one {
                } else if seen.contains(&labels) {
                    return Err(EngineError::Execution(
                        "multiple matches for labels: grouping labels must ensure unique matches".into(),
                    ));
                }
                seen.push(labels.clone());
                out.push(labels, drop || many[mi].drop_name, t, v)?;
            }
            if let Some(f) = fill_many {
                // "One"-side series nothing matched: a series of the match group's labels.
                for &(oi, ov) in os {
                    if matched.contains_key(&osig[oi]) {
                        continue;
                    }
                    let (lv, rv) = if one_to_many { (ov, f) } else { (f, ov) };
                    if let Some(v) = fill_value(op, lv, rv, ret_bool) {
                        out.push(osig[oi].clone(), true, t, v)?;
                    }
                }
            }
        }
        Ok(out.series)
    }
}

/// The value of a filled-in pair, `None` when a comparison filters it out.
fn fill_value(op: TokenId, l: f64, r: f64, ret_bool: bool) -> Option<f64> {
    let (v, keep) = apply_op(op, l, r);
    if ret_bool {
        Some(if keep { 1.0 } else { 0.0 })
    } else {
        keep.then_some(v)
    }
}

fn result_labels(
    many: &Labels,
    one: &Labels,
    card: &VectorMatchCardinality,
    matching: Option<&LabelModifier>,
    include: &[String],
) -> Labels {
    let mut l = many.clone();
    if matches!(card, VectorMatchCardinality::OneToOne) {
        l = match matching {
            Some(LabelModifier::Include(names)) => l.keep_only(&names.labels),
            Some(LabelModifier::Exclude(names)) => l.drop_names(&names.labels),
            None => l,
        };
    }
    for n in include {
        match one.get(n) {
            Some(v) => l.set(n, v),
            None => l.remove(n),
        }
    }
    l
}

fn match_group(l: &Labels, m: Option<&LabelModifier>) -> String {
    show(&signature(l, m))
}

/// Prometheus's `{a="b", ...}` form including `__name__` as a label.
pub(crate) fn show(l: &Labels) -> String {
    let items: Vec<String> = l.iter().map(|x| format!("{}={:?}", x.name, x.value)).collect();
    format!("{{{}}}", items.join(", "))
}
