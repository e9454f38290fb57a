//! Tests of the batched read index on a real three-node cluster: grants,
//! redirects, leases (served without `Confirm`, expiring when cut off, off
//! by config) and the startup vote hold.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::grpc::{convert::LEADER_ID_KEY, serve, ServerConfig};
use crate::raft::{MemShardData, RaftLogDb, ShardStateMachine};
use crate::shards::{default_raft_config, ShardHost};
use aion_proto::ingester::raft_server::Raft;
use aion_proto::ingester::{raft_reply, RaftRequest};
use openraft::raft::{VoteRequest, VoteResponse};
use openraft::Vote;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

type Host = Arc<ShardHost<MemShardData>>;

/// Three nodes hosting `shards` shards at RF 3, every group started by node 1.
async fn cluster(shards: u64) -> (Vec<Host>, Vec<oneshot::Sender<()>>, Vec<tempfile::TempDir>) {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    let (mut hosts, mut stops, mut dirs) = (Vec::new(), Vec::new(), Vec::new());
    for (i, listener) in listeners.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let config = Arc::new(default_raft_config().validate().unwrap());
        let host: Host = Arc::new(ShardHost::new(i as u64 + 1, addrs[i].clone(), RaftLogDb::open(dir.path()).unwrap(), config));
        for shard in 0..shards {
            host.open_shard(shard, ShardStateMachine::new(Arc::new(MemShardData::new()))).await.unwrap();
        }
        let (tx, rx) = oneshot::channel::<()>();
        let h = Arc::clone(&host);
        tokio::spawn(async move { serve(h, ServerConfig::default(), listener, async { let _ = rx.await; }).await.unwrap() });
        hosts.push(host);
        stops.push(tx);
        dirs.push(dir);
    }
    let members: BTreeMap<NodeId, String> = (0..3).map(|i| (i as u64 + 1, addrs[i].clone())).collect();
    for shard in 0..shards {
        hosts[0].initialize(shard, &members).await.unwrap();
    }
    (hosts, stops, dirs)
}

