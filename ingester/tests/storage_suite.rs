#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! Storage-trait conformance: the same assertions over every backend of
//! `Appender + Queryable` — the model's in-memory `MemStore` and the RocksDB
//! `Tsdb` (fresh, and reopened from disk after the writes).

use aion_ingester::{Tsdb, TsdbConfig};
use aion_model::labels::Labels;
use aion_model::matcher::{MatchOp, Matcher};
use aion_model::memstore::MemStore;
use aion_model::sample::{stale_nan, Sample};
use aion_model::storage::{
    Appender, Queryable, RejectReason, SelectHints, SeriesSamples, WriteBatch,
};
use aion_model::tenant::TenantId;
use std::time::Duration;

fn t(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).unwrap()
}

fn write(
    s: &dyn Appender,
    tenant: &str,
    series: Vec<(Labels, Vec<(i64, f64)>)>,
) -> aion_model::storage::AppendOutcome {
    s.append(WriteBatch {
        tenant: t(tenant),
        series: series
            .into_iter()
            .map(|(labels, xs)| SeriesSamples {
                labels,
                samples: xs.into_iter().map(|(t, v)| Sample::new(t, v)).collect(),
            })
            .collect(),
    })
    .unwrap()
}

/// The data every backend is loaded with. Timestamps span several 2 h blocks.
fn load(s: &dyn Appender) {
    let h = 3_600_000;
    let out = write(
        s,
        "acme",
        vec![
            (
                l(&[
                    ("__name__", "http_requests"),
                    ("job", "api"),
                    ("code", "200"),
                ]),
                (0..10).map(|i| (i * h, i as f64)).collect(),
            ),
            (
                l(&[
                    ("__name__", "http_requests"),
                    ("job", "api"),
                    ("code", "500"),
                ]),
                vec![(h, 1.0), (2 * h, 2.0)],
            ),
            (
                l(&[("__name__", "http_requests"), ("job", "web")]),
                vec![(5 * h, 5.0)],
            ),
            (
                l(&[("__name__", "up"), ("job", "api")]),
                vec![(0, 1.0), (9 * h, stale_nan())],
            ),
        ],
    );
    assert_eq!(
        (out.appended, out.duplicates_ignored, out.rejected.len()),
        (15, 0, 0)
    );
    let out = write(
        s,
        "other",
        vec![(
            l(&[("__name__", "http_requests"), ("job", "secret")]),
            vec![(0, 42.0)],
        )],
    );
    assert_eq!(out.appended, 1);
}

/// Checks the ordering rules on a fresh series (mutates the store).
fn ordering_rules(s: &dyn Appender) {
    let labels = l(&[("__name__", "ordering")]);
    let out = write(
        s,
        "acme",
        vec![(
            labels.clone(),
            vec![(100, 1.0), (200, 2.0), (150, 0.0), (200, 2.0), (200, 3.0)],
        )],
    );
    assert_eq!((out.appended, out.duplicates_ignored), (2, 1));
    let reasons: Vec<_> = out
        .rejected
        .iter()
        .map(|r| (r.t, r.reason, r.labels.clone()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (150, RejectReason::OutOfOrder, labels.clone()),
            (200, RejectReason::DuplicateTimestamp, labels.clone())
        ]
    );
}

