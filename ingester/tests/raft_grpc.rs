//! Three ingester nodes in one process, each a [`ShardHost`] behind its own
//! tonic server on a free loopback port; 4 shards × RF 3 replicated over
//! the real gRPC Raft transport, driven through the generated gRPC client.
//!
//! Run: `cargo test -p aion-ingester --test raft_grpc -- --nocapture`

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use aion_ingester::grpc::{convert, not_leader_from_status, serve, ServerConfig};
use aion_ingester::raft::{MemShardData, NodeId, RaftLogDb, ShardId, ShardStateMachine};
use aion_ingester::shards::{default_raft_config, ShardHost};
use aion_model::labels::Labels;
use aion_model::sample::Sample;
use aion_model::storage::{Queryable, Series, SeriesSamples, WriteBatch};
use aion_model::tenant::TenantId;
use aion_proto::ingester as pb;
use aion_proto::ingester::ingester_client::IngesterClient;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

const SHARDS: u64 = 4;
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

struct Node {
    host: Arc<ShardHost>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl Node {
    /// Stops the rafts, then the server (a killed process, as peers see it).
    async fn stop(&mut self) {
        self.host.shutdown().await;
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            if tokio::time::timeout(Duration::from_secs(3), h)
                .await
                .is_err()
            {
                panic!(
                    "server of node {} did not stop within 3 s",
                    self.host.node_id()
                );
            }
        }
    }
}

async fn start_node(id: NodeId, listener: TcpListener) -> Node {
    start_node_with(id, listener, default_raft_config(), SHARDS).await
}

