//! Scenario tests of [`Tsdb`] across restarts: ordering rules, WAL replay
//! (with and without a checkpoint, by series ref, corrupt tails) and
//! checkpoints. Helpers come from the parent `tsdb_test` module.

use super::*;

#[test]
fn ordering_rules_hold_across_restart() {
    let dir = TempDir::new().unwrap();
    let l = labels("up", "api");
    {
        let db = open(&dir);
        let out = db
            .append(batch(
                "a",
                &l,
                [
                    (10, 1.0),
                    (20, 2.0),
                    (15, 9.0),
                    (20, 2.0),
                    (20, 3.0),
                    (30, 3.0),
                ],
            ))
            .unwrap();
        assert_eq!((out.appended, out.duplicates_ignored), (3, 1));
        let r: Vec<_> = out.rejected.iter().map(|r| (r.t, r.reason)).collect();
        assert_eq!(
            r,
            vec![
                (15, RejectReason::OutOfOrder),
                (20, RejectReason::DuplicateTimestamp)
            ]
        );
    }
    for flush in [false, true] {
        let db = open(&dir);
        let out = db
            .append(batch("a", &l, [(25, 1.0), (30, 3.0), (30, 4.0)]))
            .unwrap();
        assert_eq!(
            (out.appended, out.duplicates_ignored, out.rejected.len()),
            (0, 1, 2),
            "flush={flush}"
        );
        assert_eq!(
            all(&db, "a", &[])[0].1,
            vec![(10, 1.0), (20, 2.0), (30, 3.0)]
        );
        if flush {
            db.flush().unwrap();
        }
    }
}

#[test]
fn reopen_without_flush_replays_the_wal() {
    let dir = TempDir::new().unwrap();
    let mut expected = Vec::new();
    {
        let db = open(&dir);
        for s in 0..20 {
            let l = labels("m", &format!("job{s:02}"));
            let samples: Vec<(i64, f64)> = (0..150).map(|i| (i * 1000, (s * i) as f64)).collect();
            db.append(batch("a", &l, samples.clone())).unwrap();
            expected.push((l, samples));
        }
        assert!(db.stats().wal_bytes > 0);
    }
    let db = open(&dir);
    assert_eq!(all(&db, "a", &[]), expected);
    assert_eq!(db.stats().applied_seq, 20);
    // New writes continue after the replayed sequence numbers.
    db.append(batch("a", &labels("m", "new"), [(1, 1.0)]))
        .unwrap();
    assert_eq!(db.stats().applied_seq, 21);
}

#[test]
fn wal_records_naming_series_by_ref_replay_exactly() {
    let dir = TempDir::new().unwrap();
    let (a, b, c) = (labels("m", "a"), labels("m", "b"), labels("m", "c"));
    let two = |t: i64, x: &Labels, y: &Labels| WriteBatch {
        tenant: tenant("t"),
        series: [x, y]
            .into_iter()
            .map(|l| SeriesSamples { labels: l.clone(), samples: vec![Sample::new(t, t as f64)] })
            .collect(),
    };
    {
        let db = open(&dir);
        db.append(two(1, &a, &b)).unwrap(); // both new: labels in the record
        db.append(two(2, &a, &c)).unwrap(); // a by ref, c new
        db.append(two(3, &c, &b)).unwrap(); // both by ref
        db.append(batch("u", &a, [(4, 4.0)])).unwrap(); // same labels, other tenant: new
    }
    let wal_sizes: Vec<usize> = {
        let raw = raw(&dir);
        let cf = raw.cf_handle(CF_WAL).unwrap();
        raw.iterator_cf(cf, rocksdb::IteratorMode::Start)
            .map(|kv| kv.unwrap().1.len())
            .collect()
    };
    assert_eq!(wal_sizes.len(), 4);
    assert!(wal_sizes[2] < wal_sizes[1] && wal_sizes[1] < wal_sizes[0], "{wal_sizes:?}");
    let db = open(&dir);
    let want = vec![
        (a.clone(), vec![(1, 1.0), (2, 2.0)]),
        (b, vec![(1, 1.0), (3, 3.0)]),
        (c, vec![(2, 2.0), (3, 3.0)]),
    ];
    assert_eq!(all(&db, "t", &[]), want);
    assert_eq!(all(&db, "u", &[]), vec![(a, vec![(4, 4.0)])]);
}

