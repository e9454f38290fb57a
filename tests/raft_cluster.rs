//! Fault tests of the Raft-replicated ingester as separate processes: three
//! `aion --target=ingester` processes on loopback, 16 shards, RF 3, driven
//! through the generated gRPC client (`tests/support/cluster.rs`).
//!
//! 1. Continuous writes to every shard while the process leading the most
//!    shards is SIGKILLed: every shard takes writes again within 5 s; after
//!    the process restarts, every acknowledged sample is on each shard's
//!    leader and the restarted node catches up.
//! 2. Minority failure: with one node stopped, writes and reads succeed;
//!    with two stopped, a Push fails with a retryable `UNAVAILABLE` within a
//!    bounded time.
//! 3. All three processes restart from their data dirs: every sample
//!    acknowledged in phases 1 and 2 is still there.
//!
//! Run: `cargo test -p aion --test raft_cluster -- --nocapture`

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::cluster::{batch, Cluster, ClusterClient};

const SHARDS: u64 = 16;

/// Acknowledged batch numbers (and when) per shard, filled by the writers.
type Acks = Arc<Mutex<BTreeMap<u64, Vec<(u64, Instant)>>>>;

/// One writer per shard, pushing batches 0, 1, 2, … (10 ms apart) until
/// `stop`; a batch that fails is retried (same number) until acknowledged.
fn start_writers(
    client: &ClusterClient,
    acks: &Acks,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    (0..SHARDS)
        .map(|shard| {
            let (client, acks, stop) = (client.clone(), acks.clone(), stop.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let deadline = Instant::now() + Duration::from_secs(8);
                    match client.push(shard, &batch(shard, i), deadline).await {
                        Ok(_) => {
                            acks.lock().unwrap().entry(shard).or_default().push((i, Instant::now()));
                            i += 1;
                        }
                        Err(e) => failures.push(format!("shard {shard} batch {i}: {e}")),
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                failures
            })
        })
        .collect()
}

