//! Replicated write throughput of the Raft-replicated shards, end to end
//! over real gRPC on loopback: three [`ShardHost`]s in this process (each
//! with its own RocksDB Raft log, synced writes, in-memory state machines),
//! 16 shards, K concurrent pushers each sending batches of 500 series × 1
//! sample to a shard's leader through the generated `Ingester` client.
//! Runs RF 1 (each shard on one node) then RF 3 (every shard on all three),
//! for a fixed time each (≤ 60 s total), and prints samples/s and the
//! client-observed Push latency (commit on a quorum + apply + one RPC) p50/p99.
//!
//! Run: `cargo bench -p aion-ingester --bench raft_write --profile dev`
//! (the dev profile builds this crate and its deps at opt-level 3 and reuses
//! the already built RocksDB; plain `cargo bench` works too but first
//! builds RocksDB in release).
//! (env `RAFT_BENCH_SECS` = seconds per run, default 8; `RAFT_BENCH_PUSHERS`, default 32)

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: failing loudly is the point

use aion_ingester::grpc::{serve, ServerConfig};
use aion_ingester::raft::{MemShardData, NodeId, RaftLogDb, ShardId, ShardStateMachine};
use aion_ingester::shards::{default_raft_config, ShardHost};
use aion_proto::ingester as pb;
use aion_proto::ingester::ingester_client::IngesterClient;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tonic::transport::Channel;

const SHARDS: u64 = 16;
const SERIES_PER_BATCH: usize = 500;

struct Node {
    host: Arc<ShardHost>,
    addr: String,
    stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start_nodes(rf: usize) -> Vec<Node> {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = i as NodeId + 1;
        let dir = tempfile::tempdir().unwrap();
        let config = Arc::new(default_raft_config().validate().unwrap());
        let host = Arc::new(ShardHost::new(id, addrs[i].clone(), RaftLogDb::open(dir.path()).unwrap(), config));
        for shard in replicas_on(id, rf) {
            host.open_shard(shard, ShardStateMachine::new(Arc::new(MemShardData::new()))).await.unwrap();
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let h = Arc::clone(&host);
        tokio::spawn(async move {
            let _ = serve(h, ServerConfig::default(), listener, async {
                let _ = rx.await;
            })
            .await;
        });
        nodes.push(Node { host, addr: addrs[i].clone(), stop: tx, _dir: dir });
    }
    for shard in 0..SHARDS {
        let members: BTreeMap<NodeId, String> = (1..=3u64)
            .filter(|id| replicas_on(*id, rf).contains(&shard))
            .map(|id| (id, addrs[id as usize - 1].clone()))
            .collect();
        let first = *members.keys().nth((shard as usize) % members.len()).unwrap();
        nodes[first as usize - 1].host.initialize(shard, &members).await.unwrap();
    }
    nodes
}

/// Shards node `id` hosts: all with RF 3; `shard % 3 == id - 1` with RF 1.
fn replicas_on(id: NodeId, rf: usize) -> Vec<ShardId> {
    (0..SHARDS).filter(|s| rf == 3 || s % 3 == id - 1).collect()
}

async fn leaders(nodes: &[Node]) -> BTreeMap<ShardId, String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut found = BTreeMap::new();
        for n in nodes {
            for s in n.host.status() {
                if s.leader == Some(n.host.node_id()) {
                    found.insert(s.shard, n.addr.clone());
                }
            }
        }
        if found.len() as u64 == SHARDS {
            return found;
        }
        assert!(Instant::now() < deadline, "leaders not elected: {found:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn batch(pusher: usize, i: u64) -> Vec<pb::SeriesSamples> {
    (0..SERIES_PER_BATCH)
        .map(|s| pb::SeriesSamples {
            labels: vec![
                pb::Label { name: "__name__".into(), value: "bench_metric".into() },
                pb::Label { name: "pusher".into(), value: pusher.to_string() },
                pb::Label { name: "series".into(), value: s.to_string() },
            ],
            samples: vec![pb::Sample { timestamp_ms: i as i64 * 1_000, value: i as f64 }],
        })
        .collect()
}

/// One run: returns (samples acknowledged, latencies).
async fn run(rf: usize, pushers: usize, secs: u64) -> (u64, Vec<Duration>, Duration) {
    let nodes = start_nodes(rf).await;
    let leaders = leaders(&nodes).await;
    let mut clients: BTreeMap<String, IngesterClient<Channel>> = BTreeMap::new();
    for addr in leaders.values() {
        if !clients.contains_key(addr) {
            let c = IngesterClient::connect(format!("http://{addr}")).await.unwrap();
            clients.insert(addr.clone(), c.max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20));
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..pushers)
        .map(|p| {
            let shard = p as u64 % SHARDS;
            let mut client = clients[&leaders[&shard]].clone();
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut samples = 0u64;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let req = pb::PushRequest { shard, tenant: "bench".into(), series: batch(p, i) };
                    let t = Instant::now();
                    let resp = client.push(req).await.expect("push").into_inner();
                    match resp.outcome {
                        Some(pb::push_response::Outcome::Ok(r)) => samples += r.appended,
                        other => panic!("shard {shard}: unexpected outcome {other:?}"),
                    }
                    lat.push(t.elapsed());
                    i += 1;
                }
                (samples, lat)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut samples, mut lat) = (0, Vec::new());
    for t in tasks {
        let (s, l) = t.await.unwrap();
        samples += s;
        lat.extend(l);
    }
    let took = started.elapsed();
    for n in nodes {
        n.host.shutdown().await;
        let _ = n.stop.send(());
    }
    (samples, lat, took)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let secs: u64 = std::env::var("RAFT_BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(8).min(25);
    let pushers: usize = std::env::var("RAFT_BENCH_PUSHERS").ok().and_then(|v| v.parse().ok()).unwrap_or(32);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!("raft_write: 3 nodes in-process over gRPC loopback, {SHARDS} shards, {pushers} pushers, batches of {SERIES_PER_BATCH} series x 1 sample, {secs} s per run");
    for rf in [1usize, 3] {
        let (samples, mut lat, took) = rt.block_on(run(rf, pushers, secs));
        lat.sort_unstable();
        println!(
            "RF {rf}: {:>10.0} samples/s  ({} pushes, {samples} samples in {:.1?})  push latency p50 {:.2?} p99 {:.2?}",
            samples as f64 / took.as_secs_f64(),
            lat.len(),
            took,
            pct(&lat, 0.50),
            pct(&lat, 0.99),
        );
    }
}
