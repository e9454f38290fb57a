//! Aggregation pushdown. For `sum|min|max|count|group [by|without (…)]` over
//! a selector or a per-series range function of one (`rate(x[5m])`,
//! `increase`, `*_over_time`, …), every shard evaluates the aggregation over
//! its own series and the querier merges the per-shard results: sums and
//! counts add up, minima and maxima combine, groups union. A query over a
//! million series then moves one value per group and step per shard, not the
//! series. The merge equals the one-pass plan because every series lives on
//! exactly one shard (placement hashes `(tenant, labels)` onto a fixed shard
//! count) and these operators are associative.
//!
//! Both halves live here: [`plan`] decides whether an aggregation is pushed
//! and builds the [`PushdownRequest`]; [`evaluate_partial`] is what a shard
//! runs (the engine over its local data); [`merge`] folds the parts. A part
//! that raised an annotation (warning/info) makes the engine fall back to the
//! plain plan, so annotations and their positions stay exactly Prometheus's.

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod pair_test;
pub mod service;
pub mod union;
pub mod wire;

use crate::engine::eval::parallel::par_map;
use crate::engine::functions::aggregate::kahan_add;
use crate::engine::{Engine, EngineError, EngineOptions, Value};
use crate::limits::LimitedQueryable;
use aion_model::storage::{PartialSeries, PushdownRequest, Queryable};
use std::sync::Arc;
use aion_model::{Labels, Sample, TenantId};
use promql_parser::parser::token::{T_COUNT, T_GROUP, T_MAX, T_MIN, T_SUM};
use promql_parser::parser::{AggregateExpr, BinaryExpr, Expr, LabelModifier};
use std::collections::HashMap;
use std::time::Duration;

/// Range functions whose value at a step depends on one series' window only.
const PER_SERIES_RANGE_FUNCTIONS: &[&str] = &[
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "sum_over_time",
    "count_over_time",
    "min_over_time",
    "max_over_time",
    "avg_over_time",
    "last_over_time",
    "present_over_time",
];

/// How per-shard results of an operator combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeOp {
    /// Add (sum, count).
    Sum,
    /// Smallest.
    Min,
    /// Largest.
    Max,
    /// Always 1.
    Group,
}

/// The pushdown of aggregation `a` evaluated from `start_ms` to `end_ms`
/// every `step_ms` (0: instant), or `None` when it cannot be pushed down.
pub fn plan(a: &AggregateExpr, start_ms: i64, end_ms: i64, step_ms: i64, lookback_ms: i64) -> Option<(PushdownRequest, MergeOp)> {
    let op = match a.op.id() {
        T_SUM | T_COUNT => MergeOp::Sum,
        T_MIN => MergeOp::Min,
        T_MAX => MergeOp::Max,
        T_GROUP => MergeOp::Group,
        _ => return None,
    };
    if a.param.is_some() || !pushable_inner(&a.expr) {
        return None;
    }
    let mentions_name = match &a.modifier {
        Some(LabelModifier::Include(l)) | Some(LabelModifier::Exclude(l)) => l.labels.iter().any(|n| n == "__name__"),
        None => false,
    };
    // Grouping on the metric name is pushed down only over a plain selector,
    // whose series keep their name (`count by (__name__) ({__name__=~"…"})`);
    // a function's output drops it, possibly later than the aggregation sees.
    if mentions_name && !is_selector(&a.expr) {
        return None;
    }
    let expr = Expr::Aggregate(a.clone()).to_string();
    let req = PushdownRequest { expr, start_ms, end_ms, step_ms, lookback_ms, max_series: 0, max_samples: 0 };
    Some((req, op))
}

/// Label marking the right operand's series in a node's answer to a
/// pushed-down pair (see [`plan_pair`]); never a grouping label there.
pub const RHS_LABEL: &str = "__aion_pushdown_rhs__";

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