/// Waits until every shard has an acknowledgement after `since` (within
/// `limit`); returns the slowest shard's gap.
async fn wait_all_resumed(acks: &Acks, since: Instant, limit: Duration) -> Duration {
    let deadline = Instant::now() + limit;
    loop {
        let firsts: BTreeMap<u64, Duration> = acks
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(s, v)| v.iter().find(|(_, t)| *t > since).map(|(_, t)| (*s, *t - since)))
            .collect();
        if firsts.len() as u64 == SHARDS {
            return firsts.values().copied().max().unwrap();
        }
        assert!(Instant::now() < deadline, "only shards {:?} took writes within {limit:?} after the kill", firsts.keys());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every acknowledged batch of every shard is returned by Select on the shard's leader.
async fn assert_no_acked_sample_lost(client: &ClusterClient, acks: &Acks) {
    let acked = acks.lock().unwrap().clone();
    let mut total = 0;
    for shard in 0..SHARDS {
        let series = client.select(shard, Instant::now() + Duration::from_secs(10)).await.unwrap();
        assert_eq!(series.len(), 1, "shard {shard}: {series:?}");
        let have: BTreeSet<i64> = series[0].samples.iter().map(|s| s.t).collect();
        let want = &acked[&shard];
        let missing: Vec<u64> = want.iter().map(|(i, _)| *i).filter(|i| !have.contains(&(*i as i64 * 1_000))).collect();
        assert!(missing.is_empty(), "shard {shard}: acknowledged batches missing: {missing:?}");
        total += want.len();
    }
    println!("all {total} acknowledged samples present on the shards' leaders");
}

/// Waits until `node` has applied, for every shard, at least what the
/// shard's leader had applied when the wait began.
fn wait_caught_up(cluster: &Cluster, node: u64, within: Duration) {
    let leaders = cluster.leaders(within);
    let applied = |n: u64| -> BTreeMap<u64, u64> {
        let v = cluster.nodes[&n].admin_shards().unwrap_or_default();
        v["shards"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| (s["shard"].as_u64().unwrap(), s["last_applied"].as_u64().unwrap_or(0)))
            .collect()
    };
    let target: BTreeMap<u64, u64> = leaders.iter().map(|(s, l)| (*s, applied(*l)[s])).collect();
    let deadline = Instant::now() + within;
    loop {
        let mine = applied(node);
        let behind: Vec<u64> = target.iter().filter(|(s, t)| mine.get(s).copied().unwrap_or(0) < **t).map(|(s, _)| *s).collect();
        if behind.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "node {node} still behind on shards {behind:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Phase 1: SIGKILL the node leading the most shards under write load.
async fn kill_leader_under_load(cluster: &mut Cluster, client: &ClusterClient, acks: &Acks) {
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(client, acks, &stop);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let led = tokio::task::block_in_place(|| cluster.leaders(Duration::from_secs(10)));
    let victim = (1..=3u64).max_by_key(|n| led.values().filter(|l| *l == n).count()).unwrap();
    let victim_shards = led.values().filter(|l| **l == victim).count();
    cluster.nodes.get_mut(&victim).unwrap().kill9();
    let killed_at = Instant::now();
    let gap = wait_all_resumed(acks, killed_at, Duration::from_secs(10)).await;
    println!("SIGKILLed node {victim} (leader of {victim_shards} shards); every shard took writes again after {gap:?}");
    assert!(gap < Duration::from_secs(5), "writes resumed only after {gap:?}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    tokio::task::block_in_place(|| cluster.nodes.get_mut(&victim).unwrap().restart());
    println!("node {victim} restarted and ready in {:?}", t.elapsed());
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for w in writers {
        failures.extend(w.await.unwrap());
    }
    println!("writer pushes that failed after retries (never counted as acknowledged): {failures:?}");
    assert_no_acked_sample_lost(client, acks).await;
    let t = Instant::now();
    tokio::task::block_in_place(|| wait_caught_up(cluster, victim, Duration::from_secs(15)));
    println!("restarted node {victim} caught up on all shards in {:?}", t.elapsed());
}

/// Pushes batch `i` to every shard and reads it back from each leader.
async fn write_and_read_all(client: &ClusterClient, i: u64) {
    let tasks: Vec<_> = (0..SHARDS)
        .map(|shard| {
            let client = client.clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(8);
                client.push(shard, &batch(shard, i), deadline).await.unwrap();
                let series = client.select(shard, deadline).await.unwrap();
                assert!(series[0].samples.iter().any(|s| s.t == i as i64 * 1_000), "shard {shard}: batch {i} not read back");
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Phase 2: one node down → fine; two down → retryable error, bounded time.
async fn minority_and_no_quorum(cluster: &mut Cluster, client: &ClusterClient) {
    let first = 1;
    assert_eq!(tokio::task::block_in_place(|| cluster.nodes.get_mut(&first).unwrap().stop()), Some(0), "graceful SIGTERM exit code");
    let t = Instant::now();
    write_and_read_all(client, 1_000_000).await;
    println!("node {first} stopped: writes and reads on all {SHARDS} shards succeeded in {:?}", t.elapsed());

    assert_eq!(tokio::task::block_in_place(|| cluster.nodes.get_mut(&2).unwrap().stop()), Some(0));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let last = 3;
    let tasks: Vec<_> = (0..SHARDS)
        .map(|shard| {
            let client = client.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                loop {
                    match client.push_once(last, shard, &batch(shard, 2_000_000)).await {
                        Err(s) => return (s, t.elapsed()),
                        Ok(aion_proto::ingester::push_response::Outcome::NotLeader(nl)) => {
                            assert!(t.elapsed() < Duration::from_secs(5), "shard {shard}: still redirected to {nl:?}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Ok(ok) => panic!("shard {shard}: a write committed with one of three nodes: {ok:?}"),
                    }
                }
            })
        })
        .collect();
    for (shard, t) in tasks.into_iter().enumerate() {
        let (err, took) = t.await.unwrap();
        assert_eq!(err.code(), tonic::Code::Unavailable, "shard {shard}: {err}");
        assert!(err.message().contains("retry"), "shard {shard}: {err}");
        assert!(took < Duration::from_secs(7), "shard {shard}: failing took {took:?}");
        if shard == 0 {
            println!("2 of 3 down, shard 0: {:?} after {took:?}: {}", err.code(), err.message());
        }
    }
    let t = Instant::now();
    let r = client.push(0, &batch(0, 2_000_001), Instant::now() + Duration::from_secs(2)).await;
    assert!(r.is_err(), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(8), "client gave up only after {:?}", t.elapsed());
    println!("client push with a 2 s deadline failed after {:?}: {}", t.elapsed(), r.unwrap_err());
    assert_eq!(tokio::task::block_in_place(|| cluster.nodes.get_mut(&last).unwrap().stop()), Some(0));
}

/// Phase 3: restart every node; all acknowledged samples are still there.
async fn restart_all(cluster: &mut Cluster, client: &ClusterClient, acks: &Acks) {
    let t = Instant::now();
    tokio::task::block_in_place(|| {
        for n in cluster.nodes.values_mut() {
            n.restart();
        }
        cluster.leaders(Duration::from_secs(15));
    });
    println!("all 3 nodes restarted, leaders elected in {:?}", t.elapsed());
    assert_no_acked_sample_lost(client, acks).await;
    for shard in 0..SHARDS {
        let series = client.select(shard, Instant::now() + Duration::from_secs(5)).await.unwrap();
        assert!(series[0].samples.iter().any(|s| s.t == 1_000_000_000), "shard {shard}: phase-2 write lost");
    }
    let m = tokio::task::block_in_place(|| cluster.nodes[&1].metrics());
    assert!(m.contains("aion_raft_term{shard=\"15\"}"), "raft metrics missing:\n{m}");
}

/// The three phases on a fresh cluster whose shards use `state_machine`.
async fn scenario(state_machine: &str) {
    let started = Instant::now();
    let flag = format!("--ingester.state-machine={state_machine}");
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(3, SHARDS, 3, &[&flag]));
    let led = tokio::task::block_in_place(|| cluster.leaders(Duration::from_secs(15)));
    println!("[{state_machine}] cluster up with leaders after {:?}: {led:?}", started.elapsed());
    let client = ClusterClient::new(&cluster.addrs());
    let acks: Acks = Arc::default();
    kill_leader_under_load(&mut cluster, &client, &acks).await;
    minority_and_no_quorum(&mut cluster, &client).await;
    restart_all(&mut cluster, &client, &acks).await;
    println!("[{state_machine}] total wall time {:?}", started.elapsed());
}

/// The scenarios measure fail-over times: run them one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tsdb_shards_survive_leader_kill_minority_loss_and_full_restart() {
    let _serial = SERIAL.lock().await;
    scenario("tsdb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_shards_survive_leader_kill_minority_loss_and_full_restart() {
    let _serial = SERIAL.lock().await;
    scenario("memory").await;
}
