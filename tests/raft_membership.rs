//! Membership tests of the Raft-replicated ingester as separate processes
//! (3 `aion --target=ingester` processes on loopback, 16 shards, RF 3):
//!
//! 1. A 4th ingester started with `--ingester.join` hosts nothing; under
//!    continuous writes to every shard, one replica of two shards (one of
//!    them the shard's leader) is moved to it through the HTTP admin API
//!    (sent to different nodes). No write fails, every acknowledged sample
//!    is readable, node 4 is a voter, the old nodes no longer host the
//!    shards, and all of that survives a restart of all four nodes.
//! 2. A replica's data dir is wiped; the node restarts with `--ingester.join`
//!    (so it never votes with a forgotten vote) and each of its shards is
//!    re-added through the admin API (`move?from=N&to=N`: removed from the
//!    voters, added back as learner, promoted). The leaders' logs were
//!    purged, so it catches up by snapshot (counted in its metrics) and its
//!    follower reads equal the leaders' linearizable reads.
//!
//! Run: `cargo test -p aion --test raft_membership -- --nocapture`

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::cluster::{batch, Cluster, ClusterClient};

const SHARDS: u64 = 16;

/// The scenarios start 3–4 processes each and time writes: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Acknowledged batch numbers per shard, filled by the writers.
type Acks = Arc<Mutex<BTreeMap<u64, Vec<u64>>>>;

/// One writer per shard pushing batches `first..` 10 ms apart until `stop`;
/// a batch is retried (per the client convention) until acknowledged or
/// 8 s passed, which counts as a failure.
fn start_writers(client: &ClusterClient, acks: &Acks, stop: &Arc<AtomicBool>, first: u64) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    (0..SHARDS)
        .map(|shard| {
            let (client, acks, stop) = (client.clone(), acks.clone(), stop.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut i = first;
                while !stop.load(Ordering::SeqCst) {
                    match client.push(shard, &batch(shard, i), Instant::now() + Duration::from_secs(8)).await {
                        Ok(_) => acks.lock().unwrap().entry(shard).or_default().push(i),
                        Err(e) => failures.push(format!("shard {shard} batch {i}: {e}")),
                    }
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                failures
            })
        })
        .collect()
}

async fn stop_writers(stop: &AtomicBool, writers: Vec<tokio::task::JoinHandle<Vec<String>>>) -> Vec<String> {
    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for w in writers {
        failures.extend(w.await.unwrap());
    }
    failures
}

/// Every acknowledged batch is returned by Select on each shard's leader.
async fn assert_acked_present(client: &ClusterClient, acks: &Acks) {
    let acked = acks.lock().unwrap().clone();
    let mut total = 0;
    for (shard, want) in &acked {
        let series = client.select(*shard, Instant::now() + Duration::from_secs(10)).await.unwrap();
        assert_eq!(series.len(), 1, "shard {shard}: {series:?}");
        let have: BTreeSet<i64> = series[0].samples.iter().map(|s| s.t).collect();
        let missing: Vec<u64> = want.iter().copied().filter(|i| !have.contains(&(*i as i64 * 1_000))).collect();
        assert!(missing.is_empty(), "shard {shard}: acknowledged batches missing: {missing:?}");
        total += want.len();
    }
    println!("all {total} acknowledged samples present on the shards' leaders");
}

/// (voters, learners) of `shard` as `node` reports it; `None` if not hosted.
fn membership_on(cluster: &Cluster, node: u64, shard: u64) -> Option<(Vec<u64>, Vec<u64>)> {
    let v = cluster.nodes[&node].admin_shards()?;
    let row = v["shards"].as_array()?.iter().find(|s| s["shard"].as_u64() == Some(shard))?.clone();
    let ids = |k: &str| row[k].as_array().into_iter().flatten().filter_map(|x| x.as_u64()).collect();
    Some((ids("voters"), ids("learners")))
}

