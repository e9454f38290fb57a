//! The evaluator: walks a parsed expression once over all evaluation steps.
//!
//! Every node yields a [`Val`] covering all steps at once: instant vectors are
//! series with one point per step they have a value at, so selectors fetch
//! their data once for the whole query and per-series work (functions over
//! windows) runs without per-step copies. Step-wise operators (binary
//! operators, aggregations) bucket points by step.

mod aggregate;
mod binary;
mod call;
mod call_hist;
mod call_info;
mod call_range;
mod extended;
mod fused;
mod output;
pub(crate) mod parallel;
mod pushdown;
mod selector;
mod step_cells;
mod subquery;

pub(crate) use extended::EXT_MARKER;
pub(crate) use output::{finish_instant, finish_range};

use super::annotations::Annotations;
use super::{EngineError, EngineOptions};
use aion_model::storage::Queryable;
use aion_model::{Labels, Sample, TenantId};
use promql_parser::parser::{AtModifier, Expr, Offset};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Instant, SystemTime};

/// One series of a value: labels, whether `__name__` is to be dropped at the
/// end (Prometheus 3's delayed name removal), and points in time order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ser {
    pub labels: Labels,
    pub drop_name: bool,
    pub points: Vec<Sample>,
}

/// A value over all steps.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    /// One value per step.
    Scalar(Vec<f64>),
    /// A string (same at every step).
    String(String),
    /// An instant vector: each point's timestamp is its step.
    Vector(Vec<Ser>),
    /// A range vector (only at a single step): raw samples of the window.
    Matrix(Vec<Ser>),
}

/// State shared by an evaluator and its subquery evaluators.
pub(crate) struct Shared {
    pub ann: RefCell<Annotations>,
    pub samples: Cell<usize>,
    pub deadline: Instant,
    pub max_samples: usize,
    pub lookback: i64,
    /// String literals that are invalid UTF-8 in Go: (parsed text, Go-quoted form).
    pub invalid_literals: Vec<(String, String)>,
    /// Source positions for annotations.
    pub positions: super::positions::Positions,
    /// See [`EngineOptions::prefer_fused`].
    pub prefer_fused: bool,
}

/// Evaluates expressions over the steps `start..=end` every `interval` ms.
#[derive(Clone, Copy)]
pub(crate) struct Evaluator<'a> {
    pub storage: &'a dyn Queryable,
    pub tenant: &'a TenantId,
    pub shared: &'a Shared,
    /// The query's own start and end (for `@ start()` / `@ end()`).
    pub query_start: i64,
    pub query_end: i64,
    /// The query's step (0 for instant queries), for `step()`.
    pub query_step: i64,
    pub start: i64,
    pub end: i64,
    pub interval: i64,
}

/// Default step of subqueries without one (Prometheus's default evaluation interval).
pub(crate) const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

impl Shared {
    /// Fresh shared state for one query.
    pub fn new(opts: &EngineOptions) -> Self {
        Self {
            ann: RefCell::new(Annotations::default()),
            samples: Cell::new(0),
            deadline: Instant::now() + opts.timeout,
            max_samples: opts.max_samples,
            lookback: opts.lookback_delta.as_millis() as i64,
            invalid_literals: Vec::new(),
            positions: Default::default(),
            prefer_fused: opts.prefer_fused,
        }
    }
}

impl<'a> Evaluator<'a> {
    /// The top-level evaluator of a query over `start..=end` every `step` ms
    /// (`step` 0 for an instant query, which evaluates once at `start`).
    pub fn new(storage: &'a dyn Queryable, tenant: &'a TenantId, shared: &'a Shared, start: i64, end: i64, step: i64) -> Self {
        Self {
            storage,
            tenant,
            shared,
            query_start: start,
            query_end: end,
            query_step: step,
            start,
            end,
            interval: step.max(1),
        }
    }

    /// Number of steps.
    pub fn steps(&self) -> usize {
        ((self.end - self.start) / self.interval.max(1)) as usize + 1
    }