/// Both operands of `b`, two pushable aggregations grouped `by` labels, as
/// ONE request: each node evaluates both from one read of its data
/// ([`crate::engine::Engine::operands`]) and answers both partials, the
/// right operand's series marked with [`RHS_LABEL`] ([`split_sides`]).
/// The request's expression is `lhs + rhs`; the `+` is never applied.
/// Returns the request and each side's merge operator.
pub fn plan_pair(b: &BinaryExpr, start_ms: i64, end_ms: i64, step_ms: i64, lookback_ms: i64) -> Option<(PushdownRequest, MergeOp, MergeOp)> {
    let (Expr::Aggregate(la), Expr::Aggregate(ra)) = (unwrap_parens(&b.lhs), unwrap_parens(&b.rhs)) else {
        return None;
    };
    // `without` keeps labels the series have, which could include the marker.
    let by_only = |a: &AggregateExpr| !matches!(a.modifier, Some(LabelModifier::Exclude(_)));
    if !by_only(la) || !by_only(ra) {
        return None;
    }
    let (l, lop) = plan(la, start_ms, end_ms, step_ms, lookback_ms)?;
    let (r, rop) = plan(ra, start_ms, end_ms, step_ms, lookback_ms)?;
    Some((PushdownRequest { expr: format!("{} + {}", l.expr, r.expr), ..l }, lop, rop))
}

/// A pushed-down pair's answer split into (left, right) operand series,
/// the marker removed.
pub fn split_sides(parts: Vec<PartialSeries>) -> (Vec<PartialSeries>, Vec<PartialSeries>) {
    let (mut lhs, mut rhs) = (Vec::new(), Vec::new());
    for mut s in parts {
        if s.labels.get(RHS_LABEL).is_some() {
            s.labels = s.labels.drop_names(&[RHS_LABEL.to_string()]);
            rhs.push(s);
        } else {
            lhs.push(s);
        }
    }
    (lhs, rhs)
}

fn is_selector(e: &Expr) -> bool {
    match e {
        Expr::Paren(p) => is_selector(&p.expr),
        Expr::VectorSelector(_) => true,
        _ => false,
    }
}

fn pushable_inner(e: &Expr) -> bool {
    match e {
        Expr::Paren(p) => pushable_inner(&p.expr),
        Expr::VectorSelector(vs) => vs.at.is_none(),
        Expr::Call(c) => {
            PER_SERIES_RANGE_FUNCTIONS.contains(&c.func.name)
                && c.args.args.len() == 1
                && matches!(c.args.args[0].as_ref(), Expr::MatrixSelector(ms) if ms.vs.at.is_none())
        }
        _ => false,
    }
}

/// What a shard answers: its partial result, or `annotated` when its
/// evaluation raised a warning or info (the querier then falls back).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PartialResult {
    /// Output series of the aggregation over this shard's data.
    pub series: Vec<PartialSeries>,
    /// Whether the evaluation produced annotations.
    pub annotated: bool,
    /// Label-set hashes of the series the evaluation selected (only under
    /// [`PushdownRequest::max_series`]).
    pub series_hashes: Vec<u64>,
    /// Samples the evaluation loaded.
    pub samples: u64,
}

/// Evaluates a pushed-down aggregation over one shard's data, within the
/// request's limits: over `max_series` distinct series the storage error
/// [`StorageError::LimitExceeded`] (`max_series_per_query`), over
/// `max_samples` [`EngineError::TooManySamples`].
pub fn evaluate_partial(
    storage: Arc<dyn Queryable>,
    tenant: &TenantId,
    req: &PushdownRequest,
    timeout: Duration,
) -> Result<PartialResult, EngineError> {
    let max_samples = usize::try_from(req.max_samples).unwrap_or(usize::MAX);
    let opts = EngineOptions {
        lookback_delta: Duration::from_millis(req.lookback_ms.max(1) as u64),
        timeout,
        prefer_fused: true,
        max_samples: if max_samples > 0 { max_samples } else { EngineOptions::default().max_samples },
    };
    let engine = Engine::new(opts);
    let limited = (req.max_series > 0).then(|| {
        let max = usize::try_from(req.max_series).unwrap_or(usize::MAX);
        LimitedQueryable::new(Arc::clone(&storage), None, 0, max)
    });
    let storage: &dyn Queryable = match &limited {
        Some(l) => l,
        None => storage.as_ref(),
    };
    let ctx = crate::engine::plan::DurationContext { step_ms: req.step_ms.max(0), range_ms: (req.end_ms - req.start_ms).max(0) };
    let mut out = if matches!(crate::engine::plan::parse(&req.expr, ctx)?, Expr::Binary(_)) {
        evaluate_pair(&engine, storage, tenant, req)?
    } else {
        let result = if req.step_ms <= 0 {
            engine.instant_query(storage, tenant, &req.expr, req.start_ms)?
        } else {
            engine.range_query(storage, tenant, &req.expr, req.start_ms, req.end_ms, req.step_ms)?
        };
        let annotated = !result.warnings.is_empty() || !result.infos.is_empty();
        let series = partial_series(result.value, &req.expr)?;
        PartialResult { series, annotated, series_hashes: Vec::new(), samples: result.total_samples }
    };
    out.series_hashes = limited.map_or_else(Vec::new, |l| l.series_hashes());
    Ok(out)
}

