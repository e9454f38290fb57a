//! Scenario tests of the write path against scripted fake ingesters (real
//! gRPC on loopback): redirects, retries on UNAVAILABLE and dead leaders,
//! final errors, and the [`ShardRouter`] placing series on their shards.

use super::{ClientConfig, ClientError, ClusterClient, RetryPolicy, RouterMetrics, ShardRing, ShardRouter};
use crate::grpc::convert::{labels_from_pb, shard_push_answer};
use aion_model::labels::Labels;
use aion_model::sample::Sample;
use aion_model::storage::{Appender, SeriesSamples, StorageError, WriteBatch};
use aion_model::tenant::TenantId;
use aion_proto::ingester as pb;
use aion_proto::ingester::ingester_server::{Ingester, IngesterServer};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// What the fake cluster does, shared by its nodes.
#[derive(Default)]
struct Script {
    /// Node id of the real leader of every shard.
    leader: AtomicU64,
    /// Node id the `Shards` answers claim leads (a stale view when it differs).
    advertised_leader: AtomicU64,
    /// Pushes the leader fails with UNAVAILABLE before accepting.
    unavailable_first: AtomicU32,
    /// Answer every push with INVALID_ARGUMENT.
    invalid: std::sync::atomic::AtomicBool,
    /// Node addresses by id (including ones nobody listens on).
    addrs: Mutex<BTreeMap<u64, String>>,
    /// Every push received: (node, shard, series labels).
    pushes: Mutex<Vec<(u64, u64, Vec<Labels>)>>,
    /// Shard count advertised.
    shards: AtomicU64,
    /// Answer `PushEncodedMulti` with UNIMPLEMENTED (an older ingester).
    no_multi: std::sync::atomic::AtomicBool,
    /// `PushEncodedMulti` calls served.
    multi_calls: AtomicU64,
}

struct FakeIngester {
    id: u64,
    script: Arc<Script>,
}