fn post(cluster: &Cluster, via: u64, path: &str) -> (u16, String) {
    let t = Instant::now();
    let r = cluster.nodes[&via].admin_post(path);
    println!("POST {path} via node {via}: {} in {:?}: {}", r.0, t.elapsed(), r.1);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_move_to_a_joining_node_under_write_load() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(3, SHARDS, 3, &["--ingester.state-machine=tsdb"]));
    let leaders = tokio::task::block_in_place(|| cluster.leaders(Duration::from_secs(15)));
    let joiner = tokio::task::block_in_place(|| cluster.add_joining_node());
    assert_eq!(joiner, 4);
    let v = cluster.nodes[&4].admin_shards().unwrap();
    assert_eq!(v["shards"].as_array().unwrap().len(), 0, "a joining node hosts nothing: {v}");

    let client = ClusterClient::new(&cluster.addrs());
    let acks: Acks = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(&client, &acks, &stop, 0);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Shard 0: move its leader's replica, request sent to node 4 (which
    // hosts nothing and knows node 4's address from its config). Shard 1:
    // move a follower's replica, sent to node 1 with an explicit address.
    let from0 = leaders[&0];
    let from1 = (1..=3).find(|n| *n != leaders[&1]).unwrap();
    let addr4 = cluster.nodes[&4].grpc.clone();
    let moves = [(0u64, from0, 4u64), (1, from1, 1)];
    for (shard, from, via) in moves {
        let path = format!("/admin/shards/{shard}/move?from={from}&to=4&to_addr={addr4}");
        let path = if via == 4 { format!("/admin/shards/{shard}/move?from={from}&to=4") } else { path };
        let (code, body) = tokio::task::block_in_place(|| post(&cluster, via, &path));
        assert_eq!(code, 200, "{body}");
    }
    // Clear errors.
    let (code, _) = tokio::task::block_in_place(|| post(&cluster, 2, &format!("/admin/shards/1/move?from={}&to=4&to_addr={addr4}", leaders[&1])));
    assert_eq!(code, 409, "node 4 already a voter of shard 1");
    let (code, _) = tokio::task::block_in_place(|| post(&cluster, 2, "/admin/shards/99/move?from=1&to=4&to_addr=127.0.0.1:1"));
    assert_eq!(code, 404, "unknown shard");
    let (code, _) = tokio::task::block_in_place(|| post(&cluster, 2, "/admin/shards/2/move?from=1&to=9"));
    assert_eq!(code, 404, "unknown node without to_addr");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let failures = stop_writers(&stop, writers).await;
    let n: usize = acks.lock().unwrap().values().map(Vec::len).sum();
    println!("{n} batches acknowledged under load; failures: {failures:?}");
    assert!(failures.is_empty(), "writes failed during the moves: {failures:?}");
    assert_acked_present(&client, &acks).await;

    let check_moved = |cluster: &Cluster| {
        for (shard, from, _) in moves {
            let (voters, learners) = membership_on(cluster, 4, shard).expect("node 4 hosts the moved shard");
            assert!(voters.contains(&4) && !voters.contains(&from) && voters.len() == 3, "shard {shard}: voters {voters:?}");
            assert!(learners.is_empty(), "shard {shard}: learners {learners:?}");
            assert!(membership_on(cluster, from, shard).is_none(), "node {from} still hosts shard {shard}");
        }
    };
    check_moved(&cluster);
    let m = |n: u64, name: &str| cluster.nodes[&n].metric_sum(name, &[0]);
    let all: Vec<u64> = (0..SHARDS).collect();
    let commits: f64 = (1..=4).map(|n| cluster.nodes[&n].metric_sum("aion_raft_commit_latency_seconds_count", &all)).sum();
    assert!(commits > 100.0, "commit latency histograms observed only {commits} writes");
    assert!(m(4, "aion_raft_leader_changes_total") >= 2.0, "node 4 saw shard 0 led by the removed node, then by another");
    let body = cluster.nodes[&4].metrics();
    for family in ["aion_raft_apply_lag_entries{", "aion_raft_log_entries{", "aion_raft_commit_index{", "aion_raft_snapshots_built_total{"] {
        assert!(body.contains(family), "{family} missing from /metrics");
    }

    let t = Instant::now();
    tokio::task::block_in_place(|| {
        for n in cluster.nodes.values_mut() {
            assert_eq!(n.stop(), Some(0));
        }
        for n in cluster.nodes.values_mut() {
            n.restart();
        }
        cluster.leaders(Duration::from_secs(15));
    });
    println!("all 4 nodes restarted, leaders elected in {:?}", t.elapsed());
    check_moved(&cluster);
    assert_acked_present(&client, &acks).await;
    // The moved shards still take writes after the restart.
    for (shard, _, _) in moves {
        client.push(shard, &batch(shard, 1_000_000), Instant::now() + Duration::from_secs(8)).await.unwrap();
    }
    println!("total wall time {:?}", started.elapsed());
}

