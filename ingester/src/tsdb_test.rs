//! Scenario tests of [`Tsdb`]: round trips, restarts (with and without a
//! checkpoint), WAL corruption, retention, concurrency.

use super::*;
use crate::keys::{parse_chunk_key, u64_key, BLOCK_MS, CF_CHUNKS, CF_WAL};
use aion_model::labels::Labels;
use aion_model::matcher::{MatchOp, Matcher};
use aion_model::sample::Sample;
use aion_model::storage::{
    Appender, Queryable, RejectReason, SelectHints, SeriesSamples, WriteBatch,
};
use aion_model::tenant::TenantId;
use tempfile::TempDir;

#[path = "tsdb_restart_test.rs"]
mod tsdb_restart_test;

#[path = "tsdb_span_test.rs"]
mod tsdb_span_test;

fn cfg() -> TsdbConfig {
    TsdbConfig {
        checkpoint_interval: Duration::ZERO,
        ..Default::default()
    }
}

fn open(dir: &TempDir) -> Tsdb {
    Tsdb::open(dir.path(), cfg()).unwrap()
}

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn labels(name: &str, job: &str) -> Labels {
    Labels::from_pairs([("__name__", name), ("job", job)])
}

fn batch(t: &str, l: &Labels, samples: impl IntoIterator<Item = (i64, f64)>) -> WriteBatch {
    WriteBatch {
        tenant: tenant(t),
        series: vec![SeriesSamples {
            labels: l.clone(),
            samples: samples
                .into_iter()
                .map(|(t, v)| Sample::new(t, v))
                .collect(),
        }],
    }
}

fn eq(n: &str, v: &str) -> Matcher {
    Matcher::equal(n, v)
}

fn all(db: &Tsdb, t: &str, m: &[Matcher]) -> Vec<(Labels, Vec<(i64, f64)>)> {
    db.select(&tenant(t), &SelectHints::all(), m)
        .unwrap()
        .into_iter()
        .map(|s| (s.labels, s.samples.iter().map(|x| (x.t, x.v)).collect()))
        .collect()
}

/// Opens the raw RocksDB of a closed TSDB.
fn raw(dir: &TempDir) -> DB {
    DB::open_cf(&Options::default(), dir.path(), ALL_CFS).unwrap()
}

fn count_keys(db: &DB, cf: &str) -> usize {
    db.iterator_cf(db.cf_handle(cf).unwrap(), rocksdb::IteratorMode::Start)
        .count()
}

#[test]
fn append_select_round_trip_across_chunks_and_blocks() {
    let dir = TempDir::new().unwrap();
    let db = open(&dir);
    let l = labels("up", "api");
    // 300 samples every 60 s: 5 h, so chunks are cut by count and by block.
    let samples: Vec<(i64, f64)> = (0..300).map(|i| (i * 60_000, i as f64)).collect();
    for chunk in samples.chunks(50) {
        let out = db.append(batch("a", &l, chunk.iter().copied())).unwrap();
        assert_eq!(out.appended, 50);
    }
    assert_eq!(
        all(&db, "a", &[eq("job", "api")]),
        vec![(l.clone(), samples.clone())]
    );
    let hints = SelectHints {
        start: 60_000 * 100,
        end: 60_000 * 250,
    };
    let got = db
        .select(&tenant("a"), &hints, &[eq("__name__", "up")])
        .unwrap();
    assert_eq!(got[0].samples.len(), 151);
    assert_eq!(got[0].samples[0], Sample::new(hints.start, 100.0));
    assert_eq!(got[0].samples[150], Sample::new(hints.end, 250.0));
    let none = SelectHints {
        start: 60_000 * 300,
        end: i64::MAX,
    };
    assert!(db
        .select(&tenant("a"), &none, &[eq("job", "api")])
        .unwrap()
        .is_empty());
    let st = db.stats();
    assert_eq!(
        (st.series, st.head_chunks, st.max_t),
        (1, 1, Some(299 * 60_000))
    );
}

