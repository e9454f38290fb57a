//! Pushed-down pairs and `avg` against the plain plan: a store split into
//! parts that answers pushdowns the way the ingester nodes do gives the
//! same results, from ONE pushdown call per pair or `avg`.

use super::union::UnionQueryable;
use super::{evaluate_partial, split_sides, RHS_LABEL};
use crate::engine::{Engine, EngineError, EngineOptions, Value};
use crate::limits::LimitedQueryable;
use aion_model::memstore::MemStore;
use aion_model::storage::{
    Appender, PushdownAnswer, PushdownRequest, Queryable, SelectHints, Series, SeriesSamples, StorageError, WriteBatch,
};
use aion_model::{Labels, Matcher, Sample, TenantId};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Parts that each evaluate a pushdown on their own series, as nodes do.
struct Parts {
    parts: Vec<Arc<MemStore>>,
    union: UnionQueryable,
    calls: AtomicUsize,
}

impl Parts {
    fn new(parts: Vec<Arc<MemStore>>) -> Self {
        let union = UnionQueryable::new(parts.iter().map(|p| Arc::clone(p) as Arc<dyn Queryable>).collect());
        Self { parts, union, calls: AtomicUsize::new(0) }
    }
}

impl Queryable for Parts {
    fn select(&self, t: &TenantId, h: &SelectHints, m: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        self.union.select(t, h, m)
    }
    fn label_names(&self, t: &TenantId, h: &SelectHints, m: &[Matcher]) -> Result<Vec<String>, StorageError> {
        self.union.label_names(t, h, m)
    }
    fn label_values(&self, t: &TenantId, n: &str, h: &SelectHints, m: &[Matcher]) -> Result<Vec<String>, StorageError> {
        self.union.label_values(t, n, h, m)
    }
    fn pushdown(&self, t: &TenantId, req: &PushdownRequest) -> Option<Result<PushdownAnswer, StorageError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut out = PushdownAnswer::default();
        for p in &self.parts {
            match evaluate_partial(Arc::clone(p) as Arc<dyn Queryable>, t, req, Duration::from_secs(5)) {
                Ok(r) if r.annotated => return None,
                Ok(r) => {
                    out.series.extend(r.series);
                    out.series_hashes.extend(r.series_hashes);
                    out.samples += r.samples;
                }
                // What the node's status and the fan-out client make of a limit hit.
                Err(EngineError::TooManySamples(_)) => {
                    let max = req.max_samples;
                    return Some(Err(StorageError::LimitExceeded { limit: "max_samples_per_query", max, value: max + 1 }));
                }
                Err(EngineError::Storage(e @ StorageError::LimitExceeded { .. })) => return Some(Err(e)),
                Err(e) => return Some(Err(StorageError::Unavailable(e.to_string()))),
            }
        }
        Some(Ok(out))
    }
    fn may_push_down(&self) -> bool {
        true
    }
}

/// Counters by job and code over three parts, and the same in one store.
fn stores() -> (MemStore, Parts) {
    let whole = MemStore::new();
    let parts: Vec<MemStore> = (0..3).map(|_| MemStore::new()).collect();
    let mut i: usize = 0;
    for job in ["a", "b", "c", "d"] {
        for code in ["200", "404", "500", "503"] {
            for inst in 0..3 {
                let labels = Labels::from_pairs([
                    ("__name__", "req_total".to_string()),
                    ("code", code.to_string()),
                    ("inst", inst.to_string()),
                    ("job", job.to_string()),
                ]);
                let mut v = 0.0;
                let samples: Vec<Sample> = (0..120)
                    .map(|k| {
                        v += 0.3 + ((k as usize * 7 + i * 3) % 13) as f64 / 7.0;
                        Sample::new(k * 15_000, v)
                    })
                    .collect();
                let batch = |s: &[Sample]| WriteBatch {
                    tenant: TenantId::anonymous(),
                    series: vec![SeriesSamples { labels: labels.clone(), samples: s.to_vec() }],
                };
                whole.append(batch(&samples)).unwrap();
                parts[i % 3].append(batch(&samples)).unwrap();
                i += 1;
            }
        }
    }
    (whole, Parts::new(parts.into_iter().map(Arc::new).collect()))
}

