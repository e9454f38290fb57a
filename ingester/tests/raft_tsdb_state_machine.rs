//! Shard replicas whose state machine is the real TSDB: each in-process
//! replica has a RocksDB Raft log (`<dir>/raft`) and a TSDB
//! (`<dir>/shards/<id>/tsdb`), connected by the in-memory network of
//! `support_raft`.
//!
//! Run: `cargo test -p aion-ingester --test raft_tsdb_state_machine -- --nocapture`

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support_raft;

use aion_ingester::raft::{
    shard_tsdb_dir, RaftLogDb, ShardData, ShardRaft, ShardWrite, TsdbShardData, TsdbStateMachine,
};
use aion_ingester::TsdbConfig;
use aion_model::labels::Labels;
use aion_model::sample::Sample;
use aion_model::storage::{Queryable, SelectHints, Series, SeriesSamples, WriteBatch};
use aion_model::tenant::TenantId;
use openraft::Config;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support_raft::{config, members, Router};
use tempfile::TempDir;

const SHARD: u64 = 11;

struct Node {
    raft: ShardRaft,
    data: Arc<TsdbShardData>,
}

fn tsdb_config() -> TsdbConfig {
    TsdbConfig {
        checkpoint_interval: Duration::ZERO,
        max_samples_per_chunk: 16,
        ..TsdbConfig::default()
    }
}

/// Retries `open` while a just-shut-down instance still holds the RocksDB lock.
async fn retry<T, E: std::fmt::Debug>(mut open: impl FnMut() -> Result<T, E>) -> T {
    let mut r = open();
    for _ in 0..50 {
        if r.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        r = open();
    }
    r.unwrap()
}

/// Starts (or restarts, from its dirs) node `id` and registers it.
async fn start(id: u64, dir: &Path, router: &Router, config: &Arc<Config>) -> Node {
    let log = retry(|| RaftLogDb::open(&dir.join("raft")))
        .await
        .shard(SHARD);
    let tsdb_dir = shard_tsdb_dir(dir, SHARD);
    let data = Arc::new(retry(|| TsdbShardData::open(&tsdb_dir, tsdb_config())).await);
    let sm = TsdbStateMachine::open(Arc::clone(&data)).unwrap();
    let raft = ShardRaft::new(id, Arc::clone(config), router.clone(), log, sm)
        .await
        .unwrap();
    router.set(id, Some(raft.clone()));
    Node { raft, data }
}

/// Shuts node `id` down and drops it (closing its RocksDBs).
async fn kill(nodes: &mut BTreeMap<u64, Node>, router: &Router, id: u64) {
    let n = nodes.remove(&id).unwrap();
    router.set(id, None);
    n.raft.shutdown().await.unwrap();
}

fn tenant() -> TenantId {
    TenantId::new("t1").unwrap()
}

/// Batch `i`: one sample at `i` s for each of 3 series.
fn write(i: u64) -> ShardWrite {
    let series = ["a", "b", "c"]
        .iter()
        .map(|s| SeriesSamples {
            labels: Labels::from_pairs([("__name__", "w"), ("s", *s)]),
            samples: vec![Sample::new(i as i64 * 1_000, i as f64 * 0.5)],
        })
        .collect();
    ShardWrite::from(WriteBatch {
        tenant: tenant(),
        series,
    })
}

fn leader_of(nodes: &BTreeMap<u64, Node>) -> Option<u64> {
    nodes
        .values()
        .find_map(|n| n.raft.metrics().borrow().current_leader)
        .filter(|l| nodes.contains_key(l))
}

