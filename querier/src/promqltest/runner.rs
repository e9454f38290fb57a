//! Runs parsed scripts against an [`Engine`] over any storage.

use super::check::check_eval;
use super::script::{Command, EvalCmd, EvalKind, ExpectedLine};
use super::series::{Point, SeriesDesc};
use crate::engine::{Engine, QueryResult, Value, VectorSample};
use aion_model::sample::stale_nan;
use aion_model::storage::{Appender, Queryable, SeriesSamples, WriteBatch};
use aion_model::{Labels, Sample, TenantId};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::Expr;

/// A storage a script can load into and query.
pub trait ScriptStorage: Queryable + Appender {}
impl<T: Queryable + Appender> ScriptStorage for T {}

/// The outcome of one eval.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Result and annotations as expected.
    Passed,
    /// Something differed; the text says what.
    Failed(String),
    /// Not run, with the reason (e.g. native histograms).
    Skipped(String),
}

/// One eval's report.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// Line of the eval in its file.
    pub line: usize,
    /// Query text.
    pub query: String,
    /// What happened.
    pub outcome: Outcome,
}

/// Runs scripts; builds a fresh storage at the start and on every `clear`.
pub struct Runner<'a> {
    engine: Engine,
    new_storage: Box<dyn FnMut() -> Box<dyn ScriptStorage> + 'a>,
    tenant: TenantId,
}

struct State {
    storage: Box<dyn ScriptStorage>,
    /// Series holding native histogram samples (their evals are skipped).
    histogram_series: Vec<Labels>,
    /// Series with start timestamps, which the storage model lacks (their evals are skipped).
    start_ts_series: Vec<Labels>,
}

impl<'a> Runner<'a> {
    /// A runner using `engine` and `new_storage` to make empty stores.
    pub fn new(engine: Engine, new_storage: impl FnMut() -> Box<dyn ScriptStorage> + 'a) -> Self {
        Self { engine, new_storage: Box::new(new_storage), tenant: TenantId::anonymous() }
    }