/// Both operands of a pushed-down pair ([`plan_pair`]): the left's series
/// as they are, the right's marked with [`RHS_LABEL`].
fn evaluate_pair(engine: &Engine, storage: &dyn Queryable, tenant: &TenantId, req: &PushdownRequest) -> Result<PartialResult, EngineError> {
    let ops = engine.operands(storage, tenant, &req.expr, req.start_ms, req.end_ms, req.step_ms)?;
    let mut series = partial_series(ops.lhs, &req.expr)?;
    for mut s in partial_series(ops.rhs, &req.expr)? {
        s.labels.set(RHS_LABEL, "1");
        series.push(s);
    }
    Ok(PartialResult { series, annotated: ops.annotated, series_hashes: Vec::new(), samples: ops.total_samples })
}

/// An instant vector or matrix as partial series.
fn partial_series(v: Value, expr: &str) -> Result<Vec<PartialSeries>, EngineError> {
    Ok(match v {
        Value::Vector(v) => v.into_iter().map(|s| PartialSeries { labels: s.labels, points: vec![Sample::new(s.t, s.v)] }).collect(),
        Value::Matrix(m) => m.into_iter().map(|s| PartialSeries { labels: s.labels, points: s.samples }).collect(),
        Value::Scalar { .. } | Value::String { .. } => {
            return Err(EngineError::Execution(format!("pushed-down expression {expr} is not a vector")))
        }
    })
}

/// Folds per-shard results into one series per label set, points in time
/// order, output sorted by labels. Linear in the points: each part's points
/// are in time order (the engine's output is), so a group's points are
/// combined by a sorted merge — in place when the parts share the step grid,
/// as every shard's answer for one query does.
pub fn merge(op: MergeOp, parts: Vec<Vec<PartialSeries>>) -> Vec<PartialSeries> {
    // Each label set's parts, in part order; then the groups are folded
    // independently, on several threads when there are many points (the
    // nodes have answered by now, so the cores are the querier's). The
    // output is sorted by labels, so the groups' order does not matter.
    let mut groups: HashMap<Labels, Vec<Vec<Sample>>> = HashMap::new();
    let mut work = 0usize;
    for s in parts.into_iter().flatten() {
        work += s.points.len();
        groups.entry(s.labels).or_default().push(s.points);
    }
    let groups: Vec<(Labels, Vec<Vec<Sample>>)> = groups.into_iter().collect();
    let mut out = par_map(groups, work, |(labels, points)| PartialSeries { labels, points: merge_group(op, points) });
    out.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
    out
}

/// One label set's parts folded into one series, in time order.
fn merge_group(op: MergeOp, parts: Vec<Vec<Sample>>) -> Vec<Sample> {
    let in_order = |mut points: Vec<Sample>| {
        if !points.windows(2).all(|w| w[0].t < w[1].t) {
            points.sort_by_key(|p| p.t);
        }
        points
    };
    let mut parts = parts.into_iter().map(in_order);
    let Some(first) = parts.next() else { return Vec::new() };
    let mut acc = start_acc(op, &first);
    for points in parts {
        fold_points(op, &mut acc, &points);
    }
    acc.into_iter().map(|a| Sample::new(a.t, finish(a.v, a.c))).collect()
}

