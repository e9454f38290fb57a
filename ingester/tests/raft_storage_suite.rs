//! The shard Raft log store against openraft's storage test suite, plus
//! Aion-specific properties: shards sharing one RocksDB stay isolated, the
//! log survives reopening, purge/truncate keep the log hole-free, and
//! concurrent appends of many shards share fsyncs.
//!
//! Run: `cargo test -p aion-ingester --test raft_storage_suite -- --nocapture`

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use aion_ingester::raft::{
    MemShardData, RaftLogDb, ShardLogStore, ShardStateMachine, ShardWrite, TypeConfig,
};
use aion_model::labels::Labels;
use aion_model::sample::Sample;
use aion_model::storage::{SeriesSamples, WriteBatch};
use aion_model::tenant::TenantId;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, StorageError, Vote};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

mod support_raft;

type Sm = ShardStateMachine<MemShardData>;

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn batch(tag: &str, n: usize) -> WriteBatch {
    WriteBatch {
        tenant: TenantId::new("t1").unwrap(),
        series: vec![SeriesSamples {
            labels: Labels::from_pairs([("__name__", "m"), ("tag", tag)]),
            samples: (0..n)
                .map(|i| Sample::new(1_000 * i as i64, i as f64))
                .collect(),
        }],
    }
}

fn entry(term: u64, index: u64, tag: &str) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(ShardWrite::from(batch(tag, 3))),
    }
}

fn entries(term: u64, range: std::ops::RangeInclusive<u64>, tag: &str) -> Vec<Entry<TypeConfig>> {
    range.map(|i| entry(term, i, tag)).collect()
}

fn indices(es: &[Entry<TypeConfig>]) -> Vec<u64> {
    es.iter().map(|e| e.log_id.index).collect()
}

/// Builds shard 7's store in a fresh DB whose neighbouring shards 6 and 8
/// already hold entries, a vote and a purge point: if any key range leaked
/// across shards the suite's exact log-state assertions would fail.
struct NoisyNeighboursBuilder;

impl StoreBuilder<TypeConfig, ShardLogStore, Sm, TempDir> for NoisyNeighboursBuilder {
    async fn build(&self) -> Result<(TempDir, ShardLogStore, Sm), StorageError<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let db = RaftLogDb::open(dir.path()).unwrap();
        for shard in [6, 8] {
            let mut s = db.shard(shard);
            s.blocking_append(entries(9, 1..=30, "noise")).await?;
            s.save_vote(&Vote::new_committed(9, 2)).await?;
            s.save_committed(Some(log_id(9, 25))).await?;
            s.purge(log_id(9, 3)).await?;
        }
        Ok((
            dir,
            db.shard(7),
            ShardStateMachine::new(Arc::new(MemShardData::new())),
        ))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(NoisyNeighboursBuilder).unwrap();
}

#[tokio::test]
async fn shards_in_one_db_do_not_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let db = RaftLogDb::open(dir.path()).unwrap();
    let (mut a, mut b) = (db.shard(1), db.shard(2));
    a.blocking_append(entries(1, 1..=10, "a")).await.unwrap();
    b.blocking_append(entries(2, 1..=4, "b")).await.unwrap();
    a.save_vote(&Vote::new(1, 1)).await.unwrap();
    b.save_vote(&Vote::new_committed(2, 3)).await.unwrap();
    a.purge(log_id(1, 5)).await.unwrap();
    b.truncate(log_id(2, 3)).await.unwrap();

    let sa = a.get_log_state().await.unwrap();
    assert_eq!(sa.last_purged_log_id, Some(log_id(1, 5)));
    assert_eq!(sa.last_log_id, Some(log_id(1, 10)));
    let sb = b.get_log_state().await.unwrap();
    assert_eq!(sb.last_purged_log_id, None);
    assert_eq!(sb.last_log_id, Some(log_id(2, 2)));
    assert_eq!(
        indices(&a.try_get_log_entries(..).await.unwrap()),
        (6..=10).collect::<Vec<_>>()
    );
    let eb = b.try_get_log_entries(..).await.unwrap();
    assert_eq!(indices(&eb), vec![1, 2]);
    assert!(eb
        .iter()
        .all(|e| matches!(&e.payload, EntryPayload::Normal(w) if w.to_batch() == batch("b", 3))));
    assert_eq!(a.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
    assert_eq!(
        b.read_vote().await.unwrap(),
        Some(Vote::new_committed(2, 3))
    );
    let mut c = db.shard(3);
    let sc = c.get_log_state().await.unwrap();
    assert_eq!((sc.last_purged_log_id, sc.last_log_id), (None, None));
    assert_eq!(c.read_vote().await.unwrap(), None);

    b.destroy().await.unwrap();
    assert!(b.try_get_log_entries(..).await.unwrap().is_empty());
    assert_eq!(b.read_vote().await.unwrap(), None);
    assert_eq!(
        a.try_get_log_entries(..).await.unwrap().len(),
        5,
        "destroying shard 2 left shard 1 alone"
    );
}

