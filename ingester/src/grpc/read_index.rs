//! Batched read index: confirms leadership of every shard a multi-shard
//! read names with ONE `ReadIndex.Confirm` call per peer, instead of one
//! openraft heartbeat round per shard (two RPCs and a core round trip on
//! each follower, per shard and read).
//!
//! For each shard, after the read arrived, the node takes from its Raft
//! state: that it is leader under a committed vote, its commit index (only
//! when the committed entry is of its own term — before that, the commit
//! index may lag what earlier leaders committed) and the shard's voters.
//! Each peer is asked once whether it still holds, per shard, a vote with
//! exactly that leader id (`term`, leader node): holding it means the peer
//! has not voted in a later term. Grants from a quorum of the voters (the
//! node itself included; every config of a joint membership) show that no
//! newer leader had been elected before the read arrived, so every write
//! acknowledged before then is at or below the commit index taken, and the
//! read is served once that index is applied — the same guarantee as
//! openraft's `ensure_linearizable`. A shard that is not confirmed this way
//! (not leader, fresh term, a peer that is down, slow or predates the
//! service) goes through `ensure_linearizable`, with its errors and
//! redirects.

use super::server::IngesterService;
use crate::raft::{NodeId, ShardData, ShardId};
use crate::shards::{HostedShard, ShardQuery};
use aion_proto::ingester as pb;
use aion_proto::ingester::read_index_client::ReadIndexClient;
use aion_proto::ingester::read_index_server::ReadIndex;
use openraft::{LeaderId, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Longest wait for a peer's `Confirm` answer before the shards fall back
/// to `ensure_linearizable` (which has its own timeout and errors).
const CONFIRM_TIMEOUT: Duration = Duration::from_millis(500);

/// A leader's view of one shard, taken after the read arrived.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LeaderView {
    /// The leader id of the vote it leads under.
    pub leader_id: LeaderId<NodeId>,
    /// Its commit index (an entry of its own term).
    pub read_index: u64,
    /// The voters, one set per config of the (possibly joint) membership.
    pub joint: Vec<BTreeSet<NodeId>>,
    /// The other voters and their addresses.
    pub peers: Vec<(NodeId, String)>,
}

impl LeaderView {
    /// Whether `me` plus the peers in `granted` are a quorum of every config.
    pub fn confirmed_by(&self, me: NodeId, granted: &BTreeSet<NodeId>) -> bool {
        !self.joint.is_empty()
            && self.joint.iter().all(|c| {
                let yes = c.iter().filter(|id| **id == me || granted.contains(id)).count();
                yes * 2 > c.len()
            })
    }
}

/// `shard`'s leader view on node `me`, or `None` when it cannot serve a
/// batched read index (not leader, no entry of its term committed yet).
async fn leader_view<S>(shard: &HostedShard<S>, me: NodeId) -> Option<LeaderView> {
    let view = shard.raft.with_raft_state(move |st| {
        let vote = st.vote_ref();
        if st.server_state != ServerState::Leader || !vote.is_committed() || vote.leader_id.node_id != me {
            return None;
        }
        let committed = st.committed?;
        if committed.leader_id != vote.leader_id {
            return None;
        }
        let m = st.membership_state.effective().membership();
        let joint: Vec<BTreeSet<NodeId>> = m.get_joint_config().clone();
        let voters: BTreeSet<NodeId> = joint.iter().flatten().copied().collect();
        let peers = voters
            .iter()
            .filter(|id| **id != me)
            .map(|id| Some((*id, m.get_node(id)?.addr.clone())))
            .collect::<Option<Vec<_>>>()?;
        Some(LeaderView { leader_id: vote.leader_id, read_index: committed.index, joint, peers })
    });
    view.await.ok().flatten()
}

impl<S: ShardData + ShardQuery> IngesterService<S> {
    /// [`IngesterService::leader_shard`] for several shards at once, with
    /// one `Confirm` call per peer for all of them (see the module docs);
    /// answers in the order of `shards`.
    pub async fn leader_shards(&self, shards: &[ShardId]) -> Vec<Result<Arc<HostedShard<S>>, Status>> {
        let me = self.host.node_id();
        let hosted: Vec<Result<Arc<HostedShard<S>>, Status>> = shards.iter().map(|&s| self.shard(s)).collect();
        let views: Vec<Option<LeaderView>> = futures::future::join_all(hosted.iter().map(|h| async move {
            match h {
                Ok(h) => leader_view(h, me).await,
                Err(_) => None,
            }
        }))
        .await;
        let grants = self.ask_peers(shards, &views).await;
        let confirms = hosted.into_iter().zip(&views).zip(shards).map(|((h, view), shard)| {
            let granted = grants.get(shard);
            async move {
                let h = h?;
                match view {
                    Some(v) if granted.is_some_and(|g| v.confirmed_by(me, g)) => self.wait_applied(&h, v.read_index).await?,
                    _ => self.linearize(&h).await?,
                }
                Ok(h)
            }
        });
        futures::future::join_all(confirms).await
    }

