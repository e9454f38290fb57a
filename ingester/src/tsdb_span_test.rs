//! Chunk key spans: fixed when a directory is created, kept by directories
//! from before spans existed (2 h blocks), honoured by reads and retention.

use super::*;
use crate::keys::{chunk_span_for, META_CHUNK_SPAN, META_FORMAT_VERSION};

const HOUR: i64 = 3600 * 1000;
const DAY: i64 = 24 * HOUR;

fn with_retention(days: u64) -> TsdbConfig {
    TsdbConfig {
        retention: Duration::from_secs(days * 24 * 3600),
        ..cfg()
    }
}

/// Span starts of every stored chunk.
fn chunk_spans(dir: &TempDir) -> Vec<i64> {
    let raw = raw(dir);
    let cf = raw.cf_handle(CF_CHUNKS).unwrap();
    raw.iterator_cf(cf, rocksdb::IteratorMode::Start)
        .map(|kv| parse_chunk_key(&kv.unwrap().0).unwrap().0)
        .collect()
}

/// Three days of one sample per 30 min for two series.
fn three_days() -> Vec<(i64, f64)> {
    (0..144).map(|i| (i * 30 * 60_000, i as f64)).collect()
}

fn write(db: &Tsdb, samples: &[(i64, f64)]) {
    for job in ["a", "b"] {
        db.append(batch("t", &labels("m", job), samples.iter().copied())).unwrap();
    }
    db.flush().unwrap();
}

#[test]
fn a_new_directory_keys_chunks_by_its_span_and_keeps_it_across_config_changes() {
    let dir = TempDir::new().unwrap();
    assert_eq!(chunk_span_for(15 * DAY), DAY);
    let want = three_days();
    {
        let db = Tsdb::open(dir.path(), with_retention(15)).unwrap();
        write(&db, &want);
        for (_, got) in all(&db, "t", &[eq("__name__", "m")]) {
            assert_eq!(got, want);
        }
    }
    let spans = chunk_spans(&dir);
    assert!(spans.len() >= 2 * 35, "one closed chunk per series and 2 h block: {}", spans.len());
    assert!(spans.iter().all(|s| s % DAY == 0), "{spans:?}");
    // A shorter retention gives a new directory 8 h spans; this one keeps a day.
    assert_eq!(chunk_span_for(4 * DAY), 8 * HOUR);
    let db = Tsdb::open(dir.path(), with_retention(4)).unwrap();
    let got = all(&db, "t", &[eq("__name__", "m")]);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|(_, s)| *s == want));
    // Ranges inside and across spans.
    for (start, end) in [(DAY + HOUR, DAY + 5 * HOUR), (20 * HOUR, 50 * HOUR), (0, 0), (3 * DAY, 4 * DAY)] {
        let hints = SelectHints { start, end };
        let expect: Vec<(i64, f64)> = want.iter().copied().filter(|(t, _)| (start..=end).contains(t)).collect();
        for s in db.select(&tenant("t"), &hints, &[eq("job", "b")]).unwrap() {
            assert_eq!(s.samples.iter().map(|x| (x.t, x.v)).collect::<Vec<_>>(), expect, "{start}..{end}");
        }
    }
}

#[test]
fn a_directory_without_a_span_reads_and_writes_2h_blocks() {
    let dir = TempDir::new().unwrap();
    let all_samples = three_days();
    let (old, new) = all_samples.split_at(72);
    {
        // Retention of a day gives 2 h spans, the layout before spans existed.
        let db = Tsdb::open(dir.path(), with_retention(1)).unwrap();
        write(&db, old);
    }
    {
        // As a build from before spans left it: format version 1, no span.
        let raw = raw(&dir);
        let meta = raw.cf_handle(CF_META).unwrap();
        assert_eq!(raw.get_cf(meta, META_FORMAT_VERSION).unwrap().unwrap(), [2]);
        raw.delete_cf(meta, META_CHUNK_SPAN).unwrap();
        raw.put_cf(meta, META_FORMAT_VERSION, [1]).unwrap();
    }
    let db = Tsdb::open(dir.path(), with_retention(15)).unwrap();
    write(&db, new);
    let got = all(&db, "t", &[eq("__name__", "m")]);
    assert!(got.iter().all(|(_, s)| *s == three_days()));
    drop(db);
    let spans = chunk_spans(&dir);
    assert!(spans.iter().any(|s| s % DAY != 0), "chunks written after reopening still use 2 h blocks");
    assert!(spans.iter().all(|s| s % BLOCK_MS == 0));
}

