//! Membership changes of shard replicas between [`ShardHost`]s in one
//! process over real gRPC on loopback: a replica of a 2-shard, 3-node group
//! is moved to a 4th host that starts empty (`Admin` service: host →
//! learner → catch up → replace voter → drop), the old host's log and
//! recorded hosted set no longer have it, and a follower read on the new
//! replica returns the data without a leadership check.
//!
//! Run: `cargo test -p aion-ingester --test raft_membership -- --nocapture`

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use aion_ingester::grpc::{serve, ServerConfig};
use aion_ingester::raft::{MemShardData, NodeId, RaftLogDb, ShardId};
use aion_ingester::shards::{default_raft_config, MemOpener, ShardHost};
use aion_proto::ingester as pb;
use aion_proto::ingester::admin_client::AdminClient;
use aion_proto::ingester::ingester_client::IngesterClient;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const SHARDS: u64 = 2;

struct Node {
    host: Arc<ShardHost<MemShardData>>,
    addr: String,
    _dir: tempfile::TempDir,
}

async fn start_node(id: NodeId, listener: TcpListener, shards: &[ShardId]) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = Arc::new(default_raft_config().validate().unwrap());
    let db = RaftLogDb::open(dir.path()).unwrap();
    let host = Arc::new(ShardHost::new(id, addr.clone(), db, config).with_opener(Arc::new(MemOpener)));
    host.open_all(&shards.iter().copied().collect()).await.unwrap();
    let h = Arc::clone(&host);
    tokio::spawn(async move {
        let _ = serve(h, ServerConfig::default(), listener, std::future::pending::<()>()).await;
    });
    Node { host, addr, _dir: dir }
}

fn leader_of(nodes: &[Node], shard: ShardId) -> Option<usize> {
    nodes.iter().position(|n| n.host.status().iter().any(|s| s.shard == shard && s.leader == Some(n.host.node_id())))
}

async fn push(addr: &str, shard: ShardId, i: i64) -> pb::push_response::Outcome {
    let req = pb::PushRequest {
        shard,
        tenant: "t1".into(),
        series: vec![pb::SeriesSamples {
            labels: vec![pb::Label { name: "__name__".into(), value: "m".into() }],
            samples: vec![pb::Sample { timestamp_ms: i * 1_000, value: i as f64 }],
        }],
    };
    let mut c = IngesterClient::connect(format!("http://{addr}")).await.unwrap();
    c.push(req).await.unwrap().into_inner().outcome.unwrap()
}

async fn select(addr: &str, shard: ShardId, follower: bool) -> Result<usize, tonic::Status> {
    let req = pb::SelectRequest {
        shard,
        tenant: "t1".into(),
        matchers: vec![pb::LabelMatcher { r#type: pb::label_matcher::Type::Eq as i32, name: "__name__".into(), value: "m".into() }],
        start_ms: i64::MIN,
        end_ms: i64::MAX,
        allow_follower_read: follower,
        ..Default::default()
    };
    let mut c = IngesterClient::connect(format!("http://{addr}")).await.unwrap();
    let mut stream = c.select(req).await?.into_inner();
    let mut samples = 0;
    while let Some(msg) = stream.message().await? {
        for s in msg.series {
            samples += s.chunks.len();
        }
    }
    Ok(samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_moves_to_an_empty_host_and_the_old_one_is_dropped() {
    let mut listeners = Vec::new();
    for _ in 0..4 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let shards: Vec<ShardId> = if i < 3 { (0..SHARDS).collect() } else { vec![] };
        nodes.push(start_node(i as NodeId + 1, l, &shards).await);
    }
    let members: BTreeMap<NodeId, String> = (0..3).map(|i| (i as NodeId + 1, nodes[i].addr.clone())).collect();
    for shard in 0..SHARDS {
        nodes[0].host.initialize(shard, &members).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while (0..SHARDS).any(|s| leader_of(&nodes, s).is_none()) {
        assert!(Instant::now() < deadline, "no leaders");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leader = leader_of(&nodes, 0).unwrap();
    for i in 0..20 {
        assert!(matches!(push(&nodes[leader].addr, 0, i).await, pb::push_response::Outcome::Ok(_)));
    }
    // A follower answers a follower read, and redirects a linearizable one.
    let follower = (0..3).find(|i| *i != leader).unwrap();
    assert!(select(&nodes[follower].addr, 0, true).await.is_ok());
    let err = select(&nodes[follower].addr, 0, false).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");

    // Move the follower's replica of shard 0 to node 4, asking the leader.
    let from = follower as NodeId + 1;
    let mut admin = AdminClient::connect(format!("http://{}", nodes[leader].addr)).await.unwrap();
    let req = pb::MoveReplicaRequest { shard: 0, from_node: from, to_node: 4, to_addr: nodes[3].addr.clone() };
    let voters = admin.move_replica(req.clone()).await.unwrap().into_inner().voters;
    assert!(voters.contains(&4) && !voters.contains(&from) && voters.len() == 3, "{voters:?}");
    let again = admin.move_replica(req).await.unwrap_err();
    assert_eq!(again.code(), tonic::Code::NotFound, "{from} is no voter any more: {again}");

    assert!(nodes[follower].host.shard(0).is_none(), "old replica dropped");
    assert_eq!(nodes[follower].host.recorded_shards().unwrap(), Some(BTreeSet::from([1])));
    assert!(nodes[follower].host.log_db().shard(0).read_range(0, u64::MAX).unwrap().is_empty(), "old log deleted");
    assert_eq!(nodes[3].host.recorded_shards().unwrap(), Some(BTreeSet::from([0])));
    // The new replica serves the 20 samples by follower read once applied.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = select(&nodes[3].addr, 0, true).await.unwrap();
        if n > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "node 4 never applied shard 0's data");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for n in &nodes {
        n.host.shutdown().await;
    }
}
