//! Log entries naming series by ref (`ShardWrite::name_by_ref`, built by the
//! leader with [`Tsdb::name_known_series`]): every replica ends in the same
//! state, through a restart that re-applies the log after the checkpoint
//! and through a snapshot install, and a bad ref is rejected alike everywhere.

use crate::config::TsdbConfig;
use crate::raft::codec;
use crate::raft::{ShardWrite, TypeConfig};
use crate::tsdb::Tsdb;
use aion_model::labels::Labels;
use aion_model::sample::Sample;
use aion_model::storage::{Queryable, SelectHints, Series, SeriesSamples, WriteBatch};
use aion_model::tenant::TenantId;
use bytes::Bytes;
use openraft::{Entry, EntryPayload, LogId};
use std::time::Duration;

fn cfg() -> TsdbConfig {
    TsdbConfig { checkpoint_interval: Duration::ZERO, max_samples_per_chunk: 4, ..TsdbConfig::default() }
}

/// One sample at `step` for series `m{i}`, `i` in `series`.
fn plain(tenant: &str, step: i64, series: std::ops::Range<usize>) -> ShardWrite {
    ShardWrite::from_batch(&WriteBatch {
        tenant: TenantId::new(tenant).unwrap(),
        series: series
            .map(|i| SeriesSamples {
                labels: Labels::from_pairs([("__name__", "m".to_string()), ("i", i.to_string())]),
                samples: vec![Sample::new(step * 1000, (step * 10 + i as i64) as f64)],
            })
            .collect(),
    })
}

/// The entry as every follower reads it: encoded to the log and read back.
fn through_log(index: u64, w: &ShardWrite) -> ShardWrite {
    let e = Entry::<TypeConfig> {
        log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(w.clone()),
    };
    let mut buf = Vec::new();
    codec::encode_entry(&e, &mut buf);
    match codec::decode_local_entry(Bytes::from(buf)).unwrap().payload {
        EntryPayload::Normal(w) => w,
        other => panic!("not a normal entry: {other:?}"),
    }
}

fn apply(db: &Tsdb, index: u64, w: &ShardWrite) -> u64 {
    let outs = db.apply_replicated_write(index, &index.to_le_bytes(), w).unwrap();
    outs.iter().map(|o| o.appended).sum()
}

fn state(db: &Tsdb) -> Vec<Vec<Series>> {
    ["a", "b"]
        .iter()
        .map(|t| db.select(&TenantId::new(t).unwrap(), &SelectHints::all(), &[]).unwrap())
        .collect()
}

fn tenant_of(index: u64) -> &'static str {
    if index.is_multiple_of(4) {
        "b"
    } else {
        "a"
    }
}

#[test]
fn ref_named_entries_apply_alike_through_restart_and_install() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let open = |i: usize| Tsdb::open(dirs[i].path(), cfg()).unwrap();
    let (leader, mut restarted, installed) = (open(0), open(1), open(2));
    let mut log = Vec::new();
    let mut dump_at_8 = None;
    let mut by_ref = 0;
    for index in 1..=12u64 {
        // New series keep appearing (up to m6), the others repeat.
        let w = plain(tenant_of(index), index as i64, 0..(3 + index as usize % 5));
        let entry = through_log(index, &leader.name_known_series(&w));
        by_ref += entry.series().filter(|s| s.series_ref.is_some()).count();
        let expected = w.sample_count();
        assert_eq!(apply(&leader, index, &entry), expected, "entry {index}");
        assert_eq!(apply(&restarted, index, &entry), expected);
        if index <= 4 {
            apply(&installed, index, &entry);
        }
        if index == 6 {
            restarted.flush().unwrap();
        }
        if index == 8 {
            dump_at_8 = Some(leader.dump_state().unwrap());
        }
        log.push(entry);
    }
    assert!(by_ref > 30, "most series went by ref ({by_ref})");
    assert!(log[11].bytes().len() < plain("b", 12, 0..5).bytes().len() * 3 / 5);

    // Restart: the mark is the checkpoint's (6); series created after it were
    // persisted by their applies and are loaded; the log after 6 is re-applied.
    drop(restarted);
    restarted = open(1);
    assert_eq!(restarted.stats().applied_seq, 6);
    for (i, entry) in log.iter().enumerate().skip(6) {
        apply(&restarted, i as u64 + 1, entry);
    }
    // Install at 8, then the ref-named entries after it.
    installed.install_state(&dump_at_8.unwrap()).unwrap();
    for (i, entry) in log.iter().enumerate().skip(8) {
        apply(&installed, i as u64 + 1, entry);
    }

    let want = state(&leader);
    assert_eq!((want[0].len(), want[1].len()), (7, 7), "m0..m6 of each tenant");
    for db in [&restarted, &installed] {
        assert_eq!(state(db), want);
        assert_eq!(db.bad_ref_samples(), 0);
        // Same refs: the next entry comes out byte-identical on every replica.
        let next = plain("a", 13, 0..7);
        assert_eq!(db.name_known_series(&next), leader.name_known_series(&next));
    }
}

#[test]
fn a_bad_ref_is_rejected_alike_on_every_replica() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let replicas: Vec<Tsdb> = dirs.iter().map(|d| Tsdb::open(d.path(), cfg()).unwrap()).collect();
    for db in &replicas {
        apply(db, 1, &plain("a", 1, 0..2)); // refs 1, 2
        apply(db, 2, &plain("b", 2, 0..1)); // ref 3
    }
    // Tenant a's write naming: its own ref 1, tenant b's ref 3, unknown 99.
    let refs = vec![Some(1), Some(3), Some(99)];
    let entry = through_log(3, &plain("a", 3, 0..3).name_by_ref(|_, _| Some(refs)));
    for db in &replicas {
        let outs = db.apply_replicated_write(3, &[3], &entry).unwrap();
        assert_eq!((outs[0].appended, outs[0].rejected.len()), (1, 0));
        assert_eq!(db.bad_ref_samples(), 2);
        assert_eq!(db.stats().series, 3, "no series created for a bad ref");
        assert_eq!(db.stats().applied_seq, 3);
    }
    assert_eq!(state(&replicas[0]), state(&replicas[1]));
    let b = &state(&replicas[0])[1][0];
    assert_eq!(b.samples.len(), 1, "tenant b's series got nothing from tenant a's entry");
}