/// One merged point: timestamp, value, Kahan compensation.
#[derive(Debug, Clone, Copy)]
struct Acc {
    t: i64,
    v: f64,
    c: f64,
}

/// A group's first part as accumulators (sorted, duplicates combined).
fn start_acc(op: MergeOp, points: &[Sample]) -> Vec<Acc> {
    if points.windows(2).all(|w| w[0].t < w[1].t) {
        // One point per step (the usual case): no duplicates to combine.
        let first = |v: f64| if op == MergeOp::Group { 1.0 } else { v };
        return points.iter().map(|p| Acc { t: p.t, v: first(p.v), c: 0.0 }).collect();
    }
    let mut out: Vec<Acc> = Vec::with_capacity(points.len());
    for p in points {
        match out.last_mut() {
            Some(a) if a.t == p.t => combine(op, a, p.v),
            _ => out.push(Acc { t: p.t, v: if op == MergeOp::Group { 1.0 } else { p.v }, c: 0.0 }),
        }
    }
    out
}

/// Adds a part's points (time order) into a group's accumulators.
fn fold_points(op: MergeOp, acc: &mut Vec<Acc>, points: &[Sample]) {
    if acc.len() == points.len() && acc.iter().zip(points).all(|(a, p)| a.t == p.t) {
        // Same steps (the usual case): one loop per operation.
        let pairs = acc.iter_mut().zip(points);
        match op {
            MergeOp::Sum => pairs.for_each(|(a, p)| (a.v, a.c) = kahan_add(a.v, a.c, p.v)),
            MergeOp::Min => pairs.for_each(|(a, p)| combine(MergeOp::Min, a, p.v)),
            MergeOp::Max => pairs.for_each(|(a, p)| combine(MergeOp::Max, a, p.v)),
            MergeOp::Group => {}
        }
        return;
    }
    let old = std::mem::take(acc);
    acc.reserve(old.len().max(points.len()));
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < points.len() {
        let take_old = j >= points.len() || (i < old.len() && old[i].t <= points[j].t);
        if take_old {
            acc.push(old[i]);
            i += 1;
            continue;
        }
        let p = points[j];
        j += 1;
        match acc.last_mut() {
            Some(a) if a.t == p.t => combine(op, a, p.v),
            _ => acc.push(Acc { t: p.t, v: if op == MergeOp::Group { 1.0 } else { p.v }, c: 0.0 }),
        }
    }
}

/// Combines `v` into an existing point.
fn combine(op: MergeOp, a: &mut Acc, v: f64) {
    match op {
        MergeOp::Sum => (a.v, a.c) = kahan_add(a.v, a.c, v),
        MergeOp::Min => {
            if a.v > v || a.v.is_nan() {
                a.v = v
            }
        }
        MergeOp::Max => {
            if a.v < v || a.v.is_nan() {
                a.v = v
            }
        }
        MergeOp::Group => {}
    }
}

/// A Kahan sum's value: the sum plus its compensation (unless infinite).
fn finish(v: f64, c: f64) -> f64 {
    if v.is_infinite() {
        v
    } else {
        v + c
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::type_complexity)]
mod tests {
    use super::*;
    use aion_model::memstore::MemStore;
    use aion_model::storage::{Appender, SeriesSamples, WriteBatch};

    fn agg(q: &str) -> AggregateExpr {
        match promql_parser::parser::parse(q).unwrap() {
            Expr::Aggregate(a) => a,
            other => panic!("not an aggregation: {other}"),
        }
    }

