//! Node-level heartbeats: with [`raft_timing`] openraft's per-shard heartbeat
//! timer is off, so leadership lives on [`ShardHost::spawn_heartbeats`]. Three
//! hosts over real gRPC, 4 shards × RF 3: with the ticker, every shard keeps
//! its leader and term for many election timeouts, and a node's heartbeats
//! to a peer go out together (fewer `AppendBatch` calls than heartbeats);
//! without it, followers time out and elect again (the control).
//!
//! Run: `cargo test -p aion-ingester --test raft_heartbeats -- --nocapture`

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use aion_ingester::grpc::{serve, ServerConfig};
use aion_ingester::raft::{MemShardData, NodeId, RaftLogDb, ShardStateMachine};
use aion_ingester::shards::{raft_timing, ShardHost};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const SHARDS: u64 = 4;
const HEARTBEAT: Duration = Duration::from_millis(50);

type Host = Arc<ShardHost<MemShardData>>;

/// Three hosts with `raft_timing(HEARTBEAT)`, every shard started by node 1;
/// `ticker`: whether each host runs its heartbeat ticker.
async fn cluster(ticker: bool) -> (Vec<Host>, Vec<tempfile::TempDir>) {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    let (mut hosts, mut dirs) = (Vec::new(), Vec::new());
    for (i, listener) in listeners.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let config = Arc::new(raft_timing(HEARTBEAT).validate().unwrap());
        let db = RaftLogDb::open(dir.path()).unwrap();
        let host: Host = Arc::new(ShardHost::new(i as u64 + 1, addrs[i].clone(), db, config));
        for shard in 0..SHARDS {
            host.open_shard(shard, ShardStateMachine::new(Arc::new(MemShardData::new()))).await.unwrap();
        }
        if ticker {
            host.spawn_heartbeats(HEARTBEAT);
        }
        let h = Arc::clone(&host);
        tokio::spawn(async move { serve(h, ServerConfig::default(), listener, std::future::pending()).await.unwrap() });
        hosts.push(host);
        dirs.push(dir);
    }
    let members: BTreeMap<NodeId, String> = (0..3).map(|i| (i as u64 + 1, addrs[i].clone())).collect();
    for shard in 0..SHARDS {
        hosts[0].initialize(shard, &members).await.unwrap();
    }
    (hosts, dirs)
}

/// (leader, term) of every shard as node 1 sees it, once all have a leader.
async fn leadership(host: &Host) -> Vec<(Option<NodeId>, u64)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen: Vec<_> = host.status().into_iter().map(|s| (s.leader, s.term)).collect();
        if seen.len() == SHARDS as usize && seen.iter().all(|(l, _)| l.is_some()) {
            return seen;
        }
        assert!(Instant::now() < deadline, "no leaders within 10 s: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits 30 heartbeats (≥ 3 of the longest election timeouts).
async fn many_election_timeouts() {
    tokio::time::sleep(HEARTBEAT * 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ticker_keeps_every_leader_and_batches_heartbeats_per_peer() {
    let (hosts, _dirs) = cluster(true).await;
    let before = leadership(&hosts[0]).await;
    let stats = Arc::clone(hosts[0].pool().stats());
    let (beats0, rpcs0) = (stats.append_heartbeats(), stats.append_rpcs());
    many_election_timeouts().await;
    let after = leadership(&hosts[0]).await;
    assert_eq!(before, after, "a leader or term changed although the ticker ran");
    let (beats, rpcs) = (stats.append_heartbeats() - beats0, stats.append_rpcs() - rpcs0);
    println!("node 1: {beats} heartbeats in {rpcs} append calls over {:?}", HEARTBEAT * 30);
    assert!(beats > 0, "node 1 leads shard 0 and must have sent heartbeats");
    assert!(rpcs < beats, "heartbeats fired together must share append calls: {beats} in {rpcs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ticker_followers_elect_again() {
    let (hosts, _dirs) = cluster(false).await;
    let before = leadership(&hosts[0]).await;
    many_election_timeouts().await;
    let after = leadership(&hosts[0]).await;
    let terms_moved = before.iter().zip(&after).filter(|(b, a)| a.1 > b.1).count();
    assert!(terms_moved > 0, "no heartbeats, yet no shard held an election: {before:?} → {after:?}");
}
