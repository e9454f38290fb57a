//! The PromQL engine: evaluates parsed queries (parsing by `promql-parser`)
//! over any [`Queryable`], with Prometheus 3.x semantics. The HTTP API, the
//! ruler and the conformance runner all use this one engine.

pub mod annotations;
pub mod error;
pub(crate) mod eval;
pub mod functions;
pub mod plan;
pub mod positions;
pub mod value;

pub use error::EngineError;
pub use value::{QueryResult, Value, VectorSample};

use aion_model::storage::Queryable;
use aion_model::TenantId;
use std::time::Duration;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus default 5m).
    pub lookback_delta: Duration,
    /// Wall-clock budget of one query.
    pub timeout: Duration,
    /// Most samples one query may hold in memory at once.
    pub max_samples: usize,
    /// Fold an aggregation over a range function group by group on one
    /// thread even when there are too few groups to use every core (which
    /// would otherwise fold runs of each group's members in parallel, or,
    /// for `avg`/`stddev`/`stdvar`, sweep series in parallel at more CPU in
    /// all). For pushed-down partials: the nodes of a query already run in
    /// parallel.
    pub prefer_fused: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self { lookback_delta: Duration::from_secs(300), timeout: Duration::from_secs(120), max_samples: 50_000_000, prefer_fused: false }
    }
}

/// Both operands of a binary expression, see [`Engine::operands`].
#[derive(Debug, Clone, PartialEq)]
pub struct Operands {
    /// The left operand's value.
    pub lhs: Value,
    /// The right operand's value.
    pub rhs: Value,
    /// Whether evaluating them raised warnings or infos.
    pub annotated: bool,
    /// Samples loaded evaluating them.
    pub total_samples: u64,
}

