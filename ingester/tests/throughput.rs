//! Rough throughput numbers, not a pass/fail test. Run with
//! `cargo test -p aion-ingester --test throughput -- --ignored --nocapture`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use aion_ingester::{Tsdb, TsdbConfig};
use aion_model::labels::Labels;
use aion_model::sample::Sample;
use aion_model::storage::{Appender, Queryable, SelectHints, SeriesSamples, WriteBatch};
use aion_model::tenant::TenantId;
use aion_model::Matcher;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERIES: usize = 10_000;
const SCRAPES: i64 = 100;
const BATCH_SERIES: usize = 1_000;

fn labels(i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", format!("metric_{}", i % 50)),
        ("instance", format!("host-{}", i / 50)),
        ("job", "node".to_string()),
    ])
}

/// One writer per slice of series; each writes every scrape of its slice.
fn write_all(db: &Arc<Tsdb>, writers: usize) -> Duration {
    let all: Arc<Vec<Labels>> = Arc::new((0..SERIES).map(labels).collect());
    let start = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (db, all) = (db.clone(), all.clone());
            std::thread::spawn(move || {
                let mine: Vec<&Labels> = all.iter().skip(w).step_by(writers).collect();
                for scrape in 0..SCRAPES {
                    for chunk in mine.chunks(BATCH_SERIES) {
                        let series = chunk
                            .iter()
                            .map(|l| SeriesSamples {
                                labels: (*l).clone(),
                                samples: vec![Sample::new(scrape * 15_000, scrape as f64)],
                            })
                            .collect();
                        db.append(WriteBatch {
                            tenant: TenantId::anonymous(),
                            series,
                        })
                        .unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed()
}

#[test]
#[ignore = "benchmark; run by hand"]
fn throughput() {
    let total = (SERIES as i64 * SCRAPES) as f64;
    for writers in [1, 4] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = TsdbConfig {
            checkpoint_interval: Duration::ZERO,
            ..Default::default()
        };
        let db = Arc::new(Tsdb::open(dir.path(), cfg.clone()).unwrap());
        let took = write_all(&db, writers);
        println!(
            "append, {writers} writer(s), {BATCH_SERIES}-sample batches, fsync each: {:.0} samples/s ({:.0} batches/s)",
            total / took.as_secs_f64(),
            total / BATCH_SERIES as f64 / took.as_secs_f64()
        );
        let t = Instant::now();
        let got = db
            .select(
                &TenantId::anonymous(),
                &SelectHints::all(),
                &[Matcher::equal("__name__", "metric_7")],
            )
            .unwrap();
        println!("select 200 series x 100 samples: {:?}", t.elapsed());
        assert_eq!(got.len(), 200);
        let t = Instant::now();
        let got = db
            .select(
                &TenantId::anonymous(),
                &SelectHints::all(),
                &[Matcher::equal("job", "node")],
            )
            .unwrap();
        println!("select all 10k series x 100 samples: {:?}", t.elapsed());
        assert_eq!(got.len(), SERIES);
        drop(db);
        let t = Instant::now();
        let db = Tsdb::open(dir.path(), cfg.clone()).unwrap();
        println!(
            "reopen with WAL replay of {} batches: {:?}",
            db.stats().applied_seq,
            t.elapsed()
        );
        let t = Instant::now();
        db.flush().unwrap();
        println!("checkpoint of {SERIES} series: {:?}", t.elapsed());
        drop(db);
        let t = Instant::now();
        let _db = Tsdb::open(dir.path(), cfg).unwrap();
        println!("reopen after checkpoint: {:?}", t.elapsed());
    }
}