/// Node `id` hosting shards `0..shards` with Raft `config`, serving on `listener`.
async fn start_node_with(
    id: NodeId,
    listener: TcpListener,
    config: openraft::Config,
    shards: u64,
) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = Arc::new(config.validate().unwrap());
    let db = RaftLogDb::open(dir.path()).unwrap();
    let host = Arc::new(ShardHost::new(id, addr, db, config));
    for shard in 0..shards {
        let sm = ShardStateMachine::new(Arc::new(MemShardData::new()));
        host.open_shard(shard, sm).await.unwrap();
    }
    let (tx, rx) = oneshot::channel::<()>();
    let cfg = ServerConfig {
        write_timeout: WRITE_TIMEOUT,
        read_timeout: WRITE_TIMEOUT,
        ..ServerConfig::default()
    };
    let h = Arc::clone(&host);
    let server = tokio::spawn(async move {
        serve(h, cfg, listener, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Node {
        host,
        stop: Some(tx),
        server: Some(server),
        _dir: dir,
    }
}

async fn client(addr: &str) -> IngesterClient<Channel> {
    IngesterClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

fn batch(shard: ShardId, i: u64) -> WriteBatch {
    let series = ["a", "b"]
        .iter()
        .map(|s| SeriesSamples {
            labels: Labels::from_pairs([
                ("__name__", "w"),
                ("shard", &shard.to_string()),
                ("s", *s),
            ]),
            samples: vec![Sample::new(i as i64 * 1_000, i as f64)],
        })
        .collect();
    WriteBatch {
        tenant: TenantId::new("t1").unwrap(),
        series,
    }
}

async fn push(
    addr: &str,
    shard: ShardId,
    i: u64,
) -> Result<pb::push_response::Outcome, tonic::Status> {
    let req = pb::PushRequest {
        shard,
        tenant: "t1".into(),
        series: convert::write_batch_to_pb(&batch(shard, i)),
    };
    let resp = client(addr).await.push(req).await?.into_inner();
    Ok(resp.outcome.unwrap())
}

async fn select(addr: &str, shard: ShardId) -> Result<Vec<Series>, tonic::Status> {
    let req = pb::SelectRequest {
        shard,
        tenant: "t1".into(),
        matchers: vec![pb::LabelMatcher {
            r#type: pb::label_matcher::Type::Eq as i32,
            name: "__name__".into(),
            value: "w".into(),
        }],
        start_ms: i64::MIN,
        end_ms: i64::MAX,
        allow_follower_read: false,
        ..Default::default()
    };
    let mut stream = client(addr).await.select(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(msg) = stream.message().await? {
        for s in msg.series {
            out.push(convert::series_from_pb(s).unwrap());
        }
    }
    Ok(out)
}

/// Leader of every shard, once all live nodes agree on one (10 s at most).
async fn leaders(nodes: &BTreeMap<NodeId, Node>) -> BTreeMap<ShardId, NodeId> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut out = BTreeMap::new();
        for shard in 0..SHARDS {
            let seen: Vec<Option<NodeId>> = nodes
                .values()
                .filter(|n| n.stop.is_some())
                .map(|n| {
                    n.host
                        .status()
                        .into_iter()
                        .find(|s| s.shard == shard)
                        .and_then(|s| s.leader)
                })
                .collect();
            if let Some(Some(l)) = seen.first() {
                if seen.iter().all(|x| *x == Some(*l)) && nodes[l].stop.is_some() {
                    out.insert(shard, *l);
                }
            }
        }
        if out.len() == SHARDS as usize {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "no stable leaders within 10 s: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pushes batch `i` to `shard` via any live node, following NotLeader and
/// retrying UNAVAILABLE until `deadline`; returns the node that took it.
async fn push_anywhere(
    addrs: &BTreeMap<NodeId, String>,
    shard: ShardId,
    i: u64,
    deadline: Instant,
) -> NodeId {
    let mut target = *addrs.keys().next().unwrap();
    loop {
        match push(&addrs[&target], shard, i).await {
            Ok(pb::push_response::Outcome::Ok(r)) => {
                assert_eq!(r.appended, 2, "shard {shard} batch {i}: {r:?}");
                return target;
            }
            Ok(pb::push_response::Outcome::NotLeader(nl)) if addrs.contains_key(&nl.leader_id) => {
                target = nl.leader_id;
                continue;
            }
            Ok(pb::push_response::Outcome::NotLeader(_)) => {}
            Err(s) => assert_eq!(s.code(), tonic::Code::Unavailable, "shard {shard}: {s}"),
        }
        // A stale or unknown leader: try the next live node after a pause.
        let next = addrs
            .range(target + 1..)
            .next()
            .or_else(|| addrs.iter().next());
        target = *next.unwrap().0;
        assert!(
            Instant::now() < deadline,
            "shard {shard}: batch {i} not accepted in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts 3 nodes and initializes every shard with all three as voters.
async fn start_cluster() -> (BTreeMap<NodeId, Node>, BTreeMap<NodeId, String>) {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: BTreeMap<NodeId, String> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.local_addr().unwrap().to_string()))
        .collect();
    let mut nodes = BTreeMap::new();
    for (i, l) in listeners.into_iter().enumerate() {
        nodes.insert(i as u64 + 1, start_node(i as u64 + 1, l).await);
    }
    for shard in 0..SHARDS {
        nodes[&(shard % 3 + 1)]
            .host
            .initialize(shard, &addrs)
            .await
            .unwrap();
    }
    (nodes, addrs)
}

/// Pushes 25 batches per shard to its leader; checks NotLeader from a
/// follower, Select on the leader and the read redirect on a follower.
async fn writes_and_redirects(addrs: &BTreeMap<NodeId, String>, led: &BTreeMap<ShardId, NodeId>) {
    // Writes through the leader; a follower answers NotLeader naming it.
    let mut latencies = Vec::new();
    for shard in 0..SHARDS {
        let leader = led[&shard];
        for i in 0..25 {
            let t = Instant::now();
            let out = push(&addrs[&leader], shard, i).await.unwrap();
            latencies.push(t.elapsed());
            assert!(
                matches!(out, pb::push_response::Outcome::Ok(ref r) if r.appended == 2),
                "{out:?}"
            );
        }
        let follower = (1..=3).find(|n| *n != leader).unwrap();
        match push(&addrs[&follower], shard, 99).await.unwrap() {
            pb::push_response::Outcome::NotLeader(nl) => {
                assert_eq!(
                    (nl.leader_id, nl.leader_addr.as_str()),
                    (leader, addrs[&leader].as_str())
                );
            }
            other => panic!("follower {follower} of shard {shard} accepted a push: {other:?}"),
        }
        let got = select(&addrs[&leader], shard).await.unwrap();
        assert_eq!(got.len(), 2, "shard {shard}: {got:?}");
        for s in &got {
            assert_eq!(s.labels.get("shard"), Some(shard.to_string().as_str()));
            let ts: Vec<i64> = s.samples.iter().map(|x| x.t).collect();
            assert_eq!(ts, (0..25).map(|i| i * 1_000).collect::<Vec<_>>());
        }
        let err = select(&addrs[&follower], shard).await.unwrap_err();
        assert_eq!(
            not_leader_from_status(&err),
            Some((leader, addrs[&leader].clone())),
            "{err}"
        );
    }
    latencies.sort();
    println!(
        "RF 3 over gRPC, sequential pushes (new client each): p50 {:?}, p99 {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100]
    );
}

/// Stops the node leading the most shards: its shards elect new leaders
/// and accept writes within 5 s; nothing acknowledged is lost. Returns the
/// live nodes.
async fn fail_over(
    nodes: &mut BTreeMap<NodeId, Node>,
    addrs: &BTreeMap<NodeId, String>,
    led: &BTreeMap<ShardId, NodeId>,
) -> BTreeMap<NodeId, String> {
    let victim = (1..=3u64)
        .max_by_key(|n| led.values().filter(|l| *l == n).count())
        .unwrap();
    let victim_shards: Vec<ShardId> = led
        .iter()
        .filter(|(_, l)| **l == victim)
        .map(|(s, _)| *s)
        .collect();
    nodes.get_mut(&victim).unwrap().stop().await;
    let stopped_at = Instant::now();
    let mut live = addrs.clone();
    live.remove(&victim);
    for &shard in &victim_shards {
        let took = push_anywhere(&live, shard, 25, stopped_at + Duration::from_secs(5)).await;
        assert_ne!(took, victim);
    }
    println!(
        "node {victim} (leader of {victim_shards:?}) stopped; all its shards took writes after {:?}",
        stopped_at.elapsed()
    );
    for shard in 0..SHARDS {
        let took = push_anywhere(&live, shard, 26, Instant::now() + Duration::from_secs(5)).await;
        let got = select(&live[&took], shard).await.unwrap();
        let want = if victim_shards.contains(&shard) {
            27
        } else {
            26
        };
        assert!(
            got.iter().all(|s| s.samples.len() == want),
            "shard {shard}: {got:?}"
        );
    }
    live
}

/// With two of three nodes stopped, a write fails with UNAVAILABLE within
/// a bounded time instead of hanging.
async fn no_quorum(nodes: &mut BTreeMap<NodeId, Node>, mut live: BTreeMap<NodeId, String>) {
    let second = *live.keys().next().unwrap();
    nodes.get_mut(&second).unwrap().stop().await;
    live.remove(&second);
    let (&last, last_addr) = live.iter().next().unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for shard in 0..SHARDS {
        let t = Instant::now();
        let err = loop {
            match push(last_addr, shard, 27).await {
                Err(s) => break s,
                Ok(pb::push_response::Outcome::NotLeader(nl)) => {
                    assert_ne!(nl.leader_id, last, "shard {shard}");
                    assert!(
                        t.elapsed() < Duration::from_secs(5),
                        "shard {shard}: still redirected to {nl:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(ok) => {
                    panic!("shard {shard}: a write committed with one of three nodes: {ok:?}")
                }
            }
        };
        let took = t.elapsed();
        println!(
            "shard {shard}, 2 of 3 nodes down: {:?} after {took:?}: {}",
            err.code(),
            err.message()
        );
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
        assert!(err.message().contains("retry"), "{err}");
        assert!(
            took < WRITE_TIMEOUT + Duration::from_secs(3),
            "shard {shard}: took {took:?}"
        );
    }
    nodes.get_mut(&last).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hosts_replicate_shards_over_grpc() {
    let (mut nodes, addrs) = start_cluster().await;
    let led = leaders(&nodes).await;
    println!("leaders: {led:?}");
    writes_and_redirects(&addrs, &led).await;
    let live = fail_over(&mut nodes, &addrs, &led).await;
    no_quorum(&mut nodes, live).await;
}

/// With snapshots every 10 entries and the log purged behind them, a new
/// replica added as a learner can only catch up through InstallSnapshot
/// over gRPC; it ends up with the leader's data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn learner_catches_up_by_snapshot_over_grpc() {
    let config = openraft::Config {
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(10),
        max_in_snapshot_log_to_keep: 0,
        ..default_raft_config()
    };
    let mut nodes = BTreeMap::new();
    let mut addrs = BTreeMap::new();
    for id in 1..=4u64 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.insert(id, l.local_addr().unwrap().to_string());
        nodes.insert(id, start_node_with(id, l, config.clone(), 1).await);
    }
    let voters: BTreeMap<NodeId, String> =
        addrs.range(1..=3).map(|(k, v)| (*k, v.clone())).collect();
    nodes[&1].host.initialize(0, &voters).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut leader = 0;
    for i in 0..35 {
        leader = push_anywhere(&voters, 0, i, deadline).await;
    }
    let lraft = nodes[&leader].host.shard(0).unwrap().raft.clone();
    lraft
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= 20),
            "snapshot + purge",
        )
        .await
        .unwrap();
    lraft
        .add_learner(4, openraft::BasicNode::new(addrs[&4].clone()), true)
        .await
        .unwrap();
    let learner = nodes[&4].host.shard(0).unwrap();
    let m = learner
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= 20),
            "learner installs a snapshot",
        )
        .await
        .unwrap();
    println!("learner 4 installed snapshot {:?} over gRPC", m.snapshot);
    let last = lraft.metrics().borrow().last_log_index;
    learner
        .raft
        .wait(Some(Duration::from_secs(10)))
        .applied_index_at_least(last, "learner applies the log after the snapshot")
        .await
        .unwrap();
    let want = select(&addrs[&leader], 0).await.unwrap();
    let tenant = TenantId::new("t1").unwrap();
    let got = learner
        .data
        .store()
        .select(&tenant, &aion_model::storage::SelectHints::all(), &[])
        .unwrap();
    assert_eq!(got, want);
    assert!(want.iter().all(|s| s.samples.len() == 35), "{want:?}");
    for n in nodes.values_mut() {
        n.stop().await;
    }
}