type SelectStream = Pin<Box<dyn futures::Stream<Item = Result<pb::SelectResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Ingester for FakeIngester {
    async fn shards(&self, _r: Request<pb::ShardsRequest>) -> Result<Response<pb::ShardsResponse>, Status> {
        let addrs = self.script.addrs.lock().clone();
        let replicas: Vec<pb::ShardReplica> = addrs
            .iter()
            .map(|(id, a)| pb::ShardReplica { node_id: *id, grpc_address: a.clone(), voter: true })
            .collect();
        let leader = self.script.advertised_leader.load(Ordering::SeqCst);
        let shards = (0..self.script.shards.load(Ordering::SeqCst))
            .map(|shard| pb::ShardInfo { shard, leader_id: Some(leader), term: 1, replicas: replicas.clone(), last_applied: 0 })
            .collect();
        Ok(Response::new(pb::ShardsResponse { node_id: self.id, shards }))
    }

    async fn push(&self, r: Request<pb::PushRequest>) -> Result<Response<pb::PushResponse>, Status> {
        let req = r.into_inner();
        let s = &self.script;
        if s.invalid.load(Ordering::SeqCst) {
            return Err(Status::invalid_argument("invalid tenant \"\""));
        }
        let leader = s.leader.load(Ordering::SeqCst);
        if self.id != leader {
            let leader_addr = s.addrs.lock().get(&leader).cloned().unwrap_or_default();
            let nl = pb::NotLeader { leader_id: leader, leader_addr };
            return Ok(Response::new(pb::PushResponse { outcome: Some(pb::push_response::Outcome::NotLeader(nl)) }));
        }
        if s.unavailable_first.load(Ordering::SeqCst) > 0 {
            s.unavailable_first.fetch_sub(1, Ordering::SeqCst);
            return Err(Status::unavailable("no quorum"));
        }
        let appended = req.series.iter().map(|x| x.samples.len() as u64).sum();
        let labels = req.series.into_iter().map(|x| labels_from_pb(x.labels)).collect();
        s.pushes.lock().push((self.id, req.shard, labels));
        let ok = pb::PushResult { appended, ..Default::default() };
        Ok(Response::new(pb::PushResponse { outcome: Some(pb::push_response::Outcome::Ok(ok)) }))
    }

    /// Checks the batch like a real ingester, then scripts it like a Push.
    async fn push_encoded(&self, r: Request<pb::PushEncodedRequest>) -> Result<Response<pb::PushResponse>, Status> {
        let req = r.into_inner();
        assert_eq!(req.codec_version, 1);
        let write = crate::raft::ShardWrite::from_client(bytes::Bytes::from(req.batch))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let batch = write.to_batch();
        let series = crate::grpc::convert::write_batch_to_pb(&batch);
        let push = pb::PushRequest { shard: req.shard, tenant: batch.tenant.to_string(), series };
        self.push(Request::new(push)).await
    }

    /// Each shard batch as its own `push_encoded` (or UNIMPLEMENTED when scripted).
    async fn push_encoded_multi(
        &self,
        r: Request<pb::PushEncodedMultiRequest>,
    ) -> Result<Response<pb::PushEncodedMultiResponse>, Status> {
        self.script.multi_calls.fetch_add(1, Ordering::SeqCst);
        if self.script.no_multi.load(Ordering::SeqCst) {
            return Err(Status::unimplemented("old ingester"));
        }
        let mut shards = Vec::new();
        for req in r.into_inner().shards {
            let shard = req.shard;
            shards.push(shard_push_answer(shard, self.push_encoded(Request::new(req)).await));
        }
        Ok(Response::new(pb::PushEncodedMultiResponse { shards }))
    }

    type SelectStream = SelectStream;

    async fn select(&self, _r: Request<pb::SelectRequest>) -> Result<Response<SelectStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn label_names(&self, _r: Request<pb::LabelNamesRequest>) -> Result<Response<pb::LabelNamesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn label_values(
        &self,
        _r: Request<pb::LabelValuesRequest>,
    ) -> Result<Response<pb::LabelValuesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// Starts fake nodes 1..=live and reserves an address for node `live + 1`
/// that nobody listens on. Returns the script and every address by id.
async fn fake_cluster(live: u64, shards: u64) -> (Arc<Script>, BTreeMap<u64, String>) {
    let script = Arc::new(Script::default());
    script.shards.store(shards, Ordering::SeqCst);
    let mut addrs = BTreeMap::new();
    for id in 1..=live {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.insert(id, listener.local_addr().unwrap().to_string());
        let svc = IngesterServer::new(FakeIngester { id, script: script.clone() });
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
    }
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    addrs.insert(live + 1, dead);
    *script.addrs.lock() = addrs.clone();
    (script, addrs)
}

fn request(shard: u64) -> pb::PushRequest {
    let series = pb::SeriesSamples {
        labels: vec![pb::Label { name: "__name__".into(), value: "m".into() }],
        samples: vec![pb::Sample { timestamp_ms: 1, value: 1.0 }],
    };
    pb::PushRequest { shard, tenant: "t".into(), series: vec![series] }
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        deadline: Duration::from_secs(5),
    }
}

fn seeds(addrs: &BTreeMap<u64, String>, live: u64) -> Vec<String> {
    addrs.iter().filter(|(id, _)| **id <= live).map(|(_, a)| a.clone()).collect()
}

#[tokio::test]
async fn follows_not_leader_and_caches_the_leader() {
    let (script, addrs) = fake_cluster(3, 1).await;
    script.leader.store(2, Ordering::SeqCst);
    script.advertised_leader.store(1, Ordering::SeqCst); // stale view
    let client = ClusterClient::new(seeds(&addrs, 3), 1, ClientConfig::default());
    let report = client.push_shard(&request(0), &fast_policy()).await.unwrap();
    assert_eq!((report.attempts, report.redirects), (1, 1));
    assert_eq!(report.leader_addr, addrs[&2]);
    assert_eq!(report.result.appended, 1);
    assert_eq!(client.route(0).unwrap().leader, Some((2, addrs[&2].clone())));
    // The next push goes straight to the cached leader.
    let report = client.push_shard(&request(0), &fast_policy()).await.unwrap();
    assert_eq!((report.attempts, report.redirects), (1, 0));
    assert_eq!(script.pushes.lock().len(), 2);
}