#[test]
fn matchers_and_label_queries() {
    let dir = TempDir::new().unwrap();
    let db = open(&dir);
    db.append(batch("a", &labels("up", "api"), [(10, 1.0)]))
        .unwrap();
    db.append(batch("a", &labels("up", "db"), [(20, 1.0)]))
        .unwrap();
    db.append(batch(
        "a",
        &Labels::from_pairs([("__name__", "up"), ("env", "prod")]),
        [(30, 1.0)],
    ))
    .unwrap();
    let names = |m: &[Matcher]| -> Vec<String> {
        all(&db, "a", m)
            .into_iter()
            .map(|(l, _)| l.get("job").unwrap_or("-").to_string())
            .collect()
    };
    let m = |op, n: &str, v: &str| Matcher::new(op, n, v).unwrap();
    assert_eq!(names(&[eq("__name__", "up")]), vec!["-", "api", "db"]);
    assert_eq!(names(&[eq("__name__", "up"), eq("job", "")]), vec!["-"]);
    assert_eq!(
        names(&[eq("__name__", "up"), m(MatchOp::NotRegex, "job", ".+")]),
        vec!["-"]
    );
    assert_eq!(
        names(&[eq("__name__", "up"), m(MatchOp::NotEqual, "job", "api")]),
        vec!["-", "db"]
    );
    assert_eq!(names(&[m(MatchOp::Regex, "job", "a.*")]), vec!["api"]);
    let t = tenant("a");
    // The head's bound of a select, by tenant: what decides where it is read.
    let regex = || m(MatchOp::Regex, "job", "a.*");
    assert_eq!(db.series_bound(&t, &[eq("__name__", "up")]), Some(3));
    assert_eq!(db.series_bound(&t, &[eq("__name__", "up"), eq("job", "api")]), Some(1));
    assert_eq!(db.series_bound(&t, &[regex()]), None);
    assert_eq!(db.series_bound(&tenant("other"), &[regex()]), Some(0));
    assert_eq!(
        db.label_names(&t, &SelectHints::all(), &[]).unwrap(),
        vec!["__name__", "env", "job"]
    );
    assert_eq!(
        db.label_values(&t, "job", &SelectHints::all(), &[])
            .unwrap(),
        vec!["api", "db"]
    );
    let early = SelectHints { start: 0, end: 15 };
    assert_eq!(
        db.label_values(&t, "job", &early, &[]).unwrap(),
        vec!["api"]
    );
    assert_eq!(
        db.label_names(&t, &early, &[]).unwrap(),
        vec!["__name__", "job"]
    );
    assert_eq!(
        db.series(&t, &SelectHints { start: 25, end: 40 }, &[])
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn postings_cf_answers_matchers_by_prefix_iteration() {
    use crate::keys::{
        parse_postings_key, postings_name_prefix, postings_value_prefix, CF_POSTINGS,
    };
    let dir = TempDir::new().unwrap();
    {
        let db = open(&dir);
        db.append(batch("a", &labels("up", "api"), [(1, 1.0)]))
            .unwrap();
        db.append(batch("a", &labels("up", "api2"), [(1, 1.0)]))
            .unwrap();
        db.append(batch("b", &labels("up", "api"), [(1, 1.0)]))
            .unwrap();
        db.append(batch("a", &labels("down", "api"), [(1, 1.0)]))
            .unwrap();
    }
    let raw = raw(&dir);
    let cf = raw.cf_handle(CF_POSTINGS).unwrap();
    let scan = |prefix: Vec<u8>| -> Vec<(String, u64)> {
        raw.prefix_iterator_cf(cf, &prefix)
            .map(|kv| kv.unwrap().0)
            .take_while(|k| k.starts_with(&prefix))
            .map(|k| {
                let p = parse_postings_key(&k).unwrap();
                (p.value.to_string(), p.series)
            })
            .collect()
    };
    // job="api" in tenant a: refs 1 and 4, in order; not api2, not tenant b.
    let want = vec![("api".to_string(), 1), ("api".to_string(), 4)];
    assert_eq!(scan(postings_value_prefix("a", "job", "api")), want);
    assert_eq!(scan(postings_name_prefix("a", "job")).len(), 3);
    assert_eq!(
        scan(postings_value_prefix("b", "job", "api")),
        vec![("api".to_string(), 3)]
    );
}

#[test]
fn creates_nested_dirs_and_reports_a_locked_directory() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("a/b/tsdb");
    let db = Tsdb::open(&path, cfg()).unwrap();
    let err = Tsdb::open(&path, cfg()).err().unwrap();
    assert!(matches!(err, IngesterError::Open { .. }), "{err}");
    assert!(err.to_string().contains("a/b/tsdb"), "{err}");
    drop(db);
    Tsdb::open(&path, cfg()).unwrap();
}

#[test]
fn refuses_an_unknown_format_version() {
    let dir = TempDir::new().unwrap();
    drop(open(&dir));
    {
        let raw = raw(&dir);
        let meta = raw.cf_handle(crate::keys::CF_META).unwrap();
        raw.put_cf(meta, crate::keys::META_FORMAT_VERSION, [9u8])
            .unwrap();
    }
    let err = Tsdb::open(dir.path(), cfg()).err().unwrap();
    assert!(err.to_string().contains("format version 9"), "{err}");
}

#[test]
fn tenants_never_see_each_other() {
    let dir = TempDir::new().unwrap();
    let db = open(&dir);
    let l = labels("up", "api");
    db.append(batch("a", &l, [(1, 1.0)])).unwrap();
    db.append(batch("b", &l, [(1, 2.0)])).unwrap();
    db.append(batch("b", &labels("only_b", "x"), [(1, 2.0)]))
        .unwrap();
    assert_eq!(all(&db, "a", &[]), vec![(l.clone(), vec![(1, 1.0)])]);
    assert_eq!(
        all(&db, "b", &[eq("job", "api")]),
        vec![(l.clone(), vec![(1, 2.0)])]
    );
    assert!(all(&db, "c", &[]).is_empty());
    let h = SelectHints::all();
    assert_eq!(
        db.label_values(&tenant("a"), "__name__", &h, &[]).unwrap(),
        vec!["up"]
    );
    assert_eq!(
        db.label_values(&tenant("b"), "__name__", &h, &[]).unwrap(),
        vec!["only_b", "up"]
    );
    // Ordering state is per series, and series are per tenant.
    let out = db.append(batch("a", &l, [(1, 5.0)])).unwrap();
    assert_eq!(out.rejected[0].reason, RejectReason::DuplicateTimestamp);
}

#[test]
fn retention_drops_old_blocks() {
    let dir = TempDir::new().unwrap();
    let day = 24 * 3600 * 1000;
    let c = TsdbConfig {
        retention: Duration::from_secs(24 * 3600),
        ..cfg()
    };
    let old = labels("old", "x");
    let new = labels("new", "x");
    {
        let db = Tsdb::open(dir.path(), c.clone()).unwrap();
        // Old series: 3 blocks of data, 10 samples per block.
        db.append(batch("a", &old, (0..30).map(|i| (i * BLOCK_MS / 10, 1.0))))
            .unwrap();
        db.append(batch("a", &new, [(0, 1.0), (2 * day, 2.0), (3 * day, 3.0)]))
            .unwrap();
        db.flush().unwrap();
        db.apply_retention().unwrap();
        assert!(all(&db, "a", &[eq("__name__", "old")]).is_empty());
        assert_eq!(
            all(&db, "a", &[eq("__name__", "new")])[0].1,
            vec![(2 * day, 2.0), (3 * day, 3.0)]
        );
        assert_eq!(
            db.label_values(&tenant("a"), "__name__", &SelectHints::all(), &[])
                .unwrap(),
            vec!["new"]
        );
        db.flush().unwrap();
    }
    {
        let raw = raw(&dir);
        let cf = raw.cf_handle(CF_CHUNKS).unwrap();
        for kv in raw.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (k, _) = kv.unwrap();
            let (block, _, _) = parse_chunk_key(&k).unwrap();
            assert!(
                block >= 2 * day,
                "chunk of block {block} survived retention"
            );
        }
    }
    let db = Tsdb::open(dir.path(), c).unwrap();
    assert!(all(&db, "a", &[eq("__name__", "old")]).is_empty());
    assert_eq!(all(&db, "a", &[eq("__name__", "new")])[0].1.len(), 2);
}