/// Read-side assertions (no writes).
fn reads(q: &dyn Queryable) {
    let h = 3_600_000;
    let acme = t("acme");
    let all = SelectHints::all();
    let sel = |hints: &SelectHints, ms: &[Matcher]| q.select(&acme, hints, ms).unwrap();

    let got = sel(&all, &[m(MatchOp::Equal, "__name__", "http_requests")]);
    assert_eq!(got.len(), 3, "select returns every matching series");
    let codes: Vec<Option<&str>> = got.iter().map(|s| s.labels.get("code")).collect();
    assert_eq!(
        codes,
        vec![Some("200"), Some("500"), None],
        "sorted by labels"
    );
    assert_eq!(got[0].samples.len(), 10);

    // Inclusive range; series without samples in range are omitted.
    let r = SelectHints {
        start: 2 * h,
        end: 5 * h,
    };
    let got = sel(
        &r,
        &[
            m(MatchOp::Equal, "job", "api"),
            m(MatchOp::Equal, "__name__", "http_requests"),
        ],
    );
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].samples.iter().map(|s| s.t).collect::<Vec<_>>(),
        vec![2 * h, 3 * h, 4 * h, 5 * h]
    );
    assert_eq!(got[1].samples, vec![Sample::new(2 * h, 2.0)]);
    assert!(sel(
        &SelectHints {
            start: 3 * h,
            end: 4 * h
        },
        &[m(MatchOp::Equal, "code", "500")]
    )
    .is_empty());

    // Staleness markers survive bit for bit.
    let up = sel(&all, &[m(MatchOp::Equal, "__name__", "up")]);
    assert_eq!(up[0].samples[1].v.to_bits(), stale_nan().to_bits());

    // Matchers that match the empty string select series without the label.
    let no_code = sel(
        &all,
        &[
            m(MatchOp::Equal, "code", ""),
            m(MatchOp::Equal, "__name__", "http_requests"),
        ],
    );
    assert_eq!(no_code.len(), 1);
    assert_eq!(no_code[0].labels.get("job"), Some("web"));
    assert_eq!(sel(&all, &[m(MatchOp::NotRegex, "code", ".+")]).len(), 2);
    assert_eq!(sel(&all, &[m(MatchOp::NotEqual, "code", "200")]).len(), 3);
    assert_eq!(sel(&all, &[m(MatchOp::Regex, "code", "5..|")]).len(), 3);
    assert_eq!(sel(&all, &[m(MatchOp::Regex, "code", ".+")]).len(), 2);
    assert_eq!(
        sel(&all, &[m(MatchOp::NotRegex, "job", "api|web")]).len(),
        0
    );

    // Label APIs, with and without matchers and time ranges.
    assert_eq!(
        q.label_names(&acme, &all, &[]).unwrap(),
        vec!["__name__", "code", "job"]
    );
    assert_eq!(
        q.label_names(&acme, &all, &[m(MatchOp::Equal, "__name__", "up")])
            .unwrap(),
        vec!["__name__", "job"]
    );
    assert_eq!(
        q.label_values(&acme, "job", &all, &[]).unwrap(),
        vec!["api", "web"]
    );
    assert_eq!(
        q.label_values(
            &acme,
            "code",
            &SelectHints {
                start: 3 * h,
                end: 4 * h
            },
            &[]
        )
        .unwrap(),
        vec!["200"]
    );
    assert_eq!(
        q.label_values(
            &acme,
            "__name__",
            &SelectHints {
                start: 5 * h,
                end: 5 * h
            },
            &[]
        )
        .unwrap(),
        vec!["http_requests"]
    );
    assert_eq!(
        q.series(
            &acme,
            &SelectHints {
                start: 6 * h,
                end: 8 * h
            },
            &[]
        )
        .unwrap()
        .len(),
        1
    );

    // Tenant isolation.
    let other = q.select(&t("other"), &all, &[]).unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].labels.get("job"), Some("secret"));
    assert!(q
        .select(&acme, &all, &[m(MatchOp::Equal, "job", "secret")])
        .unwrap()
        .is_empty());
    assert!(!q
        .label_values(&acme, "job", &all, &[])
        .unwrap()
        .contains(&"secret".to_string()));
    assert!(q.select(&t("nobody"), &all, &[]).unwrap().is_empty());
    assert!(q.label_names(&t("nobody"), &all, &[]).unwrap().is_empty());
}

/// The whole suite over one backend.
fn conformance<S: Appender + Queryable>(s: &S) {
    load(s);
    reads(s);
    ordering_rules(s);
}

#[test]
fn memstore_conforms() {
    conformance(&MemStore::new());
}

fn tsdb_config() -> TsdbConfig {
    TsdbConfig {
        checkpoint_interval: Duration::ZERO,
        ..Default::default()
    }
}

#[test]
fn tsdb_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), tsdb_config()).unwrap();
    conformance(&db);
}

#[test]
fn tsdb_conforms_after_reopen_with_and_without_checkpoint() {
    for flush in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Tsdb::open(dir.path(), tsdb_config()).unwrap();
            load(&db);
            if flush {
                db.flush().unwrap();
            }
        }
        let db = Tsdb::open(dir.path(), tsdb_config()).unwrap();
        reads(&db);
        ordering_rules(&db);
    }
}

