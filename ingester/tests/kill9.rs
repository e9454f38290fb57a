//! Acknowledged writes survive `kill -9`: a child process (this test binary,
//! running the ignored `child_writer`) appends from several threads with
//! checkpoints running in the background and prints each acknowledged batch;
//! the parent SIGKILLs it mid-flight, reopens the directory and checks every
//! acknowledged sample is there. The parent reopens with a different
//! `max_samples_per_chunk` on purpose: replay then cuts chunks elsewhere than
//! the killed run did, and reads must still merge them into every sample.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use aion_ingester::{Tsdb, TsdbConfig};
use aion_model::labels::Labels;
use aion_model::sample::Sample;
use aion_model::storage::{Appender, Queryable, SelectHints, SeriesSamples, WriteBatch};
use aion_model::tenant::TenantId;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const DIR_ENV: &str = "AION_KILL9_DIR";
const WRITERS: u64 = 4;
const PER_BATCH: i64 = 10;

fn series(w: u64) -> Labels {
    Labels::from_pairs([("__name__", "kill9"), ("writer", &w.to_string())])
}

/// The child half: runs only when the parent starts it with `DIR_ENV` set.
#[test]
#[ignore = "child process of kill9_loses_no_acknowledged_write"]
fn child_writer() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let cfg = TsdbConfig {
        checkpoint_interval: Duration::from_millis(30),
        max_samples_per_chunk: 50,
        ..Default::default()
    };
    let db = std::sync::Arc::new(Tsdb::open(std::path::Path::new(&dir), cfg).unwrap());
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                for b in 0i64.. {
                    let samples = (0..PER_BATCH)
                        .map(|i| Sample::new((b * PER_BATCH + i) * 1000, (w as i64 + b) as f64))
                        .collect();
                    let batch = WriteBatch {
                        tenant: TenantId::anonymous(),
                        series: vec![SeriesSamples {
                            labels: series(w),
                            samples,
                        }],
                    };
                    db.append(batch).unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {w} {b}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn kill9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut acked = [-1i64; WRITERS as usize];
    let mut total = 0;
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines {
        let line = line.unwrap();
        let Some(rest) = line.strip_prefix("ack ") else {
            continue;
        };
        let (w, b) = rest.split_once(' ').unwrap();
        let (w, b): (usize, i64) = (w.parse().unwrap(), b.parse().unwrap());
        acked[w] = acked[w].max(b);
        total += 1;
        if total == 2_000 {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert_eq!(total, 2_000, "child stopped early");

    let cfg = TsdbConfig {
        checkpoint_interval: Duration::ZERO,
        ..Default::default()
    };
    let db = Tsdb::open(dir.path(), cfg).unwrap();
    for (w, &last) in acked.iter().enumerate() {
        let got = db
            .select(
                &TenantId::anonymous(),
                &SelectHints::all(),
                &[aion_model::Matcher::equal("writer", w.to_string())],
            )
            .unwrap();
        assert_eq!(got.len(), 1, "writer {w} lost its series");
        let samples = &got[0].samples;
        let want = (last + 1) * PER_BATCH;
        if (samples.len() as i64) < want {
            let ts: Vec<i64> = samples.iter().map(|s| s.t / 1000).collect();
            let gaps: Vec<(i64, i64)> = ts
                .windows(2)
                .filter(|p| p[1] != p[0] + 1)
                .map(|p| (p[0], p[1]))
                .collect();
            eprintln!(
                "writer {w}: gaps (seconds) {gaps:?}, stats {:?}",
                db.stats()
            );
        }
        assert!(
            samples.len() as i64 >= want,
            "writer {w}: {} samples stored, {want} acknowledged",
            samples.len()
        );
        for (i, s) in samples.iter().enumerate().take(want as usize) {
            assert_eq!(s.t, i as i64 * 1000, "writer {w} sample {i}");
            assert_eq!(s.v, (w as i64 + i as i64 / PER_BATCH) as f64);
        }
    }
}