#[tokio::test]
async fn retries_unavailable_and_dead_leaders_then_commits() {
    let (script, addrs) = fake_cluster(3, 1).await;
    script.leader.store(3, Ordering::SeqCst);
    script.advertised_leader.store(4, Ordering::SeqCst); // node 4 is dead
    script.unavailable_first.store(2, Ordering::SeqCst);
    let client = ClusterClient::new(seeds(&addrs, 3), 1, ClientConfig::default());
    let report = client.push_shard(&request(0), &fast_policy()).await.unwrap();
    // 1 refused connection to the dead leader, 2 UNAVAILABLE, then success.
    assert_eq!((report.attempts, report.redirects), (4, 3), "{report:?}");
    assert_eq!(report.leader_addr, addrs[&3]);
    assert_eq!(script.pushes.lock().len(), 1);
}

#[tokio::test]
async fn gives_up_after_max_attempts_with_a_retryable_error() {
    let (script, addrs) = fake_cluster(2, 1).await;
    script.leader.store(1, Ordering::SeqCst);
    script.advertised_leader.store(1, Ordering::SeqCst);
    script.unavailable_first.store(100, Ordering::SeqCst);
    let client = ClusterClient::new(seeds(&addrs, 2), 1, ClientConfig::default());
    let err = client.push_shard(&request(0), &fast_policy()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(script.unavailable_first.load(Ordering::SeqCst), 95, "exactly 5 attempts");
    // A short deadline ends it earlier.
    let policy = RetryPolicy { max_attempts: 100, deadline: Duration::from_millis(60), ..fast_policy() };
    let err = client.push_shard(&request(0), &policy).await.unwrap_err();
    assert!(matches!(err, ClientError::Deadline { .. }), "{err}");
}

#[tokio::test]
async fn invalid_argument_is_final() {
    let (script, addrs) = fake_cluster(1, 1).await;
    script.leader.store(1, Ordering::SeqCst);
    script.advertised_leader.store(1, Ordering::SeqCst);
    script.invalid.store(true, Ordering::SeqCst);
    let client = ClusterClient::new(seeds(&addrs, 1), 1, ClientConfig::default());
    let err = client.push_shard(&request(0), &fast_policy()).await.unwrap_err();
    assert!(matches!(err, ClientError::Invalid { .. }) && !err.is_retryable(), "{err}");
}

fn batch(n: usize) -> WriteBatch {
    let series = (0..n)
        .map(|i| SeriesSamples {
            labels: Labels::from_pairs([("__name__", "m"), ("i", &i.to_string())]),
            samples: vec![Sample::new(1, 1.0), Sample::new(2, 2.0)],
        })
        .collect();
    WriteBatch { tenant: TenantId::new("team-a").unwrap(), series }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_places_series_by_ring_and_sums_outcomes() {
    let (script, addrs) = fake_cluster(2, 8).await;
    script.leader.store(2, Ordering::SeqCst);
    script.advertised_leader.store(1, Ordering::SeqCst);
    let client = ClusterClient::new(seeds(&addrs, 2), 8, ClientConfig::default());
    let router = Arc::new(ShardRouter::new(
        client,
        fast_policy(),
        tokio::runtime::Handle::current(),
        RouterMetrics::default(),
    ));
    let r = router.clone();
    let outcome = tokio::task::spawn_blocking(move || r.append(batch(200))).await.unwrap().unwrap();
    assert_eq!(outcome.appended, 400);
    let ring = ShardRing::new(8);
    let pushes = script.pushes.lock().clone();
    let shards: std::collections::BTreeSet<u64> = pushes.iter().map(|p| p.1).collect();
    assert_eq!(shards.len(), 8, "200 series cover all 8 shards");
    assert_eq!(pushes.iter().map(|p| p.2.len()).sum::<usize>(), 200);
    for (node, shard, labels) in pushes {
        assert_eq!(node, 2);
        for l in labels {
            assert_eq!(ring.shard_of("team-a", &l), shard, "{l} on the wrong shard");
        }
    }
    // With every push failing retryably, the whole batch is Unavailable (HTTP 503).
    script.unavailable_first.store(10_000, Ordering::SeqCst);
    let r = router.clone();
    let err = tokio::task::spawn_blocking(move || r.append(batch(10))).await.unwrap().unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_sends_one_multi_call_per_leader_and_falls_back_per_shard() {
    let (script, addrs) = fake_cluster(2, 8).await;
    script.leader.store(2, Ordering::SeqCst);
    script.advertised_leader.store(1, Ordering::SeqCst); // stale: node 1 answers NotLeader
    let client = ClusterClient::new(seeds(&addrs, 2), 8, ClientConfig::default());
    client.refresh().await;
    let router = Arc::new(ShardRouter::new(client, fast_policy(), tokio::runtime::Handle::current(), RouterMetrics::default()));
    let append = |n: usize| {
        let r = router.clone();
        async move { tokio::task::spawn_blocking(move || r.append(batch(n))).await.unwrap() }
    };
    // First request: one multi call to the stale leader, every shard redirected
    // and re-sent on its own to node 2.
    assert_eq!(append(200).await.unwrap().appended, 400);
    assert_eq!(script.multi_calls.load(Ordering::SeqCst), 1);
    assert_eq!(script.pushes.lock().len(), 8);
    // Second: the leaders are cached, so all 8 shard batches go in ONE call.
    assert_eq!(append(200).await.unwrap().appended, 400);
    assert_eq!(script.multi_calls.load(Ordering::SeqCst), 2);
    let pushes = script.pushes.lock().clone();
    assert_eq!(pushes.len(), 16);
    assert!(pushes.iter().all(|p| p.0 == 2));
    assert_eq!(pushes[8..].iter().map(|p| p.1).collect::<std::collections::BTreeSet<_>>().len(), 8);
    // Retryable per-shard failures inside a multi call are retried per shard.
    script.unavailable_first.store(3, Ordering::SeqCst);
    assert_eq!(append(200).await.unwrap().appended, 400);
    assert_eq!(script.pushes.lock().len(), 24);
    // A node without the method (UNIMPLEMENTED) gets per-shard pushes, and
    // is not asked again.
    script.no_multi.store(true, Ordering::SeqCst);
    assert_eq!(append(200).await.unwrap().appended, 400);
    assert_eq!(append(200).await.unwrap().appended, 400);
    assert_eq!(script.pushes.lock().len(), 40);
    assert_eq!(script.multi_calls.load(Ordering::SeqCst), 4, "one UNIMPLEMENTED, then never asked");
    // A non-retryable answer inside the call is final (HTTP 500, not retried).
    script.no_multi.store(false, Ordering::SeqCst);
    script.invalid.store(true, Ordering::SeqCst);
    let client = ClusterClient::new(seeds(&addrs, 2), 8, ClientConfig::default());
    client.refresh().await;
    let fresh = Arc::new(ShardRouter::new(client, fast_policy(), tokio::runtime::Handle::current(), RouterMetrics::default()));
    let err = tokio::task::spawn_blocking(move || fresh.append(batch(200))).await.unwrap().unwrap_err();
    assert!(matches!(err, StorageError::Io(_)), "{err}");
    assert_eq!(script.multi_calls.load(Ordering::SeqCst), 5);
}