    /// Timestamp of step `i`.
    pub fn ts(&self, i: usize) -> i64 {
        self.start + i as i64 * self.interval
    }

    /// Step index of timestamp `t` (which must be a step).
    pub fn step_of(&self, t: i64) -> usize {
        ((t - self.start) / self.interval.max(1)) as usize
    }

    /// Fails when the query ran out of time.
    pub fn check_deadline(&self) -> Result<(), EngineError> {
        if Instant::now() >= self.shared.deadline {
            return Err(EngineError::Timeout("query execution".into()));
        }
        Ok(())
    }

    /// Accounts `n` loaded samples against the limit.
    pub fn add_samples(&self, n: usize) -> Result<(), EngineError> {
        let total = self.shared.samples.get() + n;
        self.shared.samples.set(total);
        if total > self.shared.max_samples {
            return Err(EngineError::TooManySamples("query execution".into()));
        }
        Ok(())
    }

    /// Records a warning annotation (text without the `PromQL warning: ` prefix).
    pub fn warn(&self, msg: String) {
        self.shared.ann.borrow_mut().warn(msg);
    }

    /// Records an info annotation (text without the `PromQL info: ` prefix).
    pub fn info(&self, msg: String) {
        self.shared.ann.borrow_mut().info(msg);
    }

    /// ` (line:col)` of argument `arg` of the call/aggregation `node` (itself when `None`).
    pub fn pos<T>(&self, node: &T, arg: Option<usize>) -> String {
        self.shared.positions.suffix(node as *const T as usize, arg)
    }

    /// Offset in milliseconds.
    pub fn offset_ms(o: &Option<Offset>) -> i64 {
        match o {
            None => 0,
            Some(Offset::Pos(d)) => d.as_millis() as i64,
            Some(Offset::Neg(d)) => -(d.as_millis() as i64),
        }
    }

    /// The `@` timestamp in milliseconds, if any.
    pub fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start),
            Some(AtModifier::End) => Some(self.query_end),
            Some(AtModifier::At(t)) => Some(system_time_ms(*t)),
        }
    }

    /// Fails when `name` is a string literal Go would see as invalid UTF-8.
    pub fn check_label_name(&self, name: &str) -> Result<(), EngineError> {
        match self.shared.invalid_literals.iter().find(|(p, _)| p == name) {
            Some((_, q)) => Err(EngineError::Execution(format!("invalid label name {q}"))),
            None if name.is_empty() => Err(EngineError::Execution("invalid label name \"\"".into())),
            None => Ok(()),
        }
    }

    /// Evaluates `e` over all steps.
    pub fn eval(&self, e: &Expr) -> Result<Val, EngineError> {
        self.check_deadline()?;
        match e {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; self.steps()])),
            Expr::StringLiteral(s) => Ok(Val::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(mut v) => {
                    for s in &mut v {
                        s.drop_name = true;
                        s.points.iter_mut().for_each(|p| p.v = -p.v);
                    }
                    Ok(Val::Vector(v))
                }
                _ => Err(EngineError::Execution("unary expression only allowed on scalars and vectors".into())),
            },
            Expr::VectorSelector(vs) => self.eval_vector_selector(vs),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => self.eval_matrix_at_step(e),
            Expr::Aggregate(a) => self.eval_aggregate(a),
            Expr::Binary(b) => self.eval_binary(b),
            Expr::Call(c) => self.eval_call(c),
            Expr::Extension(_) => Err(EngineError::Execution("extension expressions are not supported".into())),
        }
    }

    /// Evaluates `e` expecting a scalar (one value per step).
    pub fn eval_scalar(&self, e: &Expr) -> Result<Vec<f64>, EngineError> {
        match self.eval(e)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(EngineError::Execution(format!("expected a scalar expression, got {e}"))),
        }
    }

    /// Evaluates `e` expecting an instant vector.
    pub fn eval_vector(&self, e: &Expr) -> Result<Vec<Ser>, EngineError> {
        match self.eval(e)? {
            Val::Vector(v) => Ok(v),
            _ => Err(EngineError::Execution(format!("expected an instant vector expression, got {e}"))),
        }
    }

    /// Buckets the points of `v` by step: step `i` lists `(series index, value)`
    /// in series order. One flat allocation (counted first, then filled).
    pub fn by_step(&self, v: &[Ser]) -> StepIndex {
        let steps = self.steps();
        let mut offsets = vec![0usize; steps + 1];
        for s in v {
            for p in &s.points {
                offsets[self.step_of(p.t) + 1] += 1;
            }
        }
        for i in 0..steps {
            offsets[i + 1] += offsets[i];
        }
        let mut fill: Vec<usize> = offsets[..steps].to_vec();
        let mut points = vec![(0usize, 0.0f64); offsets[steps]];
        for (i, s) in v.iter().enumerate() {
            for p in &s.points {
                let at = &mut fill[self.step_of(p.t)];
                points[*at] = (i, p.v);
                *at += 1;
            }
        }
        StepIndex { offsets, points }
    }
}