fn by_labels(v: Value) -> Vec<(Labels, Vec<Sample>)> {
    let mut out: Vec<(Labels, Vec<Sample>)> = match v {
        Value::Matrix(m) => m.into_iter().map(|s| (s.labels, s.samples)).collect(),
        Value::Vector(v) => v.into_iter().map(|s| (s.labels, vec![Sample::new(s.t, s.v)])).collect(),
        other => panic!("unexpected {other:?}"),
    };
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn assert_close(q: &str, got: Vec<(Labels, Vec<Sample>)>, want: Vec<(Labels, Vec<Sample>)>) {
    assert!(!want.is_empty(), "{q}: empty");
    assert_eq!(got.iter().map(|s| &s.0).collect::<Vec<_>>(), want.iter().map(|s| &s.0).collect::<Vec<_>>(), "{q}");
    for ((l, g), (_, w)) in got.iter().zip(&want) {
        assert_eq!(g.len(), w.len(), "{q} {l}");
        for (x, y) in g.iter().zip(w) {
            assert_eq!(x.t, y.t, "{q} {l}");
            assert!((x.v - y.v).abs() <= 1e-12 * y.v.abs().max(1.0), "{q} {l} at {}: {} vs {}", x.t, x.v, y.v);
        }
    }
}

#[test]
fn pairs_and_avg_pushed_down_once_equal_the_plain_plan() {
    let (whole, parts) = stores();
    let (e, t) = (Engine::default(), TenantId::anonymous());
    for q in [
        r#"sum by (job) (rate(req_total{code=~"5.."}[2m])) / sum by (job) (rate(req_total[2m]))"#,
        r#"sum by (job) (rate(req_total[2m])) - max by (job) (rate(req_total{inst="1"}[2m]))"#,
        "avg by (job) (rate(req_total[2m]))",
        "avg(increase(req_total[1m]))",
        "avg by (code) (req_total)",
    ] {
        parts.calls.store(0, Ordering::SeqCst);
        let got = e.range_query(&parts, &t, q, 120_000, 1_700_000, 30_000).unwrap().value;
        assert_eq!(parts.calls.load(Ordering::SeqCst), 1, "{q}: one pushdown call");
        let want = e.range_query(&whole, &t, q, 120_000, 1_700_000, 30_000).unwrap().value;
        assert_close(q, by_labels(got), by_labels(want));
        let got = e.instant_query(&parts, &t, q, 900_000).unwrap().value;
        let want = e.instant_query(&whole, &t, q, 900_000).unwrap().value;
        assert_close(q, by_labels(got), by_labels(want));
    }
}

#[test]
fn a_node_answers_both_operands_marked_apart() {
    let (_, parts) = stores();
    let t = TenantId::anonymous();
    let expr = r#"sum by (job) (rate(req_total{code="500"}[2m])) + count by (job) (rate(req_total[2m]))"#;
    let req = PushdownRequest {
        expr: expr.into(),
        start_ms: 120_000,
        end_ms: 600_000,
        step_ms: 60_000,
        lookback_ms: 300_000,
        max_series: 0,
        max_samples: 0,
    };
    let r = evaluate_partial(Arc::clone(&parts.parts[0]) as Arc<dyn Queryable>, &t, &req, Duration::from_secs(5)).unwrap();
    let (lhs, rhs) = split_sides(r.series);
    assert_eq!((lhs.len(), rhs.len()), (4, 4), "one group per job on each side");
    assert!(lhs.iter().chain(&rhs).all(|s| s.labels.get(RHS_LABEL).is_none()));
    // Every part holds 4 of the 12 series of each job: the counts say so.
    assert!(rhs.iter().all(|s| s.points.iter().all(|p| p.v == 4.0)), "{rhs:?}");
}

/// The queries of the limit tests: a plain pushdown, a pair, an `avg`.
const LIMITED: [&str; 3] = [
    "sum by (job) (rate(req_total[2m]))",
    r#"sum by (job) (rate(req_total{code=~"5.."}[2m])) / sum by (job) (rate(req_total[2m]))"#,
    "avg by (code) (req_total)",
];

#[test]
fn pushed_down_samples_count_in_stats_and_against_the_limit_as_in_one_store() {
    let (whole, parts) = stores();
    let t = TenantId::anonymous();
    for q in LIMITED {
        let plain = Engine::default().range_query(&whole, &t, q, 120_000, 1_700_000, 30_000).unwrap().total_samples;
        parts.calls.store(0, Ordering::SeqCst);
        let pushed = Engine::default().range_query(&parts, &t, q, 120_000, 1_700_000, 30_000).unwrap().total_samples;
        assert_eq!(parts.calls.load(Ordering::SeqCst), 1, "{q}: pushed down");
        assert!(plain > 0, "{q}");
        assert_eq!(pushed, plain, "{q}: samples loaded");
        // Just enough passes, one fewer fails the same way in both.
        for (max, ok) in [(plain as usize, true), (plain as usize - 1, false)] {
            let e = Engine::new(EngineOptions { max_samples: max, ..EngineOptions::default() });
            let one = e.range_query(&whole, &t, q, 120_000, 1_700_000, 30_000);
            let split = e.range_query(&parts, &t, q, 120_000, 1_700_000, 30_000);
            assert_eq!(one.is_ok(), ok, "{q} max {max}: {one:?}");
            assert_eq!(split.is_ok(), ok, "{q} max {max} pushed down: {split:?}");
            if !ok {
                assert!(matches!(split, Err(EngineError::TooManySamples(_))), "{q}: {split:?}");
            }
        }
    }
}

#[test]
fn pushed_down_series_count_against_the_series_limit_as_in_one_store() {
    let (whole, parts) = stores();
    let (whole, parts): (Arc<dyn Queryable>, Arc<dyn Queryable>) = (Arc::new(whole), Arc::new(parts));
    let t = TenantId::anonymous();
    // 48 series in all; the error ratio reads 24 + 48 (the same 24 twice).
    for q in LIMITED {
        for (max, ok) in [(48, true), (47, false)] {
            for (name, store) in [("one store", &whole), ("pushed down", &parts)] {
                let limited = LimitedQueryable::new(Arc::clone(store), None, 0, max);
                let r = Engine::default().range_query(&limited, &t, q, 120_000, 1_700_000, 30_000);
                assert_eq!(r.is_ok(), ok, "{q} {name} max {max}: {r:?}");
                assert_eq!(limited.series_limit_exceeded(), !ok, "{q} {name} max {max}");
                if ok {
                    assert_eq!(limited.series_returned(), 48, "{q} {name}: series counted once");
                }
            }
        }
    }
}