#[test]
fn tsdb_is_usable_as_trait_objects() {
    let dir = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(Tsdb::open(dir.path(), tsdb_config()).unwrap());
    let app: std::sync::Arc<dyn Appender> = db.clone();
    let q: std::sync::Arc<dyn Queryable> = db;
    load(app.as_ref());
    reads(q.as_ref());
}

mod differential {
    //! Random writes (with restarts, with and without checkpoints) must leave
    //! the `Tsdb` answering exactly like the `MemStore` given the same writes.
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Append { series: Vec<(u8, Vec<(i64, u8)>)> },
        Reopen { flush: bool },
    }

    const BLOCK: i64 = aion_ingester::BLOCK_MS;

    fn op() -> impl Strategy<Value = Op> {
        let sample = (-BLOCK..4 * BLOCK, 0u8..4);
        let series = (0u8..5, proptest::collection::vec(sample, 1..40));
        prop_oneof![
            4 => proptest::collection::vec(series, 1..4).prop_map(|series| Op::Append { series }),
            1 => any::<bool>().prop_map(|flush| Op::Reopen { flush }),
        ]
    }

    fn series_labels(i: u8) -> Labels {
        let job = if i.is_multiple_of(2) { "even" } else { "odd" };
        let mut l = Labels::from_pairs([("__name__", "m"), ("job", job), ("i", &i.to_string())]);
        if i == 4 {
            l.remove("job");
        }
        l
    }

    fn apply(s: &dyn Appender, ser: &[(u8, Vec<(i64, u8)>)]) -> aion_model::storage::AppendOutcome {
        let mut series = Vec::new();
        for (i, xs) in ser {
            // Mostly increasing timestamps, so most samples are stored.
            let mut xs = xs.clone();
            xs.sort_by_key(|(t, _)| *t);
            if xs.len() > 3 {
                xs.swap(1, 2);
            }
            series.push((
                series_labels(*i),
                xs.into_iter().map(|(t, v)| (t, f64::from(v))).collect(),
            ));
        }
        write(s, "acme", series)
    }

    fn compare(mem: &MemStore, db: &Tsdb) -> Result<(), TestCaseError> {
        let acme = t("acme");
        let ranges = [
            SelectHints::all(),
            SelectHints {
                start: 0,
                end: BLOCK - 1,
            },
            SelectHints {
                start: BLOCK / 2,
                end: 2 * BLOCK + 7,
            },
            SelectHints { start: -5, end: 5 },
        ];
        let matchers = [
            vec![],
            vec![m(MatchOp::Equal, "job", "even")],
            vec![m(MatchOp::Equal, "job", "")],
            vec![
                m(MatchOp::NotRegex, "i", "1|2"),
                m(MatchOp::Equal, "__name__", "m"),
            ],
        ];
        for h in &ranges {
            for ms in &matchers {
                prop_assert_eq!(
                    mem.select(&acme, h, ms).unwrap(),
                    db.select(&acme, h, ms).unwrap()
                );
                prop_assert_eq!(
                    mem.series(&acme, h, ms).unwrap(),
                    db.series(&acme, h, ms).unwrap()
                );
                prop_assert_eq!(
                    mem.label_names(&acme, h, ms).unwrap(),
                    db.label_names(&acme, h, ms).unwrap()
                );
                prop_assert_eq!(
                    mem.label_values(&acme, "i", h, ms).unwrap(),
                    db.label_values(&acme, "i", h, ms).unwrap()
                );
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn tsdb_matches_memstore(ops in proptest::collection::vec(op(), 1..12)) {
            let dir = tempfile::tempdir().unwrap();
            let cfg = TsdbConfig { max_samples_per_chunk: 7, ..tsdb_config() };
            let mem = MemStore::new();
            let mut db = Some(Tsdb::open(dir.path(), cfg.clone()).unwrap());
            for op in &ops {
                match op {
                    Op::Append { series } => {
                        let want = apply(&mem, series);
                        let got = apply(db.as_ref().unwrap(), series);
                        prop_assert_eq!(want, got);
                    }
                    Op::Reopen { flush } => {
                        let old = db.take().unwrap();
                        if *flush {
                            old.flush().unwrap();
                        }
                        drop(old);
                        db = Some(Tsdb::open(dir.path(), cfg.clone()).unwrap());
                    }
                }
            }
            compare(&mem, db.as_ref().unwrap())?;
        }
    }
}