/// The points of a vector bucketed by step (see [`Evaluator::by_step`]).
pub(crate) struct StepIndex {
    /// Step `i`'s points are `points[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<usize>,
    points: Vec<(usize, f64)>,
}

impl StepIndex {
    /// The `(series index, value)` points of each step, in step order.
    pub fn iter(&self) -> impl Iterator<Item = &[(usize, f64)]> + '_ {
        self.offsets.windows(2).map(|w| &self.points[w[0]..w[1]])
    }
}

/// Milliseconds since the epoch of `t` (negative before 1970).
pub(crate) fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Collects step-wise output into series keyed by labels, rejecting a second
/// sample for the same labels at the same step.
#[derive(Default)]
pub(crate) struct Out {
    index: HashMap<Labels, usize>,
    pub series: Vec<Ser>,
}

impl Out {
    /// Adds the point `(t, v)` to the series with `labels`.
    pub fn push(&mut self, labels: Labels, drop_name: bool, t: i64, v: f64) -> Result<(), EngineError> {
        let i = self.slot_owned(labels);
        self.push_at(i, drop_name, t, v)
    }

    /// The index of the output series with `labels`, created when new.
    pub fn slot(&mut self, labels: &Labels) -> usize {
        match self.index.get(labels) {
            Some(&i) => i,
            None => self.slot_owned(labels.clone()),
        }
    }

    fn slot_owned(&mut self, labels: Labels) -> usize {
        if let Some(&i) = self.index.get(&labels) {
            return i;
        }
        self.series.push(Ser { labels: labels.clone(), drop_name: false, points: Vec::new() });
        self.index.insert(labels, self.series.len() - 1);
        self.series.len() - 1
    }

    /// Adds the point `(t, v)` to output series `i` (from [`Out::slot`]).
    pub fn push_at(&mut self, i: usize, drop_name: bool, t: i64, v: f64) -> Result<(), EngineError> {
        let s = &mut self.series[i];
        if s.points.last().is_some_and(|p| p.t == t) {
            return Err(dup_labelset());
        }
        s.drop_name |= drop_name;
        s.points.push(Sample::new(t, v));
        Ok(())
    }
}

/// Dense ids for distinct label sets (matching signatures, group keys).
#[derive(Default)]
pub(crate) struct Interner {
    ids: HashMap<Labels, usize>,
    /// The label set of each id.
    pub labels: Vec<Labels>,
}

impl Interner {
    /// The id of `l`, assigned in order of first appearance.
    pub fn id(&mut self, l: Labels) -> usize {
        if let Some(&i) = self.ids.get(&l) {
            return i;
        }
        self.labels.push(l.clone());
        self.ids.insert(l, self.labels.len() - 1);
        self.labels.len() - 1
    }
}

/// Prometheus's error for two series with one label set at one step.
pub(crate) fn dup_labelset() -> EngineError {
    EngineError::Execution("vector cannot contain metrics with the same labelset".into())
}