    /// One `Confirm` per peer named by any view: shard → peers that granted.
    async fn ask_peers(&self, shards: &[ShardId], views: &[Option<LeaderView>]) -> BTreeMap<ShardId, BTreeSet<NodeId>> {
        let mut per_peer: BTreeMap<(NodeId, &str), Vec<pb::ShardVote>> = BTreeMap::new();
        for (shard, view) in shards.iter().zip(views) {
            let Some(v) = view else { continue };
            for (id, addr) in &v.peers {
                let vote = pb::ShardVote { shard: *shard, term: v.leader_id.term, leader_node: v.leader_id.node_id };
                per_peer.entry((*id, addr.as_str())).or_default().push(vote);
            }
        }
        let calls = per_peer.into_iter().map(|((id, addr), votes)| async move {
            let Ok(ch) = self.host.pool().channel(addr) else { return (id, Vec::new()) };
            let mut client = ReadIndexClient::new(ch);
            match tokio::time::timeout(CONFIRM_TIMEOUT, client.confirm(pb::ConfirmLeadershipRequest { votes })).await {
                Ok(Ok(r)) => (id, r.into_inner().granted),
                _ => (id, Vec::new()),
            }
        });
        let mut out: BTreeMap<ShardId, BTreeSet<NodeId>> = BTreeMap::new();
        for (id, granted) in futures::future::join_all(calls).await {
            for shard in granted {
                out.entry(shard).or_default().insert(id);
            }
        }
        out
    }

    /// Waits until `shard` has applied `index` (within the read timeout).
    async fn wait_applied(&self, shard: &HostedShard<S>, index: u64) -> Result<(), Status> {
        if shard.raft.metrics().borrow().last_applied.is_some_and(|l| l.index >= index) {
            return Ok(());
        }
        let timeout = self.config.read_timeout;
        match shard.raft.wait(Some(timeout)).applied_index_at_least(Some(index), "read index").await {
            Ok(_) => Ok(()),
            Err(e) => Err(Status::unavailable(format!(
                "shard {}: commit index {index} not applied within {timeout:?} ({e}); retry",
                shard.id
            ))),
        }
    }
}

#[tonic::async_trait]
impl<S: ShardData + ShardQuery> ReadIndex for IngesterService<S> {
    async fn confirm(&self, req: Request<pb::ConfirmLeadershipRequest>) -> Result<Response<pb::ConfirmLeadershipResponse>, Status> {
        let checks = req.into_inner().votes.into_iter().map(|v| async move {
            let hosted = self.host.shard(v.shard)?;
            let want = LeaderId::new(v.term, v.leader_node);
            let holds = hosted.raft.with_raft_state(move |st| st.vote_ref().leader_id == want).await.ok()?;
            holds.then_some(v.shard)
        });
        let granted = futures::future::join_all(checks).await.into_iter().flatten().collect();
        Ok(Response::new(pb::ConfirmLeadershipResponse { granted }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::grpc::{convert::LEADER_ID_KEY, serve, ServerConfig};
    use crate::raft::{MemShardData, RaftLogDb, ShardStateMachine};
    use crate::shards::{default_raft_config, ShardHost};
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
                ok &= leader_view(&svc.shard(shard).unwrap(), 1).await.is_some();
            }
            if ok {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("node 1 did not lead every shard within 5 s");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_confirm_per_peer_serves_the_leader_and_redirects_elsewhere() {
        let (hosts, mut stops, _dirs) = cluster(4).await;
        let svc: Vec<IngesterService<MemShardData>> = hosts.iter().map(|h| IngesterService::new(Arc::clone(h), ServerConfig::default())).collect();
        node1_leads_all(&svc[0], 4).await;
        let shards = [0, 1, 2, 3];

        // Both peers grant every shard in one call each; the batch serves all.
        let mut views: Vec<Option<LeaderView>> = Vec::new();
        for s in shards {
            views.push(leader_view(&svc[0].shard(s).unwrap(), 1).await);
        }
        let grants = svc[0].ask_peers(&shards, &views).await;
        for s in shards {
            assert_eq!(grants.get(&s), Some(&BTreeSet::from([2, 3])), "shard {s}");
        }
        assert!(svc[0].leader_shards(&shards).await.iter().all(Result::is_ok));

        // A follower does not confirm: the read is redirected to node 1, as before.
        for r in svc[1].leader_shards(&[0, 2]).await {
            let status = r.err().expect("a follower must not serve a linearizable read");
            assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
            assert_eq!(status.metadata().get(LEADER_ID_KEY).unwrap().to_str().unwrap(), "1");
        }
        // A peer grants only the exact leader id it holds.
        let v = views[0].clone().unwrap();
        let ask = |term: u64, node: u64| pb::ConfirmLeadershipRequest { votes: vec![pb::ShardVote { shard: 0, term, leader_node: node }, pb::ShardVote { shard: 99, term, leader_node: node }] };
        let ok = svc[1].confirm(Request::new(ask(v.leader_id.term, 1))).await.unwrap().into_inner();
        assert_eq!(ok.granted, vec![0], "shard 99 is not hosted");
        for (term, node) in [(v.leader_id.term + 1, 1), (v.leader_id.term, 3)] {
            let no = svc[1].confirm(Request::new(ask(term, node))).await.unwrap().into_inner();
            assert!(no.granted.is_empty(), "term {term} node {node}: {no:?}");
        }

        // One peer down: the other grant plus the leader is still a quorum.
        hosts[2].shutdown().await;
        let _ = stops.pop().unwrap().send(());
        let grants = svc[0].ask_peers(&shards, &views).await;
        assert!(shards.iter().all(|s| grants.get(s) == Some(&BTreeSet::from([2]))), "{grants:?}");
        assert!(svc[0].leader_shards(&shards).await.iter().all(Result::is_ok));

        // Both peers down: no quorum, so no read is served (UNAVAILABLE after the read timeout).
        hosts[1].shutdown().await;
        let _ = stops.pop().unwrap().send(());
        let svc0 = IngesterService::new(Arc::clone(&hosts[0]), ServerConfig { read_timeout: Duration::from_millis(700), ..ServerConfig::default() });
        for r in svc0.leader_shards(&[0, 1]).await {
            assert!(r.is_err(), "a leader cut off from its quorum must not serve");
        }
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
}