/// The PromQL engine. Cheap to clone; holds only settings.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    /// An engine with `opts`.
    pub fn new(opts: EngineOptions) -> Self {
        Self { opts }
    }

    /// The engine's settings.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `query` at `time_ms` (milliseconds since the epoch) for `tenant`.
    pub fn instant_query(
        &self,
        storage: &dyn Queryable,
        tenant: &TenantId,
        query: &str,
        time_ms: i64,
    ) -> Result<QueryResult, EngineError> {
        let expr = plan::parse(query, plan::DurationContext { step_ms: 0, range_ms: 0 })?;
        let shared = self.shared_for(query, &expr);
        let ev = eval::Evaluator::new(storage, tenant, &shared, time_ms, time_ms, 0);
        let v = ev.eval(&expr)?;
        let value = eval::finish_instant(v, time_ms)?;
        Ok(Self::result(value, shared))
    }

    /// Evaluates `query` at every step from `start_ms` to `end_ms` inclusive;
    /// the result is always a [`Value::Matrix`].
    pub fn range_query(
        &self,
        storage: &dyn Queryable,
        tenant: &TenantId,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, EngineError> {
        if step_ms <= 0 {
            return Err(EngineError::Parse(format!(
                "zero or negative query resolution step widths are not accepted, got {step_ms}ms"
            )));
        }
        if end_ms < start_ms {
            return Err(EngineError::Parse("end timestamp must not be before start time".into()));
        }
        let expr = plan::parse(query, plan::DurationContext { step_ms, range_ms: end_ms - start_ms })?;
        plan::check_range_query(&expr)?;
        let shared = self.shared_for(query, &expr);
        let ev = eval::Evaluator::new(storage, tenant, &shared, start_ms, end_ms, step_ms);
        if ev.steps() > self.opts.max_samples {
            return Err(EngineError::TooManySamples("query execution".into()));
        }
        let v = ev.eval(&expr)?;
        let value = Self::finish(&ev, v, false)?;
        Ok(Self::result(value, shared))
    }

    /// Both operands of the binary expression `query` (`lhs op rhs`), each
    /// evaluated as a query of its own would be, from `start_ms` to `end_ms`
    /// every `step_ms` (0: instant at `start_ms`) — read once when they are
    /// aggregations of one range function over nested selections (the
    /// error-ratio shape). `op` itself is not applied. For pushed-down
    /// pairs: a node answers both partials from one read.
    pub fn operands(
        &self,
        storage: &dyn Queryable,
        tenant: &TenantId,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Operands, EngineError> {
        let range_ms = if step_ms > 0 { end_ms - start_ms } else { 0 };
        let expr = plan::parse(query, plan::DurationContext { step_ms: step_ms.max(0), range_ms })?;
        let promql_parser::parser::Expr::Binary(b) = &expr else {
            return Err(EngineError::Execution(format!("{query} is not a binary expression")));
        };
        let end_ms = if step_ms > 0 { end_ms } else { start_ms };
        let shared = self.shared_for(query, &expr);
        let ev = eval::Evaluator::new(storage, tenant, &shared, start_ms, end_ms, step_ms.max(0));
        let (l, r) = match ev.fused_pair(b)? {
            Some(both) => both,
            None => match ev.operands_sharing_input(b)? {
                Some(both) => both,
                None => (ev.eval(&b.lhs)?, ev.eval(&b.rhs)?),
            },
        };
        let instant = step_ms <= 0;
        let (lhs, rhs) = (Self::finish(&ev, l, instant)?, Self::finish(&ev, r, instant)?);
        let total_samples = shared.samples.get() as u64;
        let ann = shared.ann.into_inner();
        Ok(Operands { lhs, rhs, annotated: !ann.warnings.is_empty() || !ann.infos.is_empty(), total_samples })
    }

    /// An evaluation's value as the API value: a vector at the instant, or a
    /// matrix over the evaluator's steps.
    fn finish(ev: &eval::Evaluator, v: eval::Val, instant: bool) -> Result<Value, EngineError> {
        if instant {
            return eval::finish_instant(v, ev.ts(0));
        }
        let steps: Vec<i64> = (0..ev.steps()).map(|i| ev.ts(i)).collect();
        eval::finish_range(v, &steps)
    }

    /// Per-query evaluation state: limits, annotations, literal checks, positions.
    fn shared_for(&self, query: &str, expr: &promql_parser::parser::Expr) -> eval::Shared {
        let mut shared = eval::Shared::new(&self.opts);
        shared.invalid_literals = plan::invalid_utf8_literals(query);
        shared.positions = positions::Positions::new(query, expr);
        shared
    }

    fn result(value: Value, shared: eval::Shared) -> QueryResult {
        let ann = shared.ann.into_inner();
        QueryResult { value, warnings: ann.warnings, infos: ann.infos, total_samples: shared.samples.get() as u64 }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aion_model::memstore::MemStore;
    use aion_model::sample::stale_nan;
    use aion_model::storage::{Appender, SeriesSamples, WriteBatch};
    use aion_model::{Labels, Sample};

    fn store() -> MemStore {
        let s = MemStore::new();
        let series = |job: &str, vals: &[(i64, f64)]| SeriesSamples {
            labels: Labels::from_pairs([("__name__", "x_total"), ("job", job)]),
            samples: vals.iter().map(|(t, v)| Sample::new(*t, *v)).collect(),
        };
        let batch = WriteBatch {
            tenant: TenantId::anonymous(),
            series: vec![
                series("a", &[(0, 0.0), (60_000, 60.0), (120_000, 120.0)]),
                series("b", &[(0, 1.0), (60_000, stale_nan())]),
            ],
        };
        s.append(batch).unwrap();
        s
    }

    #[test]
    fn instant_selector_honours_staleness_and_lookback() {
        let s = store();
        let e = Engine::default();
        let t = TenantId::anonymous();
        let r = e.instant_query(&s, &t, "x_total", 30_000).unwrap();
        let Value::Vector(v) = r.value else { panic!("not a vector") };
        assert_eq!(v.len(), 2);
        let r = e.instant_query(&s, &t, "x_total", 90_000).unwrap();
        let Value::Vector(v) = r.value else { panic!("not a vector") };
        assert_eq!(v.len(), 1, "b is stale after its marker");
        assert_eq!(v[0].v, 60.0);
        let r = e.instant_query(&s, &t, "x_total", 420_001).unwrap();
        assert_eq!(r.value, Value::Vector(vec![]), "beyond the 5m lookback");
    }

    #[test]
    fn range_query_drops_names_and_sorts() {
        let s = store();
        let e = Engine::default();
        let t = TenantId::anonymous();
        let r = e.range_query(&s, &t, "sum by (job) (rate(x_total[2m]))", 60_000, 120_000, 60_000).unwrap();
        let Value::Matrix(m) = r.value else { panic!("not a matrix") };
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].labels, Labels::from_pairs([("job", "a")]));
        assert_eq!(m[0].samples.len(), 2);
        assert!((m[0].samples[1].v - 1.0).abs() < 1e-9);
        let r = e.range_query(&s, &t, "x_total * 2", 0, 60_000, 60_000).unwrap();
        let Value::Matrix(m) = r.value else { panic!("not a matrix") };
        assert!(m.iter().all(|s| s.labels.metric_name().is_none()));
        assert!(m.windows(2).all(|w| w[0].labels < w[1].labels));
    }

    #[test]
    fn unusual_queries_error_or_answer_without_panicking() {
        let s = store();
        let t = TenantId::anonymous();
        let e = Engine::default();
        let queries = [
            "x_total[5m:1m]",
            "rate(x_total[5m:7s] offset -1m)",
            "x_total @ start() + x_total @ end()",
            "timestamp(x_total offset 1m)",
            "sum by (job) (x_total) / on() group_left count(x_total)",
            "x_total > bool on(job) group_right x_total",
            "topk(scalar(x_total{job=\"a\"}), x_total)",
            "quantile(2, x_total)",
            "count_values(\"v\", x_total)",
            "absent_over_time(nope{a=\"b\"}[1m])",
            "histogram_quantiles(x_total, \"q\")",
            "info(x_total)",
            "x_total smoothed",
            "increase(x_total[2m] anchored)",
            "rate(x_total[step()*4])",
            "sort_by_label(x_total)",
            "label_join(x_total, \"j\", \"-\")",
            "last_over_time(rate(x_total[1m])[5m:])",
            "min_of(1, 2)",
            "x_total + fill(0) x_total",
            "limit_ratio(-0.5, x_total)",
            "1 / 0 ^ -1 % 2",
            "\"text\"",
        ];
        for q in queries {
            let _ = e.instant_query(&s, &t, q, 90_000);
            let _ = e.range_query(&s, &t, q, 0, 180_000, 7_000);
        }
        assert_eq!(e.instant_query(&s, &t, "min_of(1, 2)", 0).unwrap().value, Value::Scalar { t: 0, v: 1.0 });
        let r = e.instant_query(&s, &t, "rate(x_total[step()*4 + 2m])", 120_000).unwrap();
        let Value::Vector(v) = r.value else { panic!("not a vector") };
        assert_eq!(v.len(), 1);
        let r = e.instant_query(&s, &t, "x_total smoothed", 90_000).unwrap();
        let Value::Vector(v) = r.value else { panic!("not a vector") };
        assert_eq!(v[0].v, 90.0, "interpolated between 60 and 120");
    }

    #[test]
    fn few_groups_give_what_folding_group_by_group_gives() {
        // 3 groups, ~72k samples: without the preference `avg` sweeps the
        // series in parallel and groups them after, and the other operators
        // fold runs of each group's members in parallel and merge the runs;
        // with it, each group is folded member by member on one thread.
        let s = MemStore::new();
        let series = (0..30)
            .map(|i| {
                let mut v = 0.0;
                SeriesSamples {
                    labels: Labels::from_pairs([("__name__", "x_total".to_string()), ("g", format!("g{}", i % 3)), ("i", i.to_string())]),
                    samples: (0..2_400)
                        .map(|k| {
                            v += 0.1 + ((k * 7 + i) % 11) as f64 / 3.0;
                            Sample::new(k * 15_000, v)
                        })
                        .collect(),
                }
            })
            .collect();
        s.append(WriteBatch { tenant: TenantId::anonymous(), series }).unwrap();
        let t = TenantId::anonymous();
        let run = |q: &str, prefer_fused: bool| {
            let e = Engine::new(EngineOptions { prefer_fused, ..EngineOptions::default() });
            let Value::Matrix(m) = e.range_query(&s, &t, q, 0, 36_000_000, 60_000).unwrap().value else { panic!("not a matrix") };
            m.into_iter().map(|s| (s.labels, s.samples)).collect::<Vec<_>>()
        };
        for op in ["avg", "count", "min", "max", "group", "sum"] {
            let q = format!("{op} by (g) (rate(x_total[5m]))");
            let (plain, fused) = (run(&q, false), run(&q, true));
            assert_eq!(plain.len(), 3, "{q}");
            for ((l1, p1), (l2, p2)) in plain.iter().zip(&fused) {
                assert_eq!(l1, l2, "{q}: groups in the same order");
                assert_eq!(p1.len(), p2.len(), "{q}");
                for (a, b) in p1.iter().zip(p2) {
                    assert_eq!(a.t, b.t, "{q}");
                    if op == "sum" {
                        // A compensated sum of compensated run sums: at most the last bit.
                        assert!((a.v - b.v).abs() <= a.v.abs() * 4.0 * f64::EPSILON, "{q}: {a:?} vs {b:?}");
                    } else {
                        assert_eq!(a.v.to_bits(), b.v.to_bits(), "{q}: {a:?} vs {b:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn errors_have_prometheus_types() {
        let s = store();
        let t = TenantId::anonymous();
        let e = Engine::default();
        assert_eq!(e.instant_query(&s, &t, "sum(", 0).unwrap_err().error_type(), "bad_data");
        assert_eq!(e.range_query(&s, &t, "x_total[1m]", 0, 60_000, 1000).unwrap_err().error_type(), "bad_data");
        let small = Engine::new(EngineOptions { max_samples: 2, ..EngineOptions::default() });
        let err = small.instant_query(&s, &t, "x_total", 120_000).unwrap_err();
        assert!(matches!(err, EngineError::TooManySamples(_)), "{err}");
        let late = Engine::new(EngineOptions { timeout: std::time::Duration::ZERO, ..EngineOptions::default() });
        let err = late.instant_query(&s, &t, "x_total", 0).unwrap_err();
        assert_eq!(err.error_type(), "timeout", "{err}");
        let err = e.instant_query(&s, &t, "x_total + on() x_total", 30_000).unwrap_err();
        assert!(err.to_string().contains("many-to-many matching not allowed"), "{err}");
    }
}