#[tokio::test]
async fn log_vote_and_purge_point_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = RaftLogDb::open(dir.path()).unwrap();
        let mut s = db.shard(42);
        s.blocking_append(entries(3, 1..=100, "x")).await.unwrap();
        s.save_vote(&Vote::new_committed(3, 1)).await.unwrap();
        s.save_committed(Some(log_id(3, 90))).await.unwrap();
        s.purge(log_id(3, 10)).await.unwrap();
    }
    let db = RaftLogDb::open(dir.path()).unwrap();
    let mut s = db.shard(42);
    let st = s.get_log_state().await.unwrap();
    assert_eq!(st.last_purged_log_id, Some(log_id(3, 10)));
    assert_eq!(st.last_log_id, Some(log_id(3, 100)));
    assert_eq!(
        s.read_vote().await.unwrap(),
        Some(Vote::new_committed(3, 1))
    );
    assert_eq!(s.read_committed().await.unwrap(), Some(log_id(3, 90)));
    let es = s.try_get_log_entries(11..=100).await.unwrap();
    assert_eq!(indices(&es), (11..=100).collect::<Vec<_>>());
    assert!(matches!(&es[0].payload, EntryPayload::Normal(w) if w.to_batch() == batch("x", 3)));
}

#[tokio::test]
async fn purge_and_truncate_keep_the_log_contiguous() {
    let dir = tempfile::tempdir().unwrap();
    let db = RaftLogDb::open(dir.path()).unwrap();
    let mut s = db.shard(5);
    s.blocking_append(entries(1, 1..=20, "p")).await.unwrap();

    s.truncate(log_id(1, 15)).await.unwrap();
    assert_eq!(
        s.get_log_state().await.unwrap().last_log_id,
        Some(log_id(1, 14))
    );
    assert!(s.try_get_log_entries(15..).await.unwrap().is_empty());

    s.purge(log_id(1, 5)).await.unwrap();
    assert_eq!(
        indices(&s.try_get_log_entries(0..100).await.unwrap()),
        (6..=14).collect::<Vec<_>>()
    );
    assert_eq!(
        indices(&s.limited_get_log_entries(6, 9).await.unwrap()),
        vec![6, 7, 8]
    );

    // A new leader overwrites the tail from 12 with term 2.
    s.truncate(log_id(1, 12)).await.unwrap();
    s.blocking_append(entries(2, 12..=13, "q")).await.unwrap();
    let es = s.try_get_log_entries(10..).await.unwrap();
    assert_eq!(
        es.iter().map(|e| e.log_id).collect::<Vec<_>>(),
        vec![log_id(1, 10), log_id(1, 11), log_id(2, 12), log_id(2, 13)]
    );

    // Truncating everything after the purge point leaves last_log_id == last_purged.
    s.truncate(log_id(1, 6)).await.unwrap();
    let st = s.get_log_state().await.unwrap();
    assert_eq!(
        (st.last_purged_log_id, st.last_log_id),
        (Some(log_id(1, 5)), Some(log_id(1, 5)))
    );

    // Purging past the last entry empties the log but keeps the purge point.
    s.blocking_append(entries(3, 6..=8, "r")).await.unwrap();
    s.purge(log_id(3, 8)).await.unwrap();
    let st = s.get_log_state().await.unwrap();
    assert_eq!(
        (st.last_purged_log_id, st.last_log_id),
        (Some(log_id(3, 8)), Some(log_id(3, 8)))
    );
    assert!(s.try_get_log_entries(..).await.unwrap().is_empty());
}