/// Writes batch `i` through the leader (retrying up to 10 s); returns the leader.
async fn write_via_leader(nodes: &BTreeMap<u64, Node>, i: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last_err = None;
    loop {
        if let Some(l) = leader_of(nodes) {
            match nodes[&l].raft.client_write(write(i)).await {
                Ok(r) => {
                    assert_eq!(r.data.appended, 3, "batch {i}: {:?}", r.data);
                    return l;
                }
                Err(e) => last_err = Some(e.to_string()),
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader took batch {i} in 10 s; last error: {last_err:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn contents(n: &Node) -> Vec<Series> {
    n.data
        .tsdb()
        .select(&tenant(), &SelectHints::all(), &[])
        .unwrap()
}

/// Waits for every node to apply the leader's last index; asserts every node
/// holds exactly batches `0..batches` in each of the 3 series, identically.
async fn converged(nodes: &BTreeMap<u64, Node>, batches: u64) {
    // The highest log any node holds (a just-restarted node may still
    // believe in its old leadership, so "the leader's log" could be stale).
    let last = nodes
        .values()
        .filter_map(|n| n.raft.metrics().borrow().last_log_index)
        .max();
    for (id, n) in nodes {
        n.raft
            .wait(Some(Duration::from_secs(15)))
            .applied_index_at_least(last, &format!("node {id} catches up"))
            .await
            .unwrap();
    }
    let want: Vec<Sample> = (0..batches)
        .map(|i| Sample::new(i as i64 * 1_000, i as f64 * 0.5))
        .collect();
    for (id, n) in nodes {
        let got = contents(n);
        assert_eq!(got.len(), 3, "node {id}");
        for s in &got {
            let missing: Vec<i64> = want
                .iter()
                .filter(|w| !s.samples.contains(w))
                .map(|w| w.t)
                .collect();
            assert!(
                s.samples == want,
                "node {id}, series {}: {} samples, want {}; missing t={missing:?}",
                s.labels,
                s.samples.len(),
                want.len()
            );
        }
    }
}

async fn three_nodes(dirs: &[TempDir], router: &Router, cfg: &Arc<Config>) -> BTreeMap<u64, Node> {
    let mut nodes = BTreeMap::new();
    for id in 1..=3u64 {
        let n = start(id, dirs[id as usize - 1].path(), router, cfg).await;
        nodes.insert(id, n);
    }
    nodes[&1].raft.initialize(members(1..=3)).await.unwrap();
    nodes
}

/// Writes through the leader are identical on all replicas; the leader is
/// killed, writes continue, and the old leader restarts from its dirs and
/// ends up with every acknowledged sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_agree_and_a_restarted_leader_catches_up() {
    let dirs: Vec<TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (router, cfg) = (Router::default(), config(100_000));
    let mut nodes = three_nodes(&dirs, &router, &cfg).await;
    let mut lat = Vec::new();
    let mut leader = 0;
    for i in 0..200 {
        let t = Instant::now();
        leader = write_via_leader(&nodes, i).await;
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "TSDB state machine, 3 replicas, sequential writes of 3 samples: commit latency p50 {:?}, p99 {:?}, max {:?}",
        lat[100], lat[197], lat[199]
    );
    converged(&nodes, 200).await;
    // A checkpoint on the leader, so its restart resumes from the middle.
    nodes[&leader].data.tsdb().flush().unwrap();

    kill(&mut nodes, &router, leader).await;
    let new_leader = write_via_leader(&nodes, 200).await;
    assert_ne!(new_leader, leader);
    for i in 201..260 {
        write_via_leader(&nodes, i).await;
    }
    let dir = dirs[leader as usize - 1].path();
    nodes.insert(leader, start(leader, dir, &router, &cfg).await);
    converged(&nodes, 260).await;
    let replayed = nodes[&leader].data.tsdb().replicated_applies();
    assert!(
        (60..200).contains(&replayed),
        "restarted node applied {replayed} batches: the 60 it missed, not the 200 before its checkpoint"
    );
    for n in nodes.values() {
        n.raft.shutdown().await.unwrap();
    }
}

/// A replica whose dirs are wiped rejoins after the leader purged its log:
/// it can only catch up by installing a TSDB snapshot, and then answers
/// `select` identically.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wiped_replica_catches_up_by_snapshot() {
    let dirs: Vec<TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (router, cfg) = (Router::default(), config(10));
    let mut nodes = three_nodes(&dirs, &router, &cfg).await;
    let mut leader = 0;
    for i in 0..40 {
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
        "leader {leader}: snapshot {:?}, purged {:?}",
        m.snapshot, m.purged
    );
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    kill(&mut nodes, &router, victim).await;
    let vdir = dirs[victim as usize - 1].path();
    std::fs::remove_dir_all(vdir.join("raft")).unwrap();
    std::fs::remove_dir_all(vdir.join("shards")).unwrap();
    // A voter that lost its log must leave the group and rejoin (openraft
    // refuses a voter whose log went backwards).
    let rest: Vec<u64> = nodes.keys().copied().collect();
    nodes[&leader]
        .raft
        .change_membership(rest.clone(), false)
        .await
        .unwrap();
    for i in 40..45 {
        write_via_leader(&nodes, i).await;
    }
    nodes.insert(victim, start(victim, vdir, &router, &cfg).await);
    nodes[&leader]
        .raft
        .add_learner(victim, openraft::BasicNode::new("rejoined"), true)
        .await
        .unwrap();
    nodes[&leader]
        .raft
        .change_membership(members(1..=3).into_keys().collect::<Vec<_>>(), false)
        .await
        .unwrap();
    let mv = nodes[&victim]
        .raft
        .wait(Some(Duration::from_secs(15)))
        .metrics(|m| m.snapshot.is_some(), "wiped node installs a snapshot")
        .await
        .unwrap();
    assert!(
        mv.snapshot.is_some_and(|s| s.index >= 20),
        "{:?}",
        mv.snapshot
    );
    for i in 45..50 {
        write_via_leader(&nodes, i).await;
    }
    converged(&nodes, 50).await;
    assert_eq!(contents(&nodes[&victim]), contents(&nodes[&leader]));
    let dump = nodes[&victim].data.dump().unwrap();
    assert_eq!(dump, nodes[&leader].data.dump().unwrap());
    assert_eq!(
        (dump.len(), dump[0].series.len()),
        (1, 3),
        "one tenant, 3 series"
    );
    assert!(
        nodes[&victim].data.tsdb().replicated_applies() < 40,
        "wiped node got most of its data from the snapshot"
    );
    for n in nodes.values() {
        n.raft.shutdown().await.unwrap();
    }
}

/// Restart replay is bounded by the TSDB checkpoint: a single-node shard
/// writes N entries, checkpoints, writes M more; after a restart openraft
/// re-applies exactly the M (counted by the TSDB), and no sample is doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_replays_only_the_log_after_the_checkpoint() {
    const BEFORE: u64 = 300;
    const AFTER: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let (router, cfg) = (Router::default(), config(100_000));
    let mut nodes = BTreeMap::new();
    nodes.insert(1, start(1, dir.path(), &router, &cfg).await);
    nodes[&1].raft.initialize(members([1])).await.unwrap();
    for i in 0..BEFORE {
        write_via_leader(&nodes, i).await;
    }
    nodes[&1].data.tsdb().flush().unwrap();
    for i in BEFORE..BEFORE + AFTER {
        write_via_leader(&nodes, i).await;
    }
    let last = nodes[&1].raft.metrics().borrow().last_applied;
    kill(&mut nodes, &router, 1).await;

    let t = Instant::now();
    nodes.insert(1, start(1, dir.path(), &router, &cfg).await);
    nodes[&1]
        .raft
        .wait(Some(Duration::from_secs(15)))
        .applied_index_at_least(last.map(|l| l.index), "replay")
        .await
        .unwrap();
    let replay = t.elapsed();
    let replayed = nodes[&1].data.tsdb().replicated_applies();
    println!("restart: {replayed} log entries re-applied after the checkpoint in {replay:?} (open + replay)");
    assert_eq!(replayed, AFTER, "only the entries after the checkpoint");
    converged(&nodes, BEFORE + AFTER).await;
    write_via_leader(&nodes, BEFORE + AFTER).await;
    converged(&nodes, BEFORE + AFTER + 1).await;
    for n in nodes.values() {
        n.raft.shutdown().await.unwrap();
    }
}