    #[test]
    fn plans_only_what_merges_exactly() {
        for q in [
            "sum by (job) (rate(x[5m]))",
            "count(x)",
            "max without (i) (max_over_time(x[1m] offset 5m))",
            "group by (a) (x)",
            r#"count by (__name__) ({__name__=~"x.+"})"#,
            "sum without (__name__) ((x))",
        ] {
            assert!(plan(&agg(q), 0, 60_000, 15_000, 300_000).is_some(), "{q}");
        }
        for q in [
            "avg(x)",
            "topk(3, x)",
            "sum(rate(x[5m] @ 100))",
            "sum by (__name__) (rate(x[5m]))",
            "count without (__name__) (last_over_time(x[5m]))",
            "sum(x + 1)",
            "sum(histogram_quantile(0.9, x))",
            "sum(sum(x))",
            "quantile(0.5, x)",
        ] {
            assert!(plan(&agg(q), 0, 60_000, 15_000, 300_000).is_none(), "{q}");
        }
        let (req, op) = plan(&agg("sum by (job) (rate(x[5m]))"), 1, 2, 3, 4).unwrap();
        assert_eq!(op, MergeOp::Sum);
        assert_eq!((req.start_ms, req.end_ms, req.step_ms, req.lookback_ms), (1, 2, 3, 4));
        // The text parses back to the same aggregation.
        assert_eq!(agg(&req.expr).to_string(), req.expr);
    }

    fn shard(series: &[(&str, &str, &[(i64, f64)])]) -> MemStore {
        let s = MemStore::new();
        let batch = WriteBatch {
            tenant: TenantId::anonymous(),
            series: series
                .iter()
                .map(|(job, inst, pts)| SeriesSamples {
                    labels: Labels::from_pairs([("__name__", "x_total"), ("job", *job), ("instance", *inst)]),
                    samples: pts.iter().map(|(t, v)| Sample::new(*t, *v)).collect(),
                })
                .collect(),
        };
        s.append(batch).unwrap();
        s
    }

    /// Splitting series over shards, evaluating each, merging = evaluating all at once.
    #[test]
    fn merged_parts_equal_the_one_pass_result() {
        let pts = |k: f64| -> Vec<(i64, f64)> { (0..20).map(|i| (i * 15_000, k * i as f64)).collect() };
        let (a, b, c, d) = (pts(1.0), pts(2.0), pts(3.5), pts(0.25));
        let all: Vec<(&str, &str, &[(i64, f64)])> = vec![("a", "1", &a), ("a", "2", &b), ("b", "3", &c), ("b", "4", &d)];
        let whole: Arc<dyn Queryable> = Arc::new(shard(&all));
        let parts: [Arc<dyn Queryable>; 3] = [Arc::new(shard(&all[..1])), Arc::new(shard(&all[1..3])), Arc::new(shard(&all[3..]))];
        let t = TenantId::anonymous();
        for q in [
            "sum by (job) (rate(x_total[1m]))",
            "count(x_total)",
            "max by (job) (x_total)",
            "min(increase(x_total[2m]))",
            "group by (job) (x_total)",
            r#"count by (__name__) ({__name__=~"x.+"})"#,
        ] {
            let (req, op) = plan(&agg(q), 60_000, 280_000, 20_000, 300_000).unwrap();
            let want = evaluate_partial(Arc::clone(&whole), &t, &req, Duration::from_secs(5)).unwrap();
            let got = merge(op, parts.iter().map(|p| evaluate_partial(Arc::clone(p), &t, &req, Duration::from_secs(5)).unwrap().series).collect());
            assert_eq!(got.len(), want.series.len(), "{q}");
            for (g, w) in got.iter().zip(&want.series) {
                assert_eq!(g.labels, w.labels, "{q}");
                assert_eq!(g.points.len(), w.points.len(), "{q}");
                for (x, y) in g.points.iter().zip(&w.points) {
                    assert_eq!(x.t, y.t);
                    assert!((x.v - y.v).abs() <= 1e-12 * y.v.abs().max(1.0), "{q}: {} vs {}", x.v, y.v);
                }
            }
            assert!(!got.is_empty(), "{q} returned nothing");
        }
    }