    /// Loads and queries as `tenant` instead of `anonymous`.
    pub fn with_tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = tenant;
        self
    }

    /// Runs every command of a script; one report per eval.
    pub fn run(&mut self, cmds: &[Command]) -> Vec<EvalReport> {
        let mut st = self.fresh_state();
        let mut out = Vec::new();
        for c in cmds {
            match c {
                Command::Clear => st = self.fresh_state(),
                Command::Load { interval_ms, nhcb, series, line } => {
                    if let Err(e) = self.load(&mut st, *interval_ms, *nhcb, series) {
                        out.push(EvalReport {
                            line: *line,
                            query: "load".into(),
                            outcome: Outcome::Failed(format!("load failed: {e}")),
                        });
                    }
                }
                Command::Invalid { line, error } => out.push(EvalReport {
                    line: *line,
                    query: String::new(),
                    outcome: Outcome::Failed(format!("script line does not parse: {error}")),
                }),
                Command::Eval(e) => {
                    let outcome = self.eval(&st, e);
                    out.push(EvalReport { line: e.line, query: e.query.clone(), outcome });
                }
            }
        }
        out
    }

    fn fresh_state(&mut self) -> State {
        State { storage: (self.new_storage)(), histogram_series: Vec::new(), start_ts_series: Vec::new() }
    }

    fn load(&self, st: &mut State, interval: i64, nhcb: bool, series: &[SeriesDesc]) -> Result<(), String> {
        let mut batch = WriteBatch { tenant: self.tenant.clone(), series: Vec::new() };
        // A series defined twice in one load keeps its last definition, as in Prometheus.
        let mut last: std::collections::HashMap<&Labels, usize> = std::collections::HashMap::new();
        for (i, s) in series.iter().enumerate().filter(|(_, s)| !s.start_timestamps) {
            last.insert(&s.labels, i);
        }
        for (i, s) in series.iter().enumerate() {
            if s.start_timestamps {
                st.start_ts_series.push(s.labels.clone());
                continue;
            }
            if last.get(&s.labels) != Some(&i) {
                continue;
            }
            let mut samples = Vec::new();
            let mut has_hist = false;
            for (i, p) in s.points.iter().enumerate() {
                let t = i as i64 * interval;
                match p {
                    Point::Gap => {}
                    Point::Float(v) => samples.push(Sample::new(t, *v)),
                    Point::Stale => samples.push(Sample::new(t, stale_nan())),
                    Point::Histogram => has_hist = true,
                }
            }
            if has_hist {
                st.histogram_series.push(s.labels.clone());
            }
            if nhcb {
                if let Some(base) = s.labels.metric_name().and_then(|n| n.strip_suffix("_bucket")) {
                    let mut l = s.labels.clone();
                    l.remove("le");
                    l.set("__name__", base);
                    st.histogram_series.push(l);
                }
            }
            batch.series.push(SeriesSamples { labels: s.labels.clone(), samples });
        }
        let outcome = st.storage.append(batch).map_err(|e| e.to_string())?;
        if let Some(r) = outcome.rejected.first() {
            return Err(format!("sample of {} at {} rejected: {}", r.labels, r.t, r.reason.as_str()));
        }
        Ok(())
    }

    fn eval(&self, st: &State, e: &EvalCmd) -> Outcome {
        if let Some(reason) = skip_reason(st, e) {
            return Outcome::Skipped(reason);
        }
        let storage: &dyn Queryable = &*st.storage;
        let run = || match e.kind {
            EvalKind::Instant { at_ms } => self.engine.instant_query(storage, &self.tenant, &e.query, at_ms),
            EvalKind::Range { start_ms, end_ms, step_ms } => {
                self.engine.range_query(storage, &self.tenant, &e.query, start_ms, end_ms, step_ms)
            }
        };
        let res = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
            Ok(r) => r,
            Err(p) => {
                let msg =
                    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                return Outcome::Failed(format!("engine panicked: {}", msg.unwrap_or_default()));
            }
        };
        if let Err(m) = check_eval(e, res) {
            return Outcome::Failed(m);
        }
        match self.check_range_mode(storage, e) {
            Ok(()) => Outcome::Passed,
            Err(m) => Outcome::Failed(format!("in range mode: {m}")),
        }
    }

    /// As Prometheus's runner: an instant eval must give the same result as
    /// the middle step of a range query from `t - 1m` to `t + 1m`.
    fn check_range_mode(&self, storage: &dyn Queryable, e: &EvalCmd) -> Result<(), String> {
        let EvalKind::Instant { at_ms } = e.kind else { return Ok(()) };
        let x = &e.expect;
        if x.fail.is_some() || x.ordered || x.string.is_some() || x.range_vector.is_some() {
            return Ok(());
        }
        let Ok(expr) = promql_parser::parser::parse(&e.query) else { return Ok(()) };
        let vt = expr.value_type();
        // Functions of the query's own range/step differ between the two modes by design.
        if !matches!(vt, ValueType::Scalar | ValueType::Vector) || calls_any(&expr, &["step", "range", "start", "end"])
        {
            return Ok(());
        }
        let res = self
            .engine
            .range_query(storage, &self.tenant, &e.query, at_ms - 60_000, at_ms + 60_000, 60_000)
            .map_err(|err| format!("unexpected error: {err}"))?;
        let Value::Matrix(m) = res.value else { return Err("range query did not return a matrix".into()) };
        let mut vec = Vec::new();
        for s in m {
            if let Some(p) = s.samples.iter().find(|p| p.t == at_ms) {
                vec.push(VectorSample { labels: s.labels, t: at_ms, v: p.v });
            }
        }
        let value = match (vt, vec.first()) {
            (ValueType::Scalar, Some(s)) => Value::Scalar { t: at_ms, v: s.v },
            _ => Value::Vector(vec),
        };
        let mut plain = e.clone();
        plain.expect = Default::default();
        check_eval(&plain, Ok(QueryResult { value, warnings: vec![], infos: vec![], total_samples: 0 }))
    }
}