/// Writes batches `range` to every shard (one task per shard).
async fn write_batches(client: &ClusterClient, acks: &Acks, range: std::ops::Range<u64>) {
    let tasks: Vec<_> = (0..SHARDS)
        .map(|shard| {
            let (client, acks, range) = (client.clone(), acks.clone(), range.clone());
            tokio::spawn(async move {
                for i in range {
                    client.push(shard, &batch(shard, i), Instant::now() + Duration::from_secs(8)).await.unwrap();
                    acks.lock().unwrap().entry(shard).or_default().push(i);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_replica_catches_up_by_snapshot() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let flags = ["--ingester.state-machine=tsdb", "--ingester.snapshot-after-entries=20"];
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(3, SHARDS, 3, &flags));
    tokio::task::block_in_place(|| cluster.leaders(Duration::from_secs(15)));
    let client = ClusterClient::new(&cluster.addrs());
    let acks: Acks = Arc::default();
    write_batches(&client, &acks, 0..60).await;

    let victim = 3;
    tokio::task::block_in_place(|| {
        let p = cluster.nodes.get_mut(&victim).unwrap();
        assert_eq!(p.stop(), Some(0));
        p.wipe_data_dir();
        p.add_arg("--ingester.join");
        p.restart();
    });
    write_batches(&client, &acks, 60..80).await;
    let purged: Vec<u64> = cluster.nodes[&1].admin_shards().unwrap()["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["purged"].as_u64().unwrap_or(0) > 0)
        .map(|s| s["shard"].as_u64().unwrap())
        .collect();
    assert_eq!(purged.len() as u64, SHARDS, "every shard's log on node 1 was purged after a snapshot: {purged:?}");

    let readd: Vec<u64> = (0..SHARDS).collect();
    for &shard in &readd {
        let via = 1 + shard % 2; // alternate the node the request is sent to
        let (code, body) =
            tokio::task::block_in_place(|| post(&cluster, via, &format!("/admin/shards/{shard}/move?from={victim}&to={victim}")));
        assert_eq!(code, 200, "{body}");
    }
    for &shard in &readd {
        let (voters, _) = membership_on(&cluster, victim, shard).expect("re-added replica hosted");
        assert_eq!(voters, vec![1, 2, 3], "shard {shard}");
        let installed = cluster.nodes[&victim].metric_sum("aion_raft_snapshots_installed_total", &[shard]);
        assert!(installed >= 1.0, "shard {shard}: caught up without a snapshot ({installed})");
    }

    let leaders = tokio::task::block_in_place(|| cluster.leaders(Duration::from_secs(15)));
    for shard in [0u64, 5, 10, 15] {
        let want = client.select(shard, Instant::now() + Duration::from_secs(10)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let have = client.select_on(victim, shard, true).await.unwrap();
            if have == want {
                break;
            }
            assert!(Instant::now() < deadline, "shard {shard}: node {victim} (leader {}) serves {have:?}, leader {want:?}", leaders[&shard]);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(want[0].samples.len(), 80, "shard {shard}");
    }
    assert_acked_present(&client, &acks).await;
    println!("total wall time {:?}", started.elapsed());
}