/// Waits until node 1 leads every shard with an entry of its term committed.
async fn node1_leads_all(svc: &IngesterService<MemShardData>, shards: u64) {
    for _ in 0..200 {
        let mut ok = true;
        for shard in 0..shards {
            ok &= leader_view(&svc.shard(shard).unwrap(), 1).is_some();
        }
        if ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("node 1 did not lead every shard within 5 s");
}

fn service(host: &Host, read_lease: bool, read_timeout: Duration) -> IngesterService<MemShardData> {
    IngesterService::new(Arc::clone(host), ServerConfig { read_lease, read_timeout, ..ServerConfig::default() })
}

/// The views of `shards` on node 1 and the `(shard, view)` pairs to confirm.
async fn views_of(svc: &IngesterService<MemShardData>, shards: &[ShardId]) -> Vec<LeaderView> {
    let mut views = Vec::new();
    for s in shards {
        views.push(leader_view(&svc.shard(*s).unwrap(), 1).unwrap());
    }
    views
}

fn pairs<'a>(shards: &[ShardId], views: &'a [LeaderView]) -> Vec<(ShardId, &'a LeaderView)> {
    shards.iter().copied().zip(views).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_confirm_per_peer_serves_the_leader_and_redirects_elsewhere() {
    let (hosts, mut stops, _dirs) = cluster(4).await;
    let svc: Vec<IngesterService<MemShardData>> = hosts.iter().map(|h| IngesterService::new(Arc::clone(h), ServerConfig::default())).collect();
    node1_leads_all(&svc[0], 4).await;
    let shards = [0, 1, 2, 3];

    // Both peers grant every shard in one call each, with the age of their
    // committed vote (heartbeats every 100 ms); the batch serves all.
    let views = views_of(&svc[0], &shards).await;
    let grants = svc[0].ask_peers(&pairs(&shards, &views)).await;
    for s in shards {
        let g = grants.get(&s).unwrap();
        assert_eq!(g.keys().copied().collect::<Vec<_>>(), vec![2, 3], "shard {s}");
        for age in g.values() {
            let age = age.unwrap();
            assert!(age.age < Duration::from_millis(600), "shard {s}: {age:?}");
            assert_eq!(age.lease, Some(Duration::from_millis(1000)));
        }
    }
    assert!(svc[0].leader_shards(&shards).await.iter().all(Result::is_ok));

    // A follower does not confirm: the read is redirected to node 1, as before.
    for r in svc[1].leader_shards(&[0, 2]).await {
        let status = r.err().expect("a follower must not serve a linearizable read");
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
        assert_eq!(status.metadata().get(LEADER_ID_KEY).unwrap().to_str().unwrap(), "1");
    }
    // A peer grants only the exact leader id it holds, with an age for it.
    let v = views[0].clone();
    let ask = |term: u64, node: u64| pb::ConfirmLeadershipRequest { votes: vec![pb::ShardVote { shard: 0, term, leader_node: node }, pb::ShardVote { shard: 99, term, leader_node: node }] };
    let ok = svc[1].confirm(Request::new(ask(v.leader_id.term, 1))).await.unwrap().into_inner();
    assert_eq!(ok.granted, vec![0], "shard 99 is not hosted");
    assert_eq!(ok.vote_ages.iter().map(|a| (a.shard, a.leader_lease_ms)).collect::<Vec<_>>(), vec![(0, 1000)]);
    for (term, node) in [(v.leader_id.term + 1, 1), (v.leader_id.term, 3)] {
        let no = svc[1].confirm(Request::new(ask(term, node))).await.unwrap().into_inner();
        assert!(no.granted.is_empty() && no.vote_ages.is_empty(), "term {term} node {node}: {no:?}");
    }

    // One peer down: the other grant plus the leader is still a quorum.
    hosts[2].shutdown().await;
    let _ = stops.pop().unwrap().send(());
    let grants = svc[0].ask_peers(&pairs(&shards, &views)).await;
    assert!(shards.iter().all(|s| grants.get(s).is_some_and(|g| g.keys().eq([2].iter()))), "{grants:?}");
    let no_lease = service(&hosts[0], false, Duration::from_secs(3));
    assert!(no_lease.leader_shards(&shards).await.iter().all(Result::is_ok));
    assert_eq!(no_lease.read_index_counts().confirm, 4);

    // Both peers down: no quorum, so no read is served (UNAVAILABLE after the read timeout).
    hosts[1].shutdown().await;
    let _ = stops.pop().unwrap().send(());
    let svc0 = service(&hosts[0], true, Duration::from_millis(700));
    for r in svc0.leader_shards(&[0, 1]).await {
        assert!(r.is_err(), "a leader cut off from its quorum must not serve");
    }
    assert_eq!(svc0.read_index_counts().lease, 0, "a new service has no lease");
    hosts[0].shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_skips_confirm_until_it_expires_and_can_be_turned_off() {
    let (hosts, mut stops, _dirs) = cluster(2).await;
    let leased = service(&hosts[0], true, Duration::from_millis(300));
    node1_leads_all(&leased, 2).await;
    let shards = [0, 1];

    // The first read confirms (one call per peer) and takes a lease; reads
    // right after are served under it without any Confirm call.
    assert!(leased.leader_shards(&shards).await.iter().all(Result::is_ok));
    let first = leased.read_index_counts();
    assert_eq!((first.confirm, first.confirm_calls, first.lease), (2, 2, 0), "{first:?}");
    for _ in 0..3 {
        assert!(leased.leader_shards(&shards).await.iter().all(Result::is_ok));
    }
    let after = leased.read_index_counts();
    assert_eq!((after.confirm_calls, after.lease), (2, 6), "no Confirm within the lease: {after:?}");

    // With leases off every read confirms.
    let confirming = service(&hosts[0], false, Duration::from_millis(300));
    for _ in 0..3 {
        assert!(confirming.leader_shards(&shards).await.iter().all(Result::is_ok));
    }
    let c = confirming.read_index_counts();
    assert_eq!((c.confirm_calls, c.confirm, c.lease), (6, 6, 0), "{c:?}");

    // Cut the leader off: shut both peers down right after a confirmed
    // read. Reads go on under the lease, then fail once it ran out, well
    // within the leader lease (1 s) of the last grant.
    let fresh = service(&hosts[0], true, Duration::from_millis(300));
    assert!(fresh.leader_shards(&shards).await.iter().all(Result::is_ok));
    let last_grant = Instant::now();
    for h in &hosts[1..] {
        h.shutdown().await;
    }
    for stop in stops.drain(1..) {
        let _ = stop.send(());
    }
    let lease_before = fresh.read_index_counts().lease;
    let mut last_served = None;
    let first_failure = loop {
        let results = fresh.leader_shards(&shards).await;
        if results.iter().all(Result::is_ok) {
            last_served = Some(Instant::now());
        } else {
            break Instant::now();
        }
        assert!(last_grant.elapsed() < Duration::from_secs(3), "a cut-off leader kept serving");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let counts = fresh.read_index_counts();
    assert!(counts.lease > lease_before, "reads after the cut were served under the lease: {counts:?}");
    let served_for = last_served.unwrap().duration_since(last_grant);
    assert!(served_for < Duration::from_millis(800), "served {served_for:?} after the last grant (cap 400 ms)");
    assert!(first_failure.duration_since(last_grant) < Duration::from_secs(1) + Duration::from_millis(300));
    for r in fresh.leader_shards(&shards).await {
        assert!(r.is_err(), "the lease is gone: the leader must not serve");
    }
    hosts[0].shutdown().await;
}

fn vote_request(shard: ShardId, term: u64, candidate: NodeId) -> Request<RaftRequest> {
    let rpc: VoteRequest<NodeId> = VoteRequest::new(Vote::new(term, candidate), None);
    Request::new(RaftRequest { shard_id: shard, payload: serde_json::to_vec(&rpc).unwrap() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_service_refuses_votes_for_the_hold_then_answers() {
    let (hosts, _stops, _dirs) = cluster(1).await;
    node1_leads_all(&service(&hosts[0], true, Duration::from_secs(3)), 1).await;
    // A shard this node never voted in (term 0) is not held: bootstrap is not delayed.
    hosts[1].open_shard(9, ShardStateMachine::new(Arc::new(MemShardData::new()))).await.unwrap();

    let restarted = service(&hosts[1], true, Duration::from_secs(3));
    let started = Instant::now();
    let status = restarted.vote(vote_request(0, 50, 3)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("grants no vote yet"), "{status:?}");
    assert!(restarted.vote(vote_request(9, 1, 3)).await.is_ok(), "a never-voted shard answers at once");

    // After the leader lease (1 s) plus margin, openraft gets the request
    // (and, hearing from node 1 every 100 ms, refuses it by its own lease).
    tokio::time::sleep((started + Duration::from_millis(1250)).saturating_duration_since(Instant::now())).await;
    let reply = restarted.vote(vote_request(0, 50, 3)).await.unwrap().into_inner();
    let Some(raft_reply::Result::Ok(bytes)) = reply.result else { panic!("{reply:?}") };
    let resp: VoteResponse<NodeId> = serde_json::from_slice(&bytes).unwrap();
    assert!(!resp.vote_granted, "node 1 still leads: {resp:?}");
    assert!(leader_view(&hosts[0].shard(0).unwrap(), 1).is_some(), "the request did not disturb the leader");
    hosts[0].shutdown().await;
}

fn view(joint: Vec<Vec<NodeId>>) -> LeaderView {
    LeaderView {
        leader_id: LeaderId::new(3, 1),
        read_index: 7,
        joint: joint.into_iter().map(|c| c.into_iter().collect()).collect(),
        peers: Vec::new(),
    }
}

#[test]
fn quorum_counts_the_leader_and_needs_every_joint_config() {
    let v = view(vec![vec![1, 2, 3]]);
    assert!(!v.confirmed_by(1, &BTreeSet::new()), "the leader alone is 1 of 3");
    assert!(v.confirmed_by(1, &BTreeSet::from([3])));
    let five = view(vec![vec![1, 2, 3, 4, 5]]);
    assert!(!five.confirmed_by(1, &BTreeSet::from([2])), "2 of 5");
    assert!(five.confirmed_by(1, &BTreeSet::from([2, 5])));
    let joint = view(vec![vec![1, 2, 3], vec![4, 5, 6]]);
    assert!(!joint.confirmed_by(1, &BTreeSet::from([2])), "the new config has no grant");
    assert!(joint.confirmed_by(1, &BTreeSet::from([2, 4, 5])));
    assert!(!view(Vec::new()).confirmed_by(1, &BTreeSet::from([2])), "no membership, no quorum");
}