/// 16 shards each append 25 single-entry batches concurrently; every append
/// is a synced write, yet RocksDB groups them so there are fewer WAL syncs
/// than appends. Prints the measured numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_shard_appends_share_fsyncs() {
    const SHARDS: u64 = 16;
    const APPENDS: u64 = 25;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = rocksdb::Options::default();
    opts.enable_statistics();
    let db = RaftLogDb::open_with_options(dir.path(), opts.clone()).unwrap();
    let synced_before = opts.get_ticker_count(rocksdb::statistics::Ticker::WalFileSynced);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for shard in 0..SHARDS {
        let mut s = db.shard(shard);
        tasks.push(tokio::spawn(async move {
            for i in 1..=APPENDS {
                s.blocking_append([entry(1, i, "c")]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    let syncs = opts.get_ticker_count(rocksdb::statistics::Ticker::WalFileSynced) - synced_before;
    let appends = SHARDS * APPENDS;
    println!(
        "{appends} synced appends from {SHARDS} shards in {elapsed:?} ({:.0} appends/s), {syncs} WAL syncs ({:.1} appends per sync)",
        appends as f64 / elapsed.as_secs_f64(),
        appends as f64 / syncs.max(1) as f64
    );
    assert!(
        syncs < appends,
        "expected group commit: {syncs} WAL syncs for {appends} synced appends"
    );
    for shard in 0..SHARDS {
        let mut s = db.shard(shard);
        assert_eq!(
            s.get_log_state().await.unwrap().last_log_id,
            Some(log_id(1, APPENDS))
        );
    }
}

// ---------------------------------------------------------------------------
// Three replicas of one shard over an in-process network (direct calls).
// ---------------------------------------------------------------------------

mod cluster {
    use super::*;
    use aion_ingester::raft::ShardRaft;
    use aion_model::storage::{Queryable, SelectHints, Series};
    pub use crate::support_raft::{config, Router};
    use openraft::Config;
    use std::collections::BTreeMap;
    use std::path::Path;

    pub struct Node {
        pub raft: ShardRaft,
        pub data: Arc<MemShardData>,
    }

    pub const SHARD: u64 = 3;

    /// Starts node `id` on the log DB in `dir` (reopened: a restart) with an
    /// empty in-memory state machine, and registers it with the router.
    pub async fn start(id: u64, dir: &Path, router: &Router, config: &Arc<Config>) -> Node {
        // A just-shut-down instance may still be releasing the DB lock.
        let mut db = RaftLogDb::open(dir);
        for _ in 0..50 {
            if db.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            db = RaftLogDb::open(dir);
        }
        let log = db.unwrap().shard(SHARD);
        let data = Arc::new(MemShardData::new());
        let sm = ShardStateMachine::new(Arc::clone(&data));
        let raft = ShardRaft::new(id, Arc::clone(config), router.clone(), log, sm)
            .await
            .unwrap();
        router.set(id, Some(raft.clone()));
        Node { raft, data }
    }

    pub fn write(i: u64) -> ShardWrite {
        let series = ["a", "b"]
            .iter()
            .map(|s| SeriesSamples {
                labels: Labels::from_pairs([("__name__", "w"), ("s", *s)]),
                samples: vec![Sample::new(i as i64 * 1_000, i as f64)],
            })
            .collect();
        ShardWrite::from(WriteBatch {
            tenant: TenantId::new("t1").unwrap(),
            series,
        })
    }

    /// Writes batch `i` through whichever node is leader, retrying (for up
    /// to 10 s) while there is none; returns the leader that took it.
    pub async fn write_via_leader(nodes: &BTreeMap<u64, Node>, i: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let leader = nodes
                .values()
                .find_map(|n| n.raft.metrics().borrow().current_leader);
            if let Some(node) = leader.and_then(|l| nodes.get(&l)) {
                if let Ok(r) = node.raft.client_write(write(i)).await {
                    assert_eq!(r.data.appended, 2, "batch {i}: {:?}", r.data);
                    return leader.unwrap_or_default();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader accepted batch {i} within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn contents(n: &Node) -> Vec<Series> {
        n.data
            .store()
            .select(&TenantId::new("t1").unwrap(), &SelectHints::all(), &[])
            .unwrap()
    }

    /// Waits until every node applied `index` and holds `samples` samples per series, identically.
    pub async fn converged(nodes: &BTreeMap<u64, Node>, index: u64, samples: usize) {
        for n in nodes.values() {
            n.raft
                .wait(Some(Duration::from_secs(10)))
                .applied_index_at_least(Some(index), "catch up")
                .await
                .unwrap();
        }
        let first = contents(nodes.values().next().unwrap());
        assert_eq!(first.len(), 2);
        assert!(
            first.iter().all(|s| s.samples.len() == samples),
            "{first:?}"
        );
        for n in nodes.values() {
            assert_eq!(contents(n), first);
        }
    }
}

use cluster::*;

use support_raft::members;

/// Write through the leader, kill it, writes resume on a new leader; the
/// killed node restarts from its RocksDB log and all three converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_survive_leader_loss() {
    let dirs: Vec<TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (router, config) = (Router::default(), config(5_000));
    let mut nodes = std::collections::BTreeMap::new();
    for id in 1..=3u64 {
        nodes.insert(
            id,
            start(id, dirs[id as usize - 1].path(), &router, &config).await,
        );
    }
    nodes[&1].raft.initialize(members(1..=3)).await.unwrap();
    let mut leader = 0;
    let mut latencies = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        leader = write_via_leader(&nodes, i).await;
        latencies.push(t.elapsed());
    }
    latencies.sort();
    println!(
        "3 replicas, sequential writes: commit latency p50 {:?}, p99 {:?}, max {:?}",
        latencies[100], latencies[197], latencies[199]
    );

    let old = nodes.remove(&leader).unwrap();
    router.set(leader, None);
    old.raft.shutdown().await.unwrap();
    drop(old);
    let killed_at = Instant::now();
    let new_leader = write_via_leader(&nodes, 200).await;
    println!(
        "leader {leader} killed; node {new_leader} took writes after {:?}",
        killed_at.elapsed()
    );
    assert_ne!(new_leader, leader);
    for i in 201..220 {
        write_via_leader(&nodes, i).await;
    }

    let restarted = start(leader, dirs[leader as usize - 1].path(), &router, &config).await;
    nodes.insert(leader, restarted);
    let last = nodes[&new_leader]
        .raft
        .metrics()
        .borrow()
        .last_log_index
        .unwrap();
    converged(&nodes, last, 220).await;
    for n in nodes.values() {
        n.raft.shutdown().await.unwrap();
    }
}

/// With snapshots every 10 entries and the log purged behind them, a new
/// replica can only catch up by installing a snapshot: it gets one and ends
/// up with identical data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_replica_catches_up_by_snapshot() {
    let dirs: Vec<TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (router, config) = (Router::default(), config(10));
    let mut nodes = std::collections::BTreeMap::new();
    for id in 1..=3u64 {
        nodes.insert(
            id,
            start(id, dirs[id as usize - 1].path(), &router, &config).await,
        );
    }
    nodes[&1].raft.initialize(members(1..=3)).await.unwrap();
    let mut leader = 0;
    for i in 0..35 {
        leader = write_via_leader(&nodes, i).await;
    }
    let m = nodes[&leader]
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= 20),
            "snapshot + purge",
        )
        .await
        .unwrap();
    println!(
        "leader {leader}: snapshot at {:?}, log purged up to {:?}",
        m.snapshot, m.purged
    );

    nodes.insert(4, start(4, dirs[3].path(), &router, &config).await);
    nodes[&leader]
        .raft
        .add_learner(4, openraft::BasicNode::new("node-4"), true)
        .await
        .unwrap();
    let m4 = nodes[&4]
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.snapshot.is_some(), "node 4 installs a snapshot")
        .await
        .unwrap();
    assert!(
        m4.snapshot.is_some_and(|s| s.index >= 20),
        "node 4 caught up from a snapshot: {:?}",
        m4.snapshot
    );
    println!("node 4 installed snapshot {:?}", m4.snapshot);
    let last = nodes[&leader]
        .raft
        .metrics()
        .borrow()
        .last_log_index
        .unwrap();
    converged(&nodes, last, 35).await;
    for n in nodes.values() {
        n.raft.shutdown().await.unwrap();
    }
}