fn skip_reason(st: &State, e: &EvalCmd) -> Option<String> {
    let hist_expected = e.results.iter().any(|r| match r {
        ExpectedLine::Series(s) => s.points.contains(&Point::Histogram),
        ExpectedLine::Scalar(_) => false,
    });
    if hist_expected {
        return Some("expects native histogram samples".into());
    }
    if !st.start_ts_series.is_empty() {
        if let Ok(expr) = promql_parser::parser::parse(&e.query) {
            let mut hit = false;
            walk_selectors(&expr, &mut |vs| hit |= st.start_ts_series.iter().any(|l| selector_matches(vs, l)));
            if hit {
                return Some("needs sample start timestamps".into());
            }
        }
    }
    if st.histogram_series.is_empty() {
        return None;
    }
    let Ok(expr) = promql_parser::parser::parse(&e.query) else {
        // Unparsed syntax (e.g. the `</` trim operators) on histogram series.
        let names = st.histogram_series.iter().filter_map(|l| l.metric_name());
        let hit = names.into_iter().any(|n| {
            e.query.match_indices(n).any(|(i, _)| {
                let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
                !e.query[..i].ends_with(word) && !e.query[i + n.len()..].starts_with(word)
            })
        });
        return hit.then(|| "native histogram syntax the parser lacks".to_string());
    };
    let mut hit = false;
    walk_selectors(&expr, &mut |vs| {
        hit |= st.histogram_series.iter().any(|l| selector_matches(vs, l));
    });
    hit.then(|| "selects native histogram series".to_string())
}

fn selector_matches(vs: &promql_parser::parser::VectorSelector, l: &Labels) -> bool {
    let get = |n: &str| l.get(n).unwrap_or("").to_string();
    if let Some(n) = &vs.name {
        if get("__name__") != *n {
            return false;
        }
    }
    let all = |ms: &[promql_parser::label::Matcher]| ms.iter().all(|m| m.is_match(&get(&m.name)));
    if vs.matchers.or_matchers.is_empty() {
        all(&vs.matchers.matchers)
    } else {
        vs.matchers.or_matchers.iter().any(|g| all(g))
    }
}

/// True when `e` calls one of the functions `names`.
fn calls_any(e: &Expr, names: &[&str]) -> bool {
    match e {
        Expr::Aggregate(a) => calls_any(&a.expr, names) || a.param.as_ref().is_some_and(|p| calls_any(p, names)),
        Expr::Unary(u) => calls_any(&u.expr, names),
        Expr::Binary(b) => calls_any(&b.lhs, names) || calls_any(&b.rhs, names),
        Expr::Paren(p) => calls_any(&p.expr, names),
        Expr::Subquery(s) => calls_any(&s.expr, names),
        Expr::Call(c) => names.contains(&c.func.name) || c.args.args.iter().any(|a| calls_any(a, names)),
        _ => false,
    }
}

/// Calls `f` on every vector selector (matrix selectors included) of `e`.
pub fn walk_selectors(e: &Expr, f: &mut dyn FnMut(&promql_parser::parser::VectorSelector)) {
    match e {
        Expr::Aggregate(a) => {
            walk_selectors(&a.expr, f);
            if let Some(p) = &a.param {
                walk_selectors(p, f);
            }
        }
        Expr::Unary(u) => walk_selectors(&u.expr, f),
        Expr::Binary(b) => {
            walk_selectors(&b.lhs, f);
            walk_selectors(&b.rhs, f);
        }
        Expr::Paren(p) => walk_selectors(&p.expr, f),
        Expr::Subquery(s) => walk_selectors(&s.expr, f),
        Expr::VectorSelector(vs) => f(vs),
        Expr::MatrixSelector(ms) => f(&ms.vs),
        Expr::Call(c) => c.args.args.iter().for_each(|a| walk_selectors(a, f)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}