#[test]
fn a_corrupt_span_refuses_to_open() {
    let dir = TempDir::new().unwrap();
    drop(Tsdb::open(dir.path(), cfg()).unwrap());
    {
        let raw = raw(&dir);
        raw.put_cf(raw.cf_handle(CF_META).unwrap(), META_CHUNK_SPAN, u64_key(5)).unwrap();
    }
    let err = Tsdb::open(dir.path(), cfg()).err().unwrap().to_string();
    assert!(err.contains("chunk_span_ms"), "{err}");
}

#[test]
fn retention_drops_whole_spans_and_hides_what_it_cut_in_the_rest() {
    let dir = TempDir::new().unwrap();
    let c = with_retention(10);
    let l = labels("m", "a");
    let ts = [DAY + HOUR, 2 * DAY + HOUR, 2 * DAY + 13 * HOUR, 12 * DAY + 6 * HOUR];
    let db = Tsdb::open(dir.path(), c.clone()).unwrap();
    db.append(batch("t", &l, ts.iter().map(|&t| (t, 1.0)))).unwrap();
    db.flush().unwrap();
    db.apply_retention().unwrap();
    // The cut is at 2 d + 6 h: the span of day 1 is gone; day 2's stays
    // (until it has wholly expired) but its samples before the cut are not read.
    let want = vec![(2 * DAY + 13 * HOUR, 1.0), (12 * DAY + 6 * HOUR, 1.0)];
    assert_eq!(all(&db, "t", &[eq("job", "a")])[0].1, want);
    db.flush().unwrap();
    drop(db);
    let spans = chunk_spans(&dir);
    assert!(spans.iter().all(|&s| s >= 2 * DAY), "{spans:?}");
    assert!(spans.contains(&(2 * DAY)));
    let db = Tsdb::open(dir.path(), c).unwrap();
    assert_eq!(all(&db, "t", &[eq("job", "a")])[0].1, want);
}

#[test]
fn a_snapshot_carries_its_span_and_the_format_version_that_names_it() {
    let (a, b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let want = three_days();
    let leader = Tsdb::open(a.path(), with_retention(15)).unwrap();
    write(&leader, &want);
    let dump = leader.dump_state().unwrap();
    {
        // The follower would key chunks by 2 h blocks, as a version 1 directory.
        let follower = Tsdb::open(b.path(), with_retention(1)).unwrap();
        drop(follower);
        let raw = raw(&b);
        let meta = raw.cf_handle(CF_META).unwrap();
        raw.delete_cf(meta, META_CHUNK_SPAN).unwrap();
        raw.put_cf(meta, META_FORMAT_VERSION, [1]).unwrap();
    }
    let follower = Tsdb::open(b.path(), with_retention(1)).unwrap();
    follower.install_state(&dump).unwrap();
    let got = all(&follower, "t", &[eq("__name__", "m")]);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|(_, s)| *s == want));
    drop(follower);
    let raw = raw(&b);
    let meta = raw.cf_handle(CF_META).unwrap();
    assert_eq!(raw.get_cf(meta, META_FORMAT_VERSION).unwrap().unwrap(), [2]);
    assert_eq!(raw.get_cf(meta, META_CHUNK_SPAN).unwrap().unwrap(), u64_key(DAY as u64));
}