#[test]
fn reopen_after_flush_purges_the_wal_and_keeps_everything() {
    let dir = TempDir::new().unwrap();
    let l = labels("up", "api");
    let samples: Vec<(i64, f64)> = (0..130).map(|i| (i * 15_000, i as f64)).collect();
    {
        let db = open(&dir);
        db.append(batch("a", &l, samples[..100].iter().copied()))
            .unwrap();
        db.append(batch("a", &l, samples[100..].iter().copied()))
            .unwrap();
        assert_eq!(db.flush().unwrap(), 2);
        assert_eq!(db.stats().wal_bytes, 0);
    }
    {
        let raw = raw(&dir);
        assert_eq!(count_keys(&raw, CF_WAL), 0);
        assert_eq!(count_keys(&raw, CF_CHUNKS), 1);
    }
    let db = open(&dir);
    assert_eq!(all(&db, "a", &[]), vec![(l.clone(), samples)]);
    assert_eq!(db.stats().head_chunks, 1);
    let out = db
        .append(batch(
            "a",
            &l,
            [(0, 0.0), (129 * 15_000, 129.0), (130 * 15_000, 1.0)],
        ))
        .unwrap();
    assert_eq!(
        (out.appended, out.duplicates_ignored, out.rejected.len()),
        (1, 1, 1)
    );
}

#[test]
fn checkpoint_written_in_several_slices_restores_every_series() {
    // ~25k head records of ~80 bytes: more than one checkpoint slice.
    let dir = TempDir::new().unwrap();
    let n: usize = 25_000;
    {
        let db = open(&dir);
        for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
            let series = chunk
                .iter()
                .map(|i| SeriesSamples {
                    labels: labels("m", &format!("j{i}")),
                    samples: (0..3i64).map(|k| Sample::new(k * 1000, (*i as i64 * k) as f64)).collect(),
                })
                .collect();
            db.append(WriteBatch { tenant: tenant("a"), series }).unwrap();
        }
        db.flush().unwrap();
        assert_eq!(count_keys(&db.inner.db, CF_HEAD), n);
    }
    assert_eq!(count_keys(&raw(&dir), CF_WAL), 0, "WAL purged: the head CF alone restores");
    let db = open(&dir);
    assert_eq!(db.stats().series, n);
    let one = all(&db, "a", &[eq("job", "j24999")]);
    assert_eq!(one[0].1, vec![(0, 0.0), (1000, 24999.0), (2000, 49998.0)]);
    assert_eq!(all(&db, "a", &[]).len(), n);
}

#[test]
fn chunk_size_change_across_restart_keeps_every_sample() {
    // Replaying the WAL with other chunk boundaries than the run that
    // persisted chunks makes chunks overlap; reads must merge them.
    for (before, after) in [(5, 120), (5, 3)] {
        let dir = TempDir::new().unwrap();
        let l = labels("up", "api");
        let with = |n| TsdbConfig {
            max_samples_per_chunk: n,
            ..cfg()
        };
        {
            let db = Tsdb::open(dir.path(), with(before)).unwrap();
            db.append(batch("a", &l, (0..8).map(|t| (t, t as f64))))
                .unwrap();
            db.flush().unwrap();
            db.append(batch("a", &l, (8..18).map(|t| (t, t as f64))))
                .unwrap();
        }
        let db = Tsdb::open(dir.path(), with(after)).unwrap();
        let want: Vec<(i64, f64)> = (0..18).map(|t| (t, t as f64)).collect();
        assert_eq!(
            all(&db, "a", &[]),
            vec![(l.clone(), want.clone())],
            "chunks of {before}, then {after}"
        );
        db.append(batch("a", &l, [(18, 18.0)])).unwrap();
        db.flush().unwrap();
        drop(db);
        let db = open(&dir);
        assert_eq!(all(&db, "a", &[])[0].1.len(), 19);
        let h = SelectHints { start: 6, end: 11 };
        let got = db.select(&tenant("a"), &h, &[]).unwrap();
        assert_eq!(
            got[0].samples.iter().map(|s| s.t).collect::<Vec<_>>(),
            vec![6, 7, 8, 9, 10, 11]
        );
    }
}

#[test]
fn corrupt_trailing_wal_record_is_skipped() {
    let dir = TempDir::new().unwrap();
    let l = labels("up", "api");
    let last = {
        let db = open(&dir);
        db.append(batch("a", &l, [(1, 1.0)])).unwrap();
        db.append(batch("a", &l, [(2, 2.0)])).unwrap();
        db.stats().applied_seq
    };
    {
        let raw = raw(&dir);
        let wal = raw.cf_handle(CF_WAL).unwrap();
        let mut rec = Vec::new();
        crate::wal::encode(&batch("a", &l, [(3, 3.0)]), None, &mut rec);
        rec.truncate(rec.len() - 4); // torn write
        raw.put_cf(wal, u64_key(last + 1), &rec).unwrap();
    }
    let db = open(&dir);
    assert_eq!(
        all(&db, "a", &[]),
        vec![(l.clone(), vec![(1, 1.0), (2, 2.0)])]
    );
    assert_eq!(db.inner.metrics.wal_corrupt_records.get(), 1);
    db.append(batch("a", &l, [(4, 4.0)])).unwrap();
    assert_eq!(db.stats().applied_seq, last + 2);
    db.flush().unwrap();
    drop(db);
    assert_eq!(count_keys(&raw(&dir), CF_WAL), 0);
    let db = open(&dir);
    assert_eq!(all(&db, "a", &[])[0].1, vec![(1, 1.0), (2, 2.0), (4, 4.0)]);
}