    #[test]
    fn a_merge_large_enough_to_fold_groups_in_parallel_equals_group_by_group() {
        use crate::engine::eval::parallel::MIN_PARALLEL_WORK;
        let (groups, nodes, steps) = (40usize, 3usize, 1_000i64);
        let points = |g: usize, n: usize| -> Vec<Sample> {
            // Node 2 of every fifth group is off the grid of the others.
            let shift = if n == 2 && g.is_multiple_of(5) { 7 } else { 0 };
            (0..steps).map(|i| Sample::new(i * 60_000 + shift, (g * 31 + n * 7) as f64 * 0.1 + i as f64 / 3.0)).collect()
        };
        let labels = |g: usize| Labels::from_pairs([("instance", format!("i-{g:03}").as_str())]);
        let parts: Vec<Vec<PartialSeries>> = (0..nodes)
            .map(|n| (0..groups).rev().map(|g| PartialSeries { labels: labels(g), points: points(g, n) }).collect())
            .collect();
        assert!(groups * nodes * steps as usize >= MIN_PARALLEL_WORK, "large enough to run in parallel");
        for op in [MergeOp::Sum, MergeOp::Min, MergeOp::Max, MergeOp::Group] {
            let got = merge(op, parts.clone());
            assert_eq!(got.len(), groups);
            for (g, s) in got.iter().enumerate() {
                assert_eq!(s.labels, labels(g), "sorted by labels");
                let want = merge_group(op, (0..nodes).map(|n| points(g, n)).collect());
                let bits = |v: &[Sample]| v.iter().map(|p| (p.t, p.v.to_bits())).collect::<Vec<_>>();
                assert_eq!(bits(&s.points), bits(&want), "{op:?} group {g}");
            }
        }
    }

    #[test]
    fn merge_combines_aligned_and_misaligned_parts_in_time_order() {
        let ser = |l: &str, pts: &[(i64, f64)]| PartialSeries {
            labels: Labels::from_pairs([("job", l)]),
            points: pts.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
        };
        let parts = vec![
            vec![ser("b", &[(10, 1.0), (20, 2.0)]), ser("a", &[(10, 5.0)])],
            vec![ser("b", &[(10, 0.5), (20, 0.25)])],
            vec![ser("b", &[(5, 7.0), (20, 1.0), (30, 3.0)]), ser("a", &[(30, 1.0), (10, 1.0)])],
        ];
        let pts = |s: &PartialSeries| s.points.iter().map(|p| (p.t, p.v)).collect::<Vec<_>>();
        let sum = merge(MergeOp::Sum, parts.clone());
        assert_eq!(sum.iter().map(|s| s.labels.get("job").unwrap().to_string()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(pts(&sum[0]), vec![(10, 6.0), (30, 1.0)]);
        assert_eq!(pts(&sum[1]), vec![(5, 7.0), (10, 1.5), (20, 3.25), (30, 3.0)]);
        let max = merge(MergeOp::Max, parts.clone());
        assert_eq!(pts(&max[1]), vec![(5, 7.0), (10, 1.0), (20, 2.0), (30, 3.0)]);
        let min = merge(MergeOp::Min, parts.clone());
        assert_eq!(pts(&min[1]), vec![(5, 7.0), (10, 0.5), (20, 0.25), (30, 3.0)]);
        let group = merge(MergeOp::Group, parts);
        assert!(group.iter().flat_map(|s| &s.points).all(|p| p.v == 1.0));
        assert_eq!(group[1].points.len(), 4);
    }

    #[test]
    fn annotations_are_reported() {
        let pts: Vec<(i64, f64)> = (0..10).map(|i| (i * 15_000, i as f64)).collect();
        let s = shard(&[("a", "1", &pts)]);
        // rate over a metric not named like a counter → info annotation.
        let s2 = MemStore::new();
        s2.append(WriteBatch {
            tenant: TenantId::anonymous(),
            series: vec![SeriesSamples { labels: Labels::from_pairs([("__name__", "gauge")]), samples: pts.iter().map(|(t, v)| Sample::new(*t, *v)).collect() }],
        })
        .unwrap();
        let t = TenantId::anonymous();
        let (req, _) = plan(&agg("sum(rate(gauge[1m]))"), 60_000, 120_000, 15_000, 300_000).unwrap();
        assert!(evaluate_partial(Arc::new(s2), &t, &req, Duration::from_secs(5)).unwrap().annotated);
        let (req, _) = plan(&agg("sum(rate(x_total[1m]))"), 60_000, 120_000, 15_000, 300_000).unwrap();
        assert!(!evaluate_partial(Arc::new(s), &t, &req, Duration::from_secs(5)).unwrap().annotated);
    }
}