#[test]
fn concurrent_appends_are_all_durable() {
    let dir = TempDir::new().unwrap();
    {
        let db = Arc::new(open(&dir));
        let handles: Vec<_> = (0..8)
            .map(|w| {
                let db = db.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let l = labels("c", &format!("w{w}"));
                        let out = db.append(batch("a", &l, [(i, i as f64)])).unwrap();
                        assert_eq!(out.appended, 1);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(db.stats().applied_seq, 200);
    }
    let db = open(&dir);
    let got = all(&db, "a", &[]);
    assert_eq!(got.len(), 8);
    for (_, s) in got {
        assert_eq!(s, (0..25).map(|i| (i, i as f64)).collect::<Vec<_>>());
    }
}

#[test]
fn background_thread_checkpoints_and_stops_on_drop() {
    let dir = TempDir::new().unwrap();
    let c = TsdbConfig {
        checkpoint_interval: Duration::from_millis(20),
        ..Default::default()
    };
    let db = Tsdb::open(dir.path(), c).unwrap();
    db.append(batch("a", &labels("up", "x"), [(1, 1.0)]))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while db.stats().wal_bytes > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(db.stats().wal_bytes, 0);
    drop(db);
    let db = open(&dir);
    assert_eq!(all(&db, "a", &[]).len(), 1);
}

#[test]
fn metrics_are_exposed() {
    let dir = TempDir::new().unwrap();
    let db = open(&dir);
    db.append(batch("a", &labels("up", "x"), [(2, 1.0), (1, 1.0)]))
        .unwrap();
    let mut reg = Registry::default();
    db.register_metrics(&mut reg);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    for want in [
        "aion_tsdb_samples_appended_total 1",
        "aion_tsdb_samples_rejected_total{reason=\"out_of_order\"} 1",
        "aion_tsdb_active_series 1",
        "aion_tsdb_head_chunks 1",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
    assert!(!text.contains("aion_tsdb_wal_bytes 0"), "{text}");
}
