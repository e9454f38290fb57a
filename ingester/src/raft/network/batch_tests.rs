//! Batched `AppendEntries` against fake peers: per-shard replies out of one
//! call, a peer that is down, and a peer without `AppendBatch`.

use super::*;
use aion_proto::ingester::raft_server::{Raft, RaftServer};
use aion_proto::ingester::{RaftBatchReply, RaftBatchRequest, RaftFailure};
use openraft::{CommittedLeaderId, LogId, Vote};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tonic::{Request, Response, Status};

/// A peer whose shard `s` answers `Success` when `s` is even and
/// `Conflict` when odd; shard 7 is not hosted and shard 9 returns a Raft
/// error. `legacy`: a build without `AppendBatch`.
#[derive(Default)]
struct FakePeer {
    legacy: bool,
    unary: AtomicUsize,
    batches: parking_lot::Mutex<Vec<Vec<u64>>>,
}

/// The served handle of a [`FakePeer`].
#[derive(Clone)]
struct Fake(Arc<FakePeer>);

fn answer(req: &RaftRequest) -> Result<RaftReply, Status> {
    assert!(wire::decode_append(bytes::Bytes::from(req.payload.clone())).is_ok());
    let result = match req.shard_id {
        7 => return Err(Status::not_found("shard 7 is not hosted")),
        9 => {
            let e: RaftError<NodeId, openraft::error::Infallible> =
                RaftError::Fatal(openraft::error::Fatal::Panicked);
            raft_reply::Result::Error(serde_json::to_vec(&e).unwrap())
        }
        s if s % 2 == 0 => raft_reply::Result::Ok(serde_json::to_vec(&AppendEntriesResponse::<NodeId>::Success).unwrap()),
        _ => raft_reply::Result::Ok(serde_json::to_vec(&AppendEntriesResponse::<NodeId>::Conflict).unwrap()),
    };
    Ok(RaftReply { result: Some(result) })
}

#[tonic::async_trait]
impl Raft for Fake {
    async fn append_entries(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        self.0.unary.fetch_add(1, Ordering::SeqCst);
        answer(&req.into_inner()).map(Response::new)
    }
    async fn vote(&self, _: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        Err(Status::unimplemented("vote"))
    }
    async fn install_snapshot(&self, _: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        Err(Status::unimplemented("install_snapshot"))
    }
    async fn append_batch(&self, req: Request<RaftBatchRequest>) -> Result<Response<RaftBatchReply>, Status> {
        if self.0.legacy {
            return Err(Status::unimplemented("no AppendBatch in this build"));
        }
        let reqs = req.into_inner().requests;
        self.0.batches.lock().push(reqs.iter().map(|r| r.shard_id).collect());
        // Slow enough that concurrent callers queue behind this call.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let replies = reqs
            .iter()
            .map(|r| {
                answer(r).unwrap_or_else(|s| RaftReply {
                    result: Some(raft_reply::Result::Failed(RaftFailure { code: s.code() as i32, message: s.message().into() })),
                })
            })
            .collect();
        Ok(Response::new(RaftBatchReply { replies }))
    }
}

async fn serve_fake(peer: Arc<FakePeer>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RaftServer::new(Fake(peer)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

fn heartbeat() -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: Vote::new_committed(2, 1),
        prev_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), 5)),
        leader_commit: Some(LogId::new(CommittedLeaderId::new(2, 1), 5)),
        entries: Vec::new(),
    }
}

type AppendOutcome = Result<AppendEntriesResponse<NodeId>, RpcErr<openraft::error::Infallible>>;

/// `shards` append concurrently to the peer at `addr` through `pool`.
async fn append_all(pool: &ChannelPool, addr: &str, shards: &[ShardId], ttl: Duration) -> Vec<AppendOutcome> {
    let mut nets = Vec::new();
    for &s in shards {
        nets.push(GrpcNetworkFactory::new(s, pool.clone()).new_client(2, &BasicNode::new(addr)).await);
    }
    let calls = nets.into_iter().map(|mut n| async move { n.append_entries(heartbeat(), RPCOption::new(ttl)).await });
    futures::future::join_all(calls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_batched_to_one_peer_each_get_their_own_reply() {
    let peer = Arc::new(FakePeer::default());
    let addr = serve_fake(Arc::clone(&peer)).await;
    let pool = ChannelPool::with_batching(true);
    let shards: Vec<ShardId> = vec![0, 1, 2, 3, 4, 5, 7, 9];
    // Warm up (connect), then all shards at once: the first call goes
    // alone, the others queue behind it and share the next call.
    append_all(&pool, &addr, &[0], Duration::from_secs(2)).await[0].as_ref().unwrap();
    let got = append_all(&pool, &addr, &shards, Duration::from_secs(2)).await;
    for (s, r) in shards.iter().zip(&got) {
        match (s, r) {
            (7, Err(RPCError::Network(e))) => assert!(e.to_string().contains("not hosted"), "{e}"),
            (9, Err(RPCError::RemoteError(e))) => assert_eq!(e.target, 2),
            (s, Ok(AppendEntriesResponse::Success)) if s % 2 == 0 => {}
            (s, Ok(AppendEntriesResponse::Conflict)) if s % 2 == 1 && *s != 7 && *s != 9 => {}
            (s, r) => panic!("shard {s}: unexpected {r:?}"),
        }
    }
    let batches = peer.batches.lock().clone();
    assert_eq!(peer.unary.load(Ordering::SeqCst), 0);
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 1 + shards.len(), "{batches:?}");
    assert!(batches.len() <= 4, "8 concurrent shards took {} calls: {batches:?}", batches.len());
    let st = pool.stats();
    assert_eq!((st.append_requests(), st.append_heartbeats(), st.append_rpcs()), (9, 9, batches.len() as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_peer_fails_the_whole_batch_fast() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let pool = ChannelPool::with_batching(true);
    let t = Instant::now();
    let got = append_all(&pool, &format!("127.0.0.1:{port}"), &[0, 1, 2, 3], Duration::from_secs(5)).await;
    for r in got {
        assert!(matches!(r, Err(RPCError::Unreachable(_))), "{r:?}");
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_append_batch_is_sent_unary_calls() {
    let peer = Arc::new(FakePeer { legacy: true, ..FakePeer::default() });
    let addr = serve_fake(Arc::clone(&peer)).await;
    let pool = ChannelPool::with_batching(true);
    for round in 0..3 {
        let got = append_all(&pool, &addr, &[0, 1, 2], Duration::from_secs(2)).await;
        assert!(matches!(got[0], Ok(AppendEntriesResponse::Success)), "round {round}: {:?}", got[0]);
        assert!(matches!(got[1], Ok(AppendEntriesResponse::Conflict)), "round {round}: {:?}", got[1]);
        assert!(matches!(got[2], Ok(AppendEntriesResponse::Success)), "round {round}: {:?}", got[2]);
    }
    assert_eq!(peer.unary.load(Ordering::SeqCst), 9, "every request answered, unary");
    // Only the first call probed AppendBatch; later ones went unary at once.
    assert_eq!(pool.stats().append_batch_rpcs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_off_sends_unary() {
    let peer = Arc::new(FakePeer::default());
    let addr = serve_fake(Arc::clone(&peer)).await;
    let pool = ChannelPool::with_batching(false);
    let got = append_all(&pool, &addr, &[0, 1], Duration::from_secs(2)).await;
    assert!(matches!(got[1], Ok(AppendEntriesResponse::Conflict)), "{:?}", got[1]);
    assert_eq!(peer.unary.load(Ordering::SeqCst), 2);
    assert!(peer.batches.lock().is_empty());
}
