//! Binary operators: arithmetic, comparisons (filtering or `bool`), set
//! operators, with `on`/`ignoring` matching and `group_left`/`group_right`.

use super::{Evaluator, Interner, Out, Ser, Val};
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
        let both = match self.pushed_down_pair(b)? {
            Some(both) => Some(both),
            None => self.fused_pair(b)?,
        };
        let (lhs, rhs) = match both {
            Some(both) => both,
            None => (self.eval(&b.lhs)?, self.eval(&b.rhs)?),
        };
        match (lhs, rhs) {
            (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
                l.iter()
                    .zip(&r)
                    .map(|(a, b)| {
                        let (v, keep) = apply_op(op, *a, *b);
                        if is_comparison(op) {
                            if keep {
                                1.0
                            } else {
                                0.0
                            }
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
        let mut sigs = Interner::default();
        let lsig: Vec<usize> = l.iter().map(|s| sigs.id(signature(&s.labels, matching))).collect();
        let rsig: Vec<usize> = r.iter().map(|s| sigs.id(signature(&s.labels, matching))).collect();
        let n = sigs.labels.len();
        // present[step * n + sig]: the side has that signature at that step.
        let present = |v: &[Ser], ids: &[usize]| {
            let mut p = vec![false; self.steps() * n];
            for (s, &id) in v.iter().zip(ids) {
                for pt in &s.points {
                    p[self.step_of(pt.t) * n + id] = true;
                }
            }
            p
        };
        match op {
            T_LAND | T_LUNLESS => {
                let rp = present(&r, &rsig);
                let want = op == T_LAND;
                let mut out = l;
                for (s, &id) in out.iter_mut().zip(&lsig) {
                    s.points.retain(|p| rp[self.step_of(p.t) * n + id] == want);
                }
                out.retain(|s| !s.points.is_empty());
                out
            }
            _ => {
                let lp = present(&l, &lsig);
                let mut extra = r;
                for (s, &id) in extra.iter_mut().zip(&rsig) {
                    s.points.retain(|p| !lp[self.step_of(p.t) * n + id]);
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
        // The "one" side is the rhs unless group_right.
        let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
        let (many, one) = if one_to_many { (&r, &l) } else { (&l, &r) };
        let mut j = Join::new(op, many, one, m, card, ret_bool);
        let many_steps = self.by_step(many);
        let one_steps = self.by_step(one);
        let mut out = Out::default();
        for (step, (ms, os)) in many_steps.iter().zip(one_steps.iter()).enumerate() {
            j.step(self.ts(step), ms, os, &mut out)?;
        }
        Ok(out.series)
    }
}

/// Vector matching of one binary operation, with state kept across steps.
struct Join<'v> {
    op: TokenId,
    ret_bool: bool,
    many: &'v [Ser],
    one: &'v [Ser],
    card: VectorMatchCardinality,
    matching: Option<&'v LabelModifier>,
    include: Vec<String>,
    one_to_many: bool,
    one_to_one: bool,
    /// Arithmetic and `bool` comparisons drop the metric name.
    drop: bool,
    /// `fill_left` fills a missing "many" side, `fill_right` a missing "one" side.
    fill_many: Option<f64>,
    fill_one: Option<f64>,
    sigs: Interner,
    msig: Vec<usize>,
    osig: Vec<usize>,
    pair_slot: HashMap<(usize, usize), usize>,
    /// The usual case: a series keeps its partner from step to step.
    last_pair: Vec<Option<(usize, usize)>>,
    one_at: Vec<Option<(usize, f64)>>,
    /// Per signature at this step: output slots produced (many-to-one) or just "matched".
    matched: Vec<Option<Vec<usize>>>,
}

impl<'v> Join<'v> {
    fn new(
        op: TokenId,
        many: &'v [Ser],
        one: &'v [Ser],
        m: Option<&'v BinModifier>,
        card: VectorMatchCardinality,
        ret_bool: bool,
    ) -> Self {
        let matching = m.and_then(|m| m.matching.as_ref());
        let mut sigs = Interner::default();
        let msig: Vec<usize> = many.iter().map(|s| sigs.id(signature(&s.labels, matching))).collect();
        let osig: Vec<usize> = one.iter().map(|s| sigs.id(signature(&s.labels, matching))).collect();
        let n = sigs.labels.len();
        Join {
            op,
            ret_bool,
            many,
            one,
            include: card.labels().map(|l| l.labels.clone()).unwrap_or_default(),
            one_to_many: matches!(card, VectorMatchCardinality::OneToMany(_)),
            one_to_one: matches!(card, VectorMatchCardinality::OneToOne),
            card,
            matching,
            drop: !is_comparison(op) || ret_bool,
            fill_many: m.and_then(|m| m.fill_values.lhs),
            fill_one: m.and_then(|m| m.fill_values.rhs),
            sigs,
            msig,
            osig,
            pair_slot: HashMap::new(),
            last_pair: vec![None; many.len()],
            one_at: vec![None; n],
            matched: vec![None; n],
        }
    }

    /// `(lhs, rhs)` in the operator's order from many/one values.
    fn sides(&self, many_v: f64, one_v: f64) -> (f64, f64) {
        if self.one_to_many {
            (one_v, many_v)
        } else {
            (many_v, one_v)
        }
    }

    fn step(&mut self, t: i64, ms: &[(usize, f64)], os: &[(usize, f64)], out: &mut Out) -> Result<(), EngineError> {
        for &(oi, ov) in os {
            if let Some((prev, _)) = self.one_at[self.osig[oi]] {
                return Err(many_to_many(self.one, prev, oi, self.matching, self.one_to_many));
            }
            self.one_at[self.osig[oi]] = Some((oi, ov));
        }
        for &(mi, mv) in ms {
            self.match_many(t, mi, mv, out)?;
        }
        for &(oi, ov) in os {
            let sig = self.osig[oi];
            if let Some(f) = self.fill_many.filter(|_| self.matched[sig].is_none()) {
                // A "one"-side series nothing matched: a series of the match group's labels.
                let (lv, rv) = self.sides(f, ov);
                if let Some(v) = fill_value(self.op, lv, rv, self.ret_bool) {
                    out.push(self.sigs.labels[sig].clone(), true, t, v)?;
                }
            }
            self.one_at[sig] = None;
        }
        for &(mi, _) in ms {
            self.matched[self.msig[mi]] = None;
        }
        Ok(())
    }

    fn match_many(&mut self, t: i64, mi: usize, mv: f64, out: &mut Out) -> Result<(), EngineError> {
        let sig = self.msig[mi];
        let drop = self.drop || self.many[mi].drop_name;
        let Some((oi, ov)) = self.one_at[sig] else {
            if let Some(f) = self.fill_one {
                let (lv, rv) = self.sides(mv, f);
                if let Some(v) = fill_value(self.op, lv, rv, self.ret_bool) {
                    let labels = result_labels(
                        &self.many[mi].labels,
                        &Labels::empty(),
                        &self.card,
                        self.matching,
                        &self.include,
                    );
                    out.push(labels, drop, t, v)?;
                }
            }
            return Ok(());
        };
        // Matching errors count every match, also those filtered away below.
        if self.one_to_one && self.matched[sig].is_some() {
            return Err(EngineError::Execution(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
            ));
        }
        self.matched[sig].get_or_insert_with(Vec::new);
        let (lv, rv) = self.sides(mv, ov);
        let Some(v) = fill_value(self.op, lv, rv, self.ret_bool) else { return Ok(()) };
        let slot = match self.last_pair[mi] {
            Some((o, slot)) if o == oi => slot,
            _ => {
                let (many, one, card, matching, include) =
                    (self.many, self.one, &self.card, self.matching, &self.include);
                let slot = *self.pair_slot.entry((mi, oi)).or_insert_with(|| {
                    out.slot(&result_labels(&many[mi].labels, &one[oi].labels, card, matching, include))
                });
                self.last_pair[mi] = Some((oi, slot));
                slot
            }
        };
        if !self.one_to_one {
            let seen = self.matched[sig].get_or_insert_with(Vec::new);
            if seen.contains(&slot) {
                return Err(EngineError::Execution(
                    "multiple matches for labels: grouping labels must ensure unique matches".into(),
                ));
            }
            seen.push(slot);
        }
        out.push_at(slot, drop, t, v)
    }
}

/// Prometheus's error for a signature repeated on the "one" side.
fn many_to_many(
    one: &[Ser],
    prev: usize,
    cur: usize,
    matching: Option<&LabelModifier>,
    one_to_many: bool,
) -> EngineError {
    let side = if one_to_many { "left" } else { "right" };
    EngineError::Execution(format!(
        "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
        match_group(&one[cur].labels, matching),
        show(&one[prev].labels),
        show(&one[cur].labels)
    ))
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
